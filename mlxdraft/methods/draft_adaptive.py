"""The `draft-adaptive` method's drafting rule: how many tokens (up to k) a draft model proposes
in each round, decided from the draft's own confidence.

Rule: the confidence of a drafted token is the draft's probability of that token (at temperature
0 the softmax of its raw logits; at temperature > 0 its processed distribution q, the one it
sampled from). After proposing a token whose confidence is below the cutoff, the draft stops: that
token is still proposed (one more verify position costs the target next to nothing), the drafting
after it, likely wasted, is skipped. The cutoff is `threshold` (default 0.4, the default of
Hugging Face transformers' `assistant_confidence_threshold`, tuned there for dynamic speculation
with small drafts), and with `calibrate` (default on) it is corrected by how the draft's recent
confidences compared with what the target accepted: cutoff = threshold * confidence / accepted,
both summed over the recently judged tokens (decay 0.9 per round, a prior of one token of each),
kept within [threshold / 4, max(threshold, 0.95)]. An overconfident draft stops sooner, an
underconfident one later; threshold 0 never stops early (a fixed k, like `draft`).

Parameters: on the command line `--param draft-adaptive.threshold=0.6` and, to turn calibration
off, `--param draft-adaptive.calibrate=0` (1 = on; `--param` values are numbers); in the Python
API `params={"threshold": 0.6, "calibrate": False}`, where the words true/false, on/off, yes/no
are understood too.

Exactness: the rule reads only the draft's own outputs in this round and the outcomes of earlier
rounds, so the proposal length is a stopping time of the draft's samples and the accept/resample
rule keeps the target's distribution; at temperature 0 the output is the target's greedy output.
Never more than k tokens are proposed. To keep the pipeline full, the confidence of token i is
read after token i+1 has been queued; when it says stop, token i+1 is discarded (drafted, not
proposed).
"""

from __future__ import annotations

from ..errors import InvalidInputError
from .base import Method

DEFAULTS = {"threshold": 0.4, "calibrate": True}
DECAY = 0.9  # weight of the past in the calibration sums, per round
PRIOR = 1.0  # pseudo-tokens of calibration at the start (confidence 1, accepted)
CALIBRATED_SPAN = 4.0  # calibration moves the cutoff at most this factor below the threshold
CALIBRATED_CEILING = 0.95  # ... and above it no higher than this (or the threshold itself)


class Calibration:
    """Recent confidence of judged draft tokens against how many of them the target accepted."""

    def __init__(self, threshold: float, enabled: bool):
        self.threshold = threshold
        self.enabled = enabled
        self.confidence = PRIOR
        self.accepted = PRIOR

    def cutoff(self) -> float:
        if not self.enabled:
            return self.threshold
        low, high = self.threshold / CALIBRATED_SPAN, max(self.threshold, CALIBRATED_CEILING)
        ratio = self.confidence / max(self.accepted, 1e-6)
        return min(high, max(low, self.threshold * ratio))

    def observe(self, confidences: list[float], accepted: int) -> None:
        """The target kept the first `accepted` proposed tokens and judged (rejected) the next one."""
        judged = confidences[: accepted + 1]
        self.confidence = DECAY * self.confidence + sum(judged)
        self.accepted = DECAY * self.accepted + accepted


def as_flag(value) -> bool:
    """A parameter's truth value: a bool, 0 or 1 (`--param draft-adaptive.calibrate=0` arrives as
    the number 0.0), or a word (true/false, on/off, yes/no) from the Python API."""
    if isinstance(value, str):
        if value.strip().lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise InvalidInputError(f"calibrate must be true or false, 1 or 0 (got {value!r})")
        return value.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise InvalidInputError(f"calibrate must be true or false, 1 or 0 (got {value!r})")


def calibration_of(params: dict) -> Calibration:
    """The stopping rule's settings from the parameters, or an InvalidInputError saying what is wrong."""
    params = {**DEFAULTS, **params}
    try:
        threshold = float(params["threshold"])
    except (TypeError, ValueError):
        raise InvalidInputError(f"threshold must be a number between 0 and 1 (got {params['threshold']!r})")
    if not 0.0 <= threshold <= 1.0:
        raise InvalidInputError(f"threshold must be between 0 and 1 (got {threshold:g})")
    return Calibration(threshold, as_flag(params["calibrate"]))


METHOD = Method(
    key="draft-adaptive",
    label="draft-adaptive",
    summary="a draft model proposes up to k tokens per round, stopping after a token it is less "
            "than `threshold` sure of (calibrated by recent acceptance)",
    needs_draft=True,
    uses_k=True,
    defaults=dict(DEFAULTS),
    fixed_k=False,
    check_params=calibration_of,
)
