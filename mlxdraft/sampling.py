"""How a token is chosen: the sampling settings every engine and method reads. A module of its own so that
`measure` (and so `results` and the report side) can hold them without importing `methods`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sampling:
    """How a token is chosen from the target's logits; mlx-lm's meaning and defaults."""

    temp: float = 0.0  # 0 = greedy (argmax)
    top_p: float = 1.0  # nucleus sampling; 1.0 (or 0) = off
    top_k: int = 0  # 0 = off
    min_p: float = 0.0  # 0 = off

    @property
    def greedy(self) -> bool:
        return self.temp == 0
