"""Loading a model found by `sources` into mlx-lm (weights and tokenizer, never with
trust_remote_code), with what its config says about it. The one place models are loaded."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import MlxdraftError, ModelNotFoundError
from .sources import ModelSource, resolve_model


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
