"""Where a model's files are: what the user typed (a folder, a Hub repo id or a model-list short
name) resolved to a local folder in the mlx-lm layout, checked, without loading any weights; and
whether a model-list entry is already local. Downloads and offline builds start from here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import hub, offline
from .catalog import CatalogEntry, find_entry
from .errors import ModelNotFoundError
from .hub import REPO_ID
from .paths import expand_user


@dataclass
class ModelSource:
    """Where a model's files are, and how we got there."""

    name: str  # what the user asked for (short name, repo id or path)
    path: Path  # local folder in the Hugging Face layout
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
        return resolve_entry(find_entry(name), allow_download=allow_download, progress=progress)
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
    if entry.source == "offline":
        return "downloaded" if offline.is_complete(offline.variant_dir(entry.variant)) else "absent"
    return hub.local_status(entry.repo)


def resolve_entry(entry: CatalogEntry, allow_download: bool = True, progress=None) -> ModelSource:
    """The local folder of a catalog entry (building or downloading it when allowed)."""
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
