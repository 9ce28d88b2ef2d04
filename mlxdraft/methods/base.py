"""The values every drafting method shares: sampling settings, a method's inputs, the rounds it
yields, and the Method record itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property


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


@dataclass(frozen=True)
class Method:
    """A way of producing tokens with a target."""

    key: str  # the name users type: --methods mlx-lm,draft
    label: str  # a short display name for reports
    summary: str  # one line for --help and the README
    needs_draft: bool  # True when it takes a draft model
    uses_k: bool  # True when it takes a number of draft tokens (-k)
    run: RunFunction
    defaults: dict = field(default_factory=dict)  # parameters and their default values
    by_mlx_lm: bool = False  # mlx-lm runs it itself, so mlx_lm.generate can be recommended
    lossless_at_temp_0: bool = True  # greedy output equals the target's own greedy output
    fixed_k: bool = True  # every round proposes k (when enough tokens are left): the speedup model applies
    check_params: Callable[[dict], None] | None = None  # raises InvalidInputError for values it cannot run

    def checked_params(self, params: dict | None) -> dict:
        """The defaults with `params` over them, checked before anything loads or runs."""
        values = {**self.defaults, **(params or {})}
        if self.check_params is not None:
            self.check_params(values)
        return values

    @property
    def speculative(self) -> bool:
        return self.uses_k
