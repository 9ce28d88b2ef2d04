"""Where a model's files are: what the user typed (a folder, a Hub repo id or a model-list short
name) resolved to a local folder in the mlx-lm layout, checked, without loading any weights; and
whether a model-list entry is already local. Downloads and offline builds start from here.

GGUF models (the llama.cpp engine) resolve to a .gguf file instead (`resolve_gguf`): a file, a
folder holding one, or a llama.cpp short name (downloaded with its split parts, or built
offline for smollm2)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import hub, offline, offline_gguf
from .catalog import SPLIT_PART, CatalogEntry, find_entry, split_parts
from .errors import ModelNotFoundError
from .hub import REPO_ID
from .paths import expand_user


@dataclass
class ModelSource:
    """Where a model's files are, and how we got there."""

    name: str  # what the user asked for (short name, repo id or path)
    path: Path  # local folder in the Hugging Face layout; for GGUF models the .gguf (first part)
    kind: str  # "local", "hub" or "offline"
    repo_id: str | None = None
    revision: str | None = None

    def describe(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "kind": self.kind,
            "repo_id": self.repo_id,
            "revision": self.revision,
        }


def resolve_model(name: str, allow_download: bool = True, progress=None) -> ModelSource:
    """Find the local folder for `name` without loading any weights.

    Accepts a local model folder, a catalog short name (`family:variant`, see `model_lists/`)
    or a Hugging Face repo id (`owner/name`), which is downloaded unless `allow_download` is False.
    `progress`, if given, is called with one-line messages about long work (downloads, builds).
    """
    name = str(name).strip()
    if not name:
        raise ModelNotFoundError("an empty model name was given; pass a folder, a repo id or a short name")
    path = expand_user(name, "model folder", ModelNotFoundError)
    if name.startswith((".", "/", "~")) or _exists(path):
        check_model_folder(path, name)
        return ModelSource(name=name, path=path.resolve(), kind="local")
    if ":" in name and "/" not in name:
        entry = find_entry(name)
        if entry.engine == "llama.cpp":
            raise ModelNotFoundError(f"{name} is a GGUF model for the llama.cpp engine, not an MLX model; run it "
                                     "with --engine llama.cpp, or pick an MLX model (see `mlxdraft models --engine "
                                     "mlx-lm`)")
        return resolve_entry(entry, allow_download=allow_download, progress=progress)
    if REPO_ID.match(name):
        folder, revision = hub.ensure_local(name, allow_download=allow_download, progress=progress)
        return ModelSource(name=name, path=folder, kind="hub", repo_id=name, revision=revision)
    raise ModelNotFoundError(
        f"{name!r} is not a model folder, a short name (family:variant, see `mlxdraft models`) "
        "or a Hub repo id (owner/name)"
    )


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long to be a path, or one holding a NUL
        return False


TOKENIZER_FILES = ("tokenizer.json", "*.model", "*.tiktoken", "vocab.json", "vocab.txt")  # any will do
MAX_CONFIG_BYTES = 4 * 1024 * 1024


def check_model_folder(path: Path, name: str | None = None) -> None:
    """Raise ModelNotFoundError unless `path` holds a readable config.json (a JSON object naming
    its model_type), safetensors weights and tokenizer files: everything mlx_lm.load needs."""
    shown = name or str(path)
    try:
        if not path.exists():
            raise ModelNotFoundError(f"model folder {shown} does not exist; check the path")
        if path.is_file() and path.name.lower().endswith(".gguf"):
            raise ModelNotFoundError(f"{shown} is a GGUF file, which the llama.cpp engine runs (--engine "
                                     "llama.cpp); MLX needs a model folder")
        if not path.is_dir():
            raise ModelNotFoundError(f"{shown} is a file, not a model folder; pass the folder holding config.json")
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{shown} is not a model folder (no config.json); pass a folder made by mlx_lm.convert "
                "or a Hub repo id"
            )
        if not any(path.glob("*.safetensors")):
            raise ModelNotFoundError(
                f"{shown} has no .safetensors weights; convert the model with mlx_lm.convert first"
            )
        read_model_config(path, shown)
        if not any(any(path.glob(pattern)) for pattern in TOKENIZER_FILES):
            raise ModelNotFoundError(
                f"{shown} has no tokenizer (tokenizer.json, tokenizer.model or a .tiktoken file); copy the "
                "tokenizer files of the original model into the folder"
            )
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read model folder {shown}: {exc.strerror or exc}") from None
    except ValueError as exc:  # a path holding a NUL byte
        raise ModelNotFoundError(f"cannot use {shown!r} as a model folder: {exc}") from None


