"""The `draft` method: mlxdraft's own speculative loop with a draft model (k tokens per round,
verified in one target forward pass, exact speculative sampling at temperature > 0). The mlx-lm
engine runs it (`engines/mlx_loops/draft.py`)."""

from __future__ import annotations

from .base import Method

METHOD = Method(
    key="draft",
    label="draft",
    summary="mlxdraft's own speculative loop: a draft model proposes k tokens per round, exact "
            "speculative sampling at temperature > 0",
    needs_draft=True,
    uses_k=True,
)
