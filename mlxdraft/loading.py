"""Turning what the user typed (a folder, a Hub repo id or a catalog short name) into a loaded
mlx-lm model with its tokenizer. The one place models are found and loaded."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MlxdraftError, ModelNotFoundError
from .paths import expand_user

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


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


@dataclass
class LoadedModel:
    source: ModelSource
    model: object  # mlx.nn.Module
    tokenizer: object  # mlx_lm TokenizerWrapper
    config: dict
    weights_bytes: int
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def precision(self) -> str:
        return describe_precision(self.config)


def describe_precision(config: dict) -> str:
    """'4bit', 'bf16', 'fp16', 'fp32' ... from a model config."""
    quantization = config.get("quantization") or {}
    if quantization.get("bits"):
        return f"{quantization['bits']}bit"
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "unknown")
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(dtype, dtype)


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
        from . import catalog

        entry = catalog.find_entry(name)
        return catalog.resolve_entry(entry, allow_download=allow_download, progress=progress)
    if REPO_ID.match(name):
        from . import hub

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


def config_warnings(config: dict) -> list[str]:
    """Problems in a config that mlx-lm would silently paper over."""
    warnings = []
    rope_keys = ("rope_theta", "rope_parameters", "rope_scaling")
    if config.get("model_type") in {"llama", "qwen2", "mistral"} and not any(
        key in config for key in rope_keys
    ):
        warnings.append(
            "config.json has no rope_theta, so mlx-lm falls back to 10000; if the model was converted "
            "through transformers, copy rope_theta from the original config"
        )
    return warnings


def load_model(source: ModelSource) -> LoadedModel:
    """Load weights and tokenizer through `mlx_lm.load` (never with trust_remote_code)."""
    import mlx_lm

    try:
        model, tokenizer, config = mlx_lm.load(str(source.path), return_config=True)
    except MlxdraftError:
        raise
    except Exception as exc:  # mlx-lm raises ValueError/KeyError/OSError for unusable folders
        raise ModelNotFoundError(f"cannot load {source.name}: {exc}") from exc
    weights_bytes = sum(f.stat().st_size for f in source.path.glob("*.safetensors"))
    return LoadedModel(
        source=source,
        model=model,
        tokenizer=tokenizer,
        config=config,
        weights_bytes=weights_bytes,
        warnings=config_warnings(config),
    )


def resolve_and_load(name: str, allow_download: bool = True, progress=None) -> LoadedModel:
    return load_model(resolve_model(name, allow_download=allow_download, progress=progress))