def read_model_config(path: Path, name: str | None = None) -> dict:
    """The model's config.json as a dict, or one ModelNotFoundError saying what is wrong with it."""
    shown = name or str(path)
    fix = "convert or download the model again"
    try:
        with open(path / "config.json", "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read {shown}/config.json: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ModelNotFoundError(f"{shown}/config.json is over 4 MiB, too large to be a model config; {fix}")
    try:
        config = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ModelNotFoundError(f"{shown}/config.json is not UTF-8 text; {fix}") from None
    except json.JSONDecodeError as exc:
        raise ModelNotFoundError(
            f"{shown}/config.json is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); {fix}"
        ) from None
    except RecursionError:
        raise ModelNotFoundError(f"{shown}/config.json is not valid JSON (nested too deeply); {fix}") from None
    if not isinstance(config, dict):
        kinds = {list: "a list", str: "a string", bool: "true or false", type(None): "null"}
        kind = kinds.get(type(config), "a number")
        raise ModelNotFoundError(f"{shown}/config.json holds {kind}, not a JSON object; {fix}")
    if not isinstance(config.get("model_type"), str) or not config["model_type"]:
        raise ModelNotFoundError(f"{shown}/config.json does not say which model_type it is; {fix}")
    return config


def local_status(entry: CatalogEntry) -> str:
    """'downloaded', 'partial' or 'absent' (offline families: built or not)."""
    if entry.engine == "llama.cpp":
        if entry.source == "offline":
            return "downloaded" if offline_gguf.is_complete(entry.variant) else "absent"
        return hub.gguf_local_status(entry.repo, entry.files)
    if entry.source == "offline":
        return "downloaded" if offline.is_complete(offline.variant_dir(entry.variant)) else "absent"
    return hub.local_status(entry.repo)


def resolve_entry(entry: CatalogEntry, allow_download: bool = True, progress=None) -> ModelSource:
    """The local folder of a catalog entry (building or downloading it when allowed); for a
    llama.cpp entry its .gguf file."""
    if entry.engine == "llama.cpp":
        return resolve_gguf_entry(entry, allow_download=allow_download, progress=progress)
    if entry.source == "offline":
        if not allow_download and not offline.is_complete(offline.variant_dir(entry.variant)):
            raise ModelNotFoundError(
                f"{entry.name} is not built yet and --no-download forbids fetching it; run "
                "`mlxdraft prepare smollm2` first"
            )
        path = offline.prepare([entry.variant], progress=progress)[entry.variant]
        return ModelSource(name=entry.name, path=path, kind="offline", revision=offline.SOURCE_REVISION)
    path, revision = hub.ensure_local(entry.repo, allow_download=allow_download, progress=progress)
    return ModelSource(name=entry.name, path=path, kind="hub", repo_id=entry.repo, revision=revision)


def describe_precision(config: dict) -> str:
    """'4bit', 'bf16', 'fp16', 'fp32' ... from a model config."""
    quantization = config.get("quantization") or {}
    if quantization.get("bits"):
        return f"{quantization['bits']}bit"
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "unknown")
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(dtype, dtype)


def config_warnings(config: dict) -> list[str]:
    """Problems in a config that mlx-lm would silently paper over."""
    warnings = []
    rope_keys = ("rope_theta", "rope_parameters", "rope_scaling")
    if config.get("model_type") in {"llama", "qwen2", "mistral"} and not any(key in config for key in rope_keys):
        warnings.append(
            "config.json has no rope_theta, so mlx-lm falls back to 10000; if the model was converted "
            "through transformers, copy rope_theta from the original config"
        )
    return warnings


def context_length(config: dict) -> int | None:
    """The context length a config declares, if it declares one."""
    text = config.get("text_config", config)
    value = text.get("max_position_embeddings") or text.get("max_seq_len")
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


GGUF_MAGIC = b"GGUF"


def resolve_any(name: str, allow_download: bool = True, progress=None) -> ModelSource:
    """`resolve_model` or `resolve_gguf`, whichever fits the name: what `pull` needs."""
    name = str(name).strip()
    if ":" in name and "/" not in name and find_entry(name).engine == "llama.cpp":
        return resolve_gguf(name, allow_download=allow_download, progress=progress)
    if name.lower().endswith(".gguf"):
        return resolve_gguf(name, allow_download=allow_download, progress=progress)
    return resolve_model(name, allow_download=allow_download, progress=progress)


