"""The mlx-lm engine's implementations of the methods: one generator per method key that yields a
`Round` per verify step. `baseline` and `mlx-lm` are mlx-lm's own loops; the others are mlxdraft's
own speculative loop (`draft.speculative_rounds`) with different proposers."""

from __future__ import annotations

from . import baseline, draft, draft_adaptive, mlx_lm, prompt_lookup
from .inputs import GenerationInputs, RandomKeys, Round, RunFunction

__all__ = ["IMPLEMENTATIONS", "MLX_LM_OWN", "GenerationInputs", "RandomKeys", "Round", "RunFunction"]

IMPLEMENTATIONS: dict[str, RunFunction] = {
    "baseline": baseline.run,
    "mlx-lm": mlx_lm.run,
    "draft": draft.run,
    "draft-adaptive": draft_adaptive.run,
    "prompt-lookup": prompt_lookup.run,
}
MLX_LM_OWN = frozenset({"baseline", "mlx-lm"})  # mlx-lm runs these itself: mlx_lm.generate can be recommended
