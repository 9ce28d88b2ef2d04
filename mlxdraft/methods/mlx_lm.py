"""mlx-lm's own speculative loop (`speculative_generate_step`, what `mlx_lm.generate
--draft-model` and `mlx_lm.server` run): a draft model, a fixed k. The reference method."""

from __future__ import annotations

from .base import Method

METHOD = Method(
    key="mlx-lm",
    label="mlx-lm",
    summary="mlx-lm's own speculative loop: a draft model proposes k tokens per round",
    needs_draft=True,
    uses_k=True,
    native_engine="mlx-lm",
)
