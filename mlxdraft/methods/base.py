"""The values every drafting method shares: sampling settings, a method's inputs, the rounds it
yields, and the Method record itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


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


@dataclass
class Round:
    """What one step of a generation emitted: accepted draft tokens, then the target's own."""

    tokens: list[int]  # emitted this round, in order; the first `accepted` came from the draft
    proposed: int = 0  # draft tokens proposed this round (0 for plain decoding)
    accepted: int = 0  # of those, accepted by the target
    limited: bool = False  # the proposal was shortened because few tokens were left (max-tokens)
    draft_s: float | None = None  # time spent proposing, when the method measures it
    target_s: float | None = None  # time spent in the target's forward pass, when measured


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

    @property
    def speculative(self) -> bool:
        return self.uses_k
