"""Inference engines: one module per library, one registry (`ENGINES`) that the CLI reads.
A new engine is one module implementing `Engine` (with its declared `Capabilities`) plus one
`register_engine` line below; an engine whose library is missing stays registered and says which
pip extra installs it when it is used."""

from __future__ import annotations

from ..errors import InvalidInputError
from .base import Capabilities, Engine, LoadedModel, describe_engine
from .llama_cpp import LlamaCppEngine
from .mlx_lm import MlxLmEngine

__all__ = ["DEFAULT_ENGINE", "ENGINES", "Capabilities", "Engine", "LoadedModel", "describe_engine", "get_engine",
           "register_engine"]

ENGINES: dict[str, Engine] = {}
DEFAULT_ENGINE = "mlx-lm"


def register_engine(engine: Engine) -> Engine:
    ENGINES[engine.name] = engine
    return engine


def get_engine(name: str = DEFAULT_ENGINE) -> Engine:
    try:
        return ENGINES[name]
    except KeyError:
        from ..suggest import did_you_mean

        raise InvalidInputError(f"unknown engine {name!r}{did_you_mean(name, ENGINES)}choose from "
                                f"{', '.join(ENGINES)}") from None


register_engine(MlxLmEngine())
register_engine(LlamaCppEngine())
