"""Drafting methods: what proposes the tokens a target verifies. One module per method, one
registry (`METHODS`) that the sweep, the reports and the CLI read.

A method is data (key, label, whether it needs a draft model, whether it takes k, its parameters
and their checks) plus engine-free logic shared by every engine that runs it (the n-gram index,
the adaptive stopping rule). How it runs is each engine's: an engine lists the methods it
implements in its capabilities (the mlx-lm engine's loops are in `engines/mlx_loops/`; llama.cpp
runs its own speculation). A new method is a `Method` plus one `register` line, and one
implementation per engine that runs it.
"""

from __future__ import annotations

from ..errors import InvalidInputError
from ..suggest import did_you_mean
from . import baseline, draft, draft_adaptive, llama_cpp, mlx_lm, prompt_lookup
from .base import Method, Sampling

__all__ = ["METHODS", "Method", "Sampling", "get_method", "parse_methods", "register"]

METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to the registry (one line per method module)."""
    if method.key in METHODS and METHODS[method.key] is not method:
        raise ValueError(f"a method called {method.key!r} is already registered")
    METHODS[method.key] = method
    return method


def get_method(key: str) -> Method:
    try:
        return METHODS[key]
    except KeyError:
        names = ", ".join(k for k in METHODS if k != "baseline")
        raise InvalidInputError(f"unknown method {key!r}{did_you_mean(key, METHODS)}choose from {names}") from None


def parse_methods(text: str | list[str]) -> list[Method]:
    """'mlx-lm,draft' (or a list of keys) -> Methods in the order given, each once."""
    keys = text.split(",") if isinstance(text, str) else list(text)
    keys = [key.strip() for key in keys if key.strip()]
    if not keys:
        raise InvalidInputError("give at least one method, for example --methods mlx-lm")
    methods = []
    for key in dict.fromkeys(keys):
        method = get_method(key)
        if not method.speculative:
            raise InvalidInputError(f"{key} is measured in every group already; choose speculative methods")
        methods.append(method)
    return methods


register(baseline.METHOD)
register(mlx_lm.METHOD)
register(draft.METHOD)
register(draft_adaptive.METHOD)
register(prompt_lookup.METHOD)
register(llama_cpp.DRAFT)
register(llama_cpp.NGRAM)
