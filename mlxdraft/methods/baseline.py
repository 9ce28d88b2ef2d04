"""The target alone: plain decoding, one token per round (every engine runs it)."""

from __future__ import annotations

from .base import Method

METHOD = Method(
    key="baseline",
    label="baseline",
    summary="the target alone, with the engine's own decoding loop",
    needs_draft=False,
    uses_k=False,
)
