"""The `prompt-lookup` method's proposer: no draft model; each round proposes the tokens that
followed the most recent earlier occurrence of the context's last n tokens (prompt + output).

Lookup: n runs from `ngram_max` (default 3) down to `ngram_min` (default 1); the first n whose
last-n-tokens suffix occurred before gives the proposal: up to k tokens that followed its most
recent earlier occurrence. Three tokens are specific enough to land in the passage being copied
(code edits, quotes, summaries that reuse the prompt's wording), the fallback to shorter n keeps
proposing where a longer suffix is new; a wrong proposal costs only verify positions, which are
nearly free next to the target's pass. When nothing matches the round proposes nothing and is a
plain decoding step; a proposal shorter than k because the lookup found fewer is not `limited`.

The proposal is deterministic (q is one-hot), so at temperature > 0 `speculative_accept` keeps a
proposed token x with probability p(x) and on rejection draws from p with x removed: the output
follows the target's distribution exactly. At temperature 0 it is the target's greedy output.
"""

from __future__ import annotations

from ..errors import InvalidInputError
from .base import Method

DEFAULTS = {"ngram_max": 3, "ngram_min": 1}


class NgramIndex:
    """For each n in [ngram_min, ngram_max]: every n-gram of the tokens that has a following token,
    mapped to the start of its most recent such occurrence. Grows with `extend`."""

    def __init__(self, ngram_max: int = 3, ngram_min: int = 1):
        self.sizes = range(ngram_max, ngram_min - 1, -1)
        self.tokens: list[int] = []
        self.starts: dict[int, dict[tuple, int]] = {n: {} for n in self.sizes}

    def extend(self, tokens: list[int]) -> None:
        for token in tokens:
            end = len(self.tokens)  # the n-grams ending just before `token` now have a successor
            for n in self.sizes:
                if end >= n:
                    self.starts[n][tuple(self.tokens[end - n:end])] = end - n
            self.tokens.append(token)

    def continuation(self, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the most recent earlier occurrence of the longest
        matching suffix; [] when no suffix occurred before."""
        if limit <= 0:
            return []
        for n in self.sizes:
            if len(self.tokens) < n:
                continue
            start = self.starts[n].get(tuple(self.tokens[-n:]))
            if start is not None:
                return self.tokens[start + n:start + n + limit]
        return []


def lookup(context: list[int], limit: int, ngram_max: int = 3, ngram_min: int = 1) -> list[int]:
    """The proposal for `context` (a convenience over NgramIndex, for one-off use and tests)."""
    index = NgramIndex(ngram_max, ngram_min)
    index.extend(context)
    return index.continuation(limit)


def ngram_sizes(params: dict) -> tuple[int, int]:
    values = {**DEFAULTS, **params}
    try:
        high, low = int(values["ngram_max"]), int(values["ngram_min"])
    except (TypeError, ValueError):
        raise InvalidInputError("ngram_max and ngram_min must be whole numbers")
    if not 1 <= low <= high:
        raise InvalidInputError(f"need 1 <= ngram_min <= ngram_max (got ngram_min={low}, ngram_max={high})")
    return high, low


METHOD = Method(
    key="prompt-lookup",
    label="prompt lookup",
    summary="no draft model: proposes up to k tokens that followed the last n tokens' most recent "
            "earlier occurrence in prompt + output (n = 3, falling back to 2, 1)",
    needs_draft=False,
    uses_k=True,
    defaults=dict(DEFAULTS),
    fixed_k=False,
    check_params=ngram_sizes,
)
