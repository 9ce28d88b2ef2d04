"""llama.cpp's own speculation, as methods only the llama.cpp engine runs (`native_engine`).

`llama.cpp-draft` is llama-server's draft-model speculation (`--spec-type draft-simple`): a draft
GGUF proposes k tokens per round (`--spec-draft-n-max k`), stopping early only where the draft's
own probability for its next token falls below `p_min` (0 = never, llama.cpp's default); a
proposal shorter than `n_min` is not verified at all. `llama.cpp-ngram` is its n-gram speculation
(`--spec-type ngram-simple`): no draft model; the last `ngram_size` tokens (llama.cpp's default 12)
are looked up in the prompt and output so far, and up to k tokens that followed an earlier
occurrence seen at least `min_hits` times are proposed (`--spec-ngram-simple-size-m k`).

llama.cpp verifies a proposal by sampling the target at every position and keeping the draft's
tokens while they equal the target's: at temperature 0 the output is the target's greedy output.
"""

from __future__ import annotations

import math

from ..errors import InvalidInputError
from .base import Method

ENGINE = "llama.cpp"
DRAFT_DEFAULTS = {"p_min": 0.0, "n_min": 0}
NGRAM_DEFAULTS = {"ngram_size": 12, "min_hits": 1}
MAX_NGRAM_SIZE = 1024  # llama.cpp's own bound on n-gram sizes


def _whole(values: dict, key: str, low: int, high: int) -> int:
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInputError(f"{key} must be a whole number (got {value!r})")
    try:
        number = float(value)
    except ValueError:
        raise InvalidInputError(f"{key} must be a whole number (got {value!r})")
    if not number.is_integer() or not low <= number <= high:
        raise InvalidInputError(f"{key} must be a whole number from {low} to {high} (got {value})")
    return int(number)


def draft_params(params: dict) -> dict:
    """p_min in [0, 1] and n_min >= 0, as llama.cpp takes them."""
    values = {**DRAFT_DEFAULTS, **params}
    unknown = sorted(set(values) - set(DRAFT_DEFAULTS))
    if unknown:
        raise InvalidInputError(f"llama.cpp-draft takes p_min and n_min, not {', '.join(unknown)}")
    try:
        p_min = float(values["p_min"])
    except (TypeError, ValueError):
        raise InvalidInputError(f"p_min must be a number between 0 and 1 (got {values['p_min']!r})")
    if not math.isfinite(p_min) or not 0 <= p_min <= 1:
        raise InvalidInputError(f"p_min must be a number between 0 and 1 (got {values['p_min']})")
    return {"p_min": p_min, "n_min": _whole(values, "n_min", 0, MAX_NGRAM_SIZE)}


def ngram_params(params: dict) -> dict:
    """ngram_size in [1, 1024] and min_hits >= 1, as llama.cpp takes them."""
    values = {**NGRAM_DEFAULTS, **params}
    unknown = sorted(set(values) - set(NGRAM_DEFAULTS))
    if unknown:
        raise InvalidInputError(f"llama.cpp-ngram takes ngram_size and min_hits, not {', '.join(unknown)}")
    return {"ngram_size": _whole(values, "ngram_size", 1, MAX_NGRAM_SIZE),
            "min_hits": _whole(values, "min_hits", 1, MAX_NGRAM_SIZE)}


DRAFT = Method(
    key="llama.cpp-draft",
    label="llama.cpp draft",
    summary="llama.cpp's own draft-model speculation (llama-server --spec-type draft-simple): "
            "a draft GGUF proposes k tokens per round",
    needs_draft=True,
    uses_k=True,
    defaults=dict(DRAFT_DEFAULTS),
    fixed_k=True,  # with p_min 0 every round proposes k (fewer only where max-tokens leaves less room)
    check_params=draft_params,
    native_engine=ENGINE,
)

NGRAM = Method(
    key="llama.cpp-ngram",
    label="llama.cpp n-gram",
    summary="llama.cpp's own n-gram speculation (llama-server --spec-type ngram-simple): no draft "
            "model; up to k tokens that followed the last 12 tokens' earlier occurrence",
    needs_draft=False,
    uses_k=True,
    defaults=dict(NGRAM_DEFAULTS),
    fixed_k=False,  # a lookup proposes what it finds: often nothing, sometimes fewer than k
    check_params=ngram_params,
    native_engine=ENGINE,
)