def resolve_gguf(name: str, allow_download: bool = True, progress=None) -> ModelSource:
    """The local .gguf file (the first part of a split one) for `name`, without loading it.

    Accepts a .gguf file, a folder holding one GGUF model, or a llama.cpp short name from the
    model lists (downloaded unless `allow_download` is False; smollm2 ones are built offline)."""
    name = str(name).strip()
    if not name:
        raise ModelNotFoundError("an empty model name was given; pass a .gguf file, a folder or a short name")
    path = expand_user(name, "GGUF file", ModelNotFoundError)
    if name.startswith((".", "/", "~")) or _exists(path):
        return ModelSource(name=name, path=find_gguf(path, name).resolve(), kind="local")
    if ":" in name and "/" not in name:
        entry = find_entry(name)
        if entry.engine != "llama.cpp":
            raise ModelNotFoundError(f"{name} is an MLX model (engine {entry.engine}), not a GGUF model; "
                                     "llama.cpp runs GGUF files, see `mlxdraft models --engine llama.cpp`")
        return resolve_gguf_entry(entry, allow_download=allow_download, progress=progress)
    raise ModelNotFoundError(
        f"{name!r} is not a .gguf file, a folder holding one, or a GGUF short name (see `mlxdraft models "
        "--engine llama.cpp`)"
    )


def resolve_gguf_entry(entry: CatalogEntry, allow_download: bool = True, progress=None) -> ModelSource:
    """The local .gguf file of a llama.cpp catalog entry (building or downloading it when allowed)."""
    if entry.source == "offline":
        if not allow_download and not offline_gguf.is_complete(entry.variant):
            raise ModelNotFoundError(
                f"{entry.name} is not built yet and --no-download forbids fetching it; run it once without "
                "--no-download to build it"
            )
        path = offline_gguf.prepare([entry.variant], progress=progress)[entry.variant]
        return ModelSource(name=entry.name, path=path, kind="offline", revision=offline.SOURCE_REVISION)
    path, revision = hub.ensure_gguf(entry.repo, entry.files, allow_download=allow_download, progress=progress)
    return ModelSource(name=entry.name, path=path, kind="hub", repo_id=entry.repo, revision=revision)


def find_gguf(path: Path, name: str | None = None) -> Path:
    """The GGUF file a path stands for: the file itself, or the one GGUF model in a folder (the
    first part when it is split). One ModelNotFoundError says what is wrong otherwise."""
    shown = name or str(path)
    try:
        if not path.exists():
            raise ModelNotFoundError(f"{shown} does not exist; check the path")
        if path.is_dir():
            ggufs = sorted(p for p in path.iterdir() if p.name.lower().endswith(".gguf") and p.is_file()
                           and not p.name.lower().startswith("mmproj"))
            models = [p for p in ggufs if not SPLIT_PART.match(p.name) or int(SPLIT_PART.match(p.name)["part"]) == 1]
            if not models:
                raise ModelNotFoundError(f"folder {shown} holds no .gguf file; pass a GGUF file or a folder with one")
            if len(models) > 1:
                listed = ", ".join(p.name for p in models[:4]) + (" ..." if len(models) > 4 else "")
                raise ModelNotFoundError(f"folder {shown} holds {len(models)} GGUF models ({listed}); pass the file "
                                         "you mean")
            path = models[0]
            shown = str(path)
        check_gguf_file(path, shown)
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read {shown}: {exc.strerror or exc}") from None
    except ValueError as exc:  # a path holding a NUL byte
        raise ModelNotFoundError(f"cannot use {shown!r} as a GGUF file: {exc}") from None
    return path


def check_gguf_file(path: Path, name: str | None = None) -> None:
    """Raise ModelNotFoundError unless `path` is a GGUF file (its magic bytes) whose split parts,
    if it is split, are all beside it and it is the first of them."""
    shown = name or str(path)
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read {shown}: {exc.strerror or exc}") from None
    if magic != GGUF_MAGIC:
        raise ModelNotFoundError(f"{shown} is not a GGUF file (it does not start with the GGUF magic bytes); "
                                 "download it again or pass another file")
    split = SPLIT_PART.match(path.name)
    if not split:
        return
    if int(split["part"]) != 1:
        first = f"{split['stem']}-00001-of-{split['count']}.gguf"
        raise ModelNotFoundError(f"{shown} is part {int(split['part'])} of a split GGUF; pass the first part, {first}")
    parts = split_parts(path.name)
    missing = [name for name in parts[1:] if not (path.parent / name).is_file()]
    if missing:
        raise ModelNotFoundError(f"{shown} is split into {len(parts)} parts and {len(missing)} of them are missing "
                                 f"beside it ({missing[0]}{' ...' if len(missing) > 1 else ''}); download them all")
