"""What the mlx-lm engine's loops share: one generation's inputs, its own random stream, and the
rounds a loop yields (the engine times them and turns them into a trace)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

from ...methods.base import Sampling


class RandomKeys:
    """One generation's own random stream: each draw gets a fresh key split off
    `mx.random.key(seed)`, so MLX's global generator (the caller's) is neither read nor reseeded.
    With seed None every draw uses the global generator (key=None), as tests that seed it expect."""

    def __init__(self, seed: int | None = None):
        self.seed = seed
        self._key = None

    def next(self):
        """A key for one draw (an mx.array), or None for the global generator."""
        if self.seed is None:
            return None
        import mlx.core as mx

        if self._key is None:
            self._key = mx.random.key(self.seed)
        self._key, key = mx.random.split(self._key)
        return key


@dataclass
class GenerationInputs:
    """Everything a method's `run` needs for one generation."""

    model: object  # the target, an mlx.nn.Module from mlx_lm.load
    draft_model: object | None  # None for methods that need no draft model
    prompt: list[int]  # token ids, chat template already applied
    max_tokens: int  # the run stops after this many emitted tokens
    num_draft_tokens: int = 0  # k: tokens proposed per round (the most per round for adaptive methods)
    sampling: Sampling = field(default_factory=Sampling)
    params: dict = field(default_factory=dict)  # the method's parameters, defaults filled in
    seed: int | None = None  # the generation's own random stream; None = MLX's global generator
    # prompt tokens per prefill chunk, in every loop: the engine passes mlx-lm's (as mlx_lm.generate and
    # mlx_lm.server pass it to both of mlx-lm's loops; prefill_step_size in the engine module)
    prefill_step_size: int = 2048

    @cached_property
    def keys(self) -> RandomKeys:
        """The random stream every draw of this generation takes its keys from (one per generation,
        shared by the draft and the target, so their draws never repeat each other's)."""
        return RandomKeys(self.seed)


@dataclass
class Round:
    """What one step of a generation emitted: accepted draft tokens, then the target's own."""

    tokens: list[int]  # emitted this round, in order; the first `accepted` came from the draft
    proposed: int = 0  # draft tokens proposed this round (0 for plain decoding)
    accepted: int = 0  # of those, accepted by the target
    limited: bool = False  # the proposal was shortened because few tokens were left (max-tokens)
    draft_s: float | None = None  # time a draft model spent proposing (None: not measured, or no draft model)
    target_s: float | None = None  # time spent in the target's verify pass, when measured


RunFunction = Callable[[GenerationInputs], Iterator[Round]]
