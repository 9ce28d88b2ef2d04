"""What every method is, whatever engine runs it: the sampling settings and the Method record (data:
its key, label, parameters and what it needs). How a method runs is each engine's business
(`Engine.capabilities.methods`); the mlx-lm engine's loops are in `engines/mlx_loops/`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..sampling import Sampling

__all__ = ["Method", "Sampling"]


@dataclass(frozen=True)
class Method:
    """A way of producing tokens with a target, as data: engines that run it say so in their
    capabilities, and a results file keeps `describe()` so reports never need the method installed."""

    key: str  # the name users type: --methods mlx-lm,draft
    label: str  # a short display name for reports
    summary: str  # one line for --help and the README
    needs_draft: bool  # True when it takes a draft model
    uses_k: bool  # True when it takes a number of draft tokens (-k)
    defaults: dict = field(default_factory=dict)  # parameters and their default values
    lossless_at_temp_0: bool = True  # greedy output equals the target's own greedy output
    fixed_k: bool = True  # every round proposes k (when enough tokens are left): the speedup model applies
    check_params: Callable[[dict], None] | None = None  # raises InvalidInputError for values it cannot run
    native_engine: str | None = None  # set for a method that only this engine runs (its own speculation)

    def checked_params(self, params: dict | None) -> dict:
        """The defaults with `params` over them, checked before anything loads or runs."""
        values = {**self.defaults, **(params or {})}
        if self.check_params is not None:
            self.check_params(values)
        return values

    @property
    def speculative(self) -> bool:
        return self.uses_k

    def describe(self) -> dict:
        """What a results file records about the method (JSON values only)."""
        return {"key": self.key, "label": self.label, "summary": self.summary, "needs_draft": self.needs_draft,
                "uses_k": self.uses_k, "speculative": self.speculative, "defaults": dict(self.defaults),
                "lossless_at_temp_0": self.lossless_at_temp_0, "fixed_k": self.fixed_k,
                "native_engine": self.native_engine}
