"""Statistics on plain numbers: summaries and outliers, paired-ratio estimates with honest t intervals,
the verdict over many candidate setups, and whether two token-id streams are identical.

The prompt is the unit of replication: prompts differ in how much they gain, so the passes of one prompt are
not independent evidence about prompts like it. `per_prompt` averages them (geometric mean) before any interval,
and a verdict says what it is about (`ESTIMANDS`).

Pure functions; nothing here is measured, read or printed. Turning RunSamples into these numbers is
`mlxdraft.analysis`'s job.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache

MIN_VALUES_FOR_OUTLIERS = 10
"""Below this many values nothing is flagged: with fewer, a median/MAD rule mostly flags noise."""

OUTLIER_THRESHOLD = 5.0
"""Robust z-score above which a run's paired ratio is an outlier among the passes of its prompt. Calibrated by
simulation (tests/test_stats.py): with 12 clean prompts something is flagged in 1.6% (2 passes) or 0.3%
(3 passes) of samples, and a 2.5x stall is caught in 86.8% or 99.8%."""

MIN_UNITS_FOR_INTERVAL = 3
"""Fewest replication units (prompts, or runs for the "suite" estimand) for which a ratio gets an interval."""

ESTIMANDS = ("workload", "suite")
"""What a speedup is about. "workload" (the default): prompts like these, the suite a sample of them; the unit
is the prompt (the median of its passes, `per_prompt`) and n the number of prompts, so the interval includes the
spread of the gain across prompts, and to narrow it one adds prompts. "suite": these exact prompts; the unit is
one run (prompt x pass), so more passes narrow it, and it says nothing about other prompts."""

EQUIVALENCE_MARGIN = 0.03
"""A cheaper setup replaces the fastest only when it is shown to be at most this much slower: the one-sided
lower bound of their paired ratio (cheaper / fastest) is above 1 / (1 + margin), i.e. the fastest is shown to be
at most 3% faster than it (`decide`)."""

_MAD_TO_SIGMA = 1.482602218505602  # 1 / Phi^-1(3/4): MAD -> sigma for Gaussian data
_MEAN_AD_TO_SIGMA = 1.2533141373155003  # sqrt(pi / 2): mean absolute deviation -> sigma for Gaussian data


# --- summaries and outliers -------------------------------------------------------------------------


@dataclass
class Summary:
    mean: float
    stdev: float  # sample standard deviation; 0 when n == 1
    min: float
    max: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(values) -> Summary | None:
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    return Summary(
        mean=statistics.fmean(values),
        stdev=statistics.stdev(values) if len(values) > 1 else 0.0,
        min=min(values),
        max=max(values),
        n=len(values),
    )


def _robust_sigma(deviations: list[float]) -> float | None:
    """The scale of absolute deviations: 1.4826 x their median (MAD), or, when more than half are 0, 1.2533 x
    their mean; None when that is 0 too (nothing to judge against)."""
    sigma = _MAD_TO_SIGMA * statistics.median(deviations)
    if sigma == 0:
        sigma = _MEAN_AD_TO_SIGMA * math.fsum(deviations) / len(deviations)
    return sigma if sigma > 0 and math.isfinite(sigma) else None


def find_paired_outliers(runs: dict, threshold: float = OUTLIER_THRESHOLD) -> list:
    """Runs, {(prompt, pass): paired ratio}, unlike the other passes of their own prompt: a stall or a warm-up
    effect in one of the two runs of a unit, not a prompt that legitimately gains more or less than others.

    Each run's residual is its log ratio minus the mean log ratio of the other passes of its prompt (prompts
    with one pass have none). A prompt is flagged when one of its residuals is more than `threshold` robust
    z-scores from 0, the scale being 1.4826 x the median absolute residual over all prompts (the mean absolute
    residual x 1.2533 when that is 0), and of a flagged prompt the run with the largest residual is returned
    (with two passes either run may be the odd one). Nothing is flagged below MIN_VALUES_FOR_OUTLIERS
    residuals. Speeds themselves are never judged: a long prompt is legitimately slower end to end.
    """
    residuals = {}
    for prompt, items in _logs_by_prompt(runs, with_units=True).items():
        if len(items) < 2:
            continue
        total = math.fsum(v for _, v in items)
        residuals[prompt] = [(unit, abs(value - (total - value) / (len(items) - 1))) for unit, value in items]
    deviations = [r for items in residuals.values() for _, r in items]
    if len(deviations) < MIN_VALUES_FOR_OUTLIERS:
        return []
    sigma = _robust_sigma(deviations)
    if sigma is None:
        return []
    flagged = []
    for items in residuals.values():
        unit, largest = max(items, key=lambda item: item[1])
        if largest / sigma > threshold:
            flagged.append(unit)
    return flagged


# --- Student's t --------------------------------------------------------------------------------------


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function, evaluated with the modified Lentz method."""
    tiny = 1e-300
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 20000):
        # even step: d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m))
        numerator = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + numerator / c
        c = c if abs(c) > tiny else tiny
        result *= d * c
        # odd step: d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1))
        numerator = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + numerator / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        result *= step
        if abs(step - 1.0) < 1e-15:
            break
    return result


def _regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast here; otherwise use I_x(a,b) = 1 - I_1-x(b,a)
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def _t_upper_tail(t: float, df: int) -> float:
    """P(T > t) for t >= 0, computed directly so that tiny tails keep their precision."""
    return 0.5 * _regularized_beta(df / 2.0, 0.5, df / (df + t * t))


@lru_cache(maxsize=4096)
def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t distribution (p in (0,1), df >= 1).

    Inverts the upper tail P(T > t) = I_{df/(df+t^2)}(df/2, 1/2) / 2 by bisection on t.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    tail = 1.0 - p
    low, high = 0.0, 2.0
    while _t_upper_tail(high, df) > tail:
        low, high = high, high * 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if _t_upper_tail(middle, df) > tail:
            low = middle
        else:
            high = middle
        if high - low <= 1e-12 * high:
            break
    return 0.5 * (low + high)


# --- paired ratios ------------------------------------------------------------------------------------


@dataclass
class RatioEstimate:
    """Geometric mean of paired per-unit ratios (variant / baseline), with a t-interval on their logs."""

    geomean: float  # exp(mean of log ratios)
    low: float | None  # interval bounds (ratio scale); None when n < MIN_UNITS_FOR_INTERVAL
    high: float | None
    n: int  # replication units the estimate uses: prompts (the median of each prompt's passes), or runs (suite)
    confidence: float  # the nominal level asked for, e.g. 0.95
    candidates: int = 1  # the interval is widened (Bonferroni) for this many compared setups
    log_sd: float | None = None  # sample sd of the log ratios (None when n < 2)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RatioEstimate:
        return cls(
            geomean=data["geomean"],
            low=data.get("low"),
            high=data.get("high"),
            n=data["n"],
            confidence=data["confidence"],
            candidates=data.get("candidates", 1),
            log_sd=data.get("log_sd"),
        )


def _usable_logs(ratios: Iterable) -> list[float]:
    logs = []
    for ratio in ratios:
        if ratio is None:
            continue
        ratio = float(ratio)
        if math.isfinite(ratio) and ratio > 0:
            logs.append(math.log(ratio))
    return logs


def _mean_sd(values: list[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def _widened_quantile(confidence: float, comparisons: int, n: int) -> float:
    """t quantile for a two-sided interval at `confidence`, Bonferroni-widened for `comparisons`."""
    return t_quantile(1.0 - (1.0 - confidence) / (2 * comparisons), n - 1)


def _exp(x: float) -> float:
    """exp that stays finite for absurd inputs (a results file may hold huge but finite speeds)."""
    return math.exp(max(min(x, 700.0), -700.0))


def _estimate_from_logs(logs: list[float], confidence: float, candidates: int) -> RatioEstimate | None:
    if not logs:
        return None
    n = len(logs)
    mean, sd = _mean_sd(logs)
    low = high = None
    if n >= MIN_UNITS_FOR_INTERVAL:
        half_width = _widened_quantile(confidence, candidates, n) * sd / math.sqrt(n)
        low, high = _exp(mean - half_width), _exp(mean + half_width)
    return RatioEstimate(geomean=_exp(mean), low=low, high=high, n=n, confidence=confidence,
                         candidates=candidates, log_sd=sd)


def _check_level(confidence: float, candidates: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")


def _logs_by_prompt(runs: dict, with_units: bool = False) -> dict:
    """{(prompt, pass): ratio} -> {prompt: [log ratio, ...]} over the usable ratios (with `with_units`, each as
    ((prompt, pass), log ratio)). Keys that are not (prompt, pass) tuples are taken as prompts already."""
    logs: dict = {}
    for unit, ratio in runs.items():
        value = _usable_logs([ratio])
        if value:
            prompt = unit[0] if isinstance(unit, tuple) else unit
            logs.setdefault(prompt, []).append((unit, value[0]) if with_units else value[0])
    return logs


def per_prompt(runs: dict) -> dict:
    """{(prompt, pass): ratio} -> {prompt: the median of its passes' usable ratios (on the log scale; with two
    passes their geometric mean)}: the prompt as the unit of replication. The median, so that one stalled or
    cold run among three passes does not move its prompt's figure (simulated: the recommendation within 3% of
    the best setup in 93% of rough sweeps, against 81-84% with the geometric mean). Keys that are not
    (prompt, pass) tuples are taken as prompts already."""
    return {prompt: _exp(statistics.median(values)) for prompt, values in _logs_by_prompt(runs).items()}


def within_prompt_sd(runs: dict) -> float | None:
    """How much the passes of a prompt agree: the pooled sd of the log ratios within each prompt (degrees of
    freedom: passes - 1, summed over prompts), from {(prompt, pass): ratio}; None without a prompt measured twice.
    Passes make each prompt's ratio steadier (the mean of r passes varies by this / sqrt(r)) and let a stalled run
    be seen (`find_paired_outliers`); they say nothing about how other prompts gain."""
    squares, df = 0.0, 0
    for values in _logs_by_prompt(runs).values():
        if len(values) > 1:
            mean = math.fsum(values) / len(values)
            squares += math.fsum((v - mean) ** 2 for v in values)
            df += len(values) - 1
    return math.sqrt(squares / df) if df else None


def estimate_ratio(ratios, confidence: float = 0.95, candidates: int = 1) -> RatioEstimate | None:
    """None when there is no usable ratio (non-finite or <= 0 values are ignored). Interval: mean(log r) +-
    t_{1 - (1-confidence)/(2*candidates), n-1} * sd/sqrt(n), exponentiated; no interval below
    MIN_UNITS_FOR_INTERVAL units.

    `ratios` are per-unit ratios variant / baseline, each from one unit where both were measured back to back
    (so the pairing removes the prompt's and the moment's effect on speed): per prompt (`per_prompt`, the
    default unit of replication) or per run (prompt x pass) for the "suite" estimand.
    """
    _check_level(confidence, candidates)
    return _estimate_from_logs(_usable_logs(ratios), confidence, candidates)


# --- verdict over candidate setups --------------------------------------------------------------------


@dataclass
class Candidate:
    key: object  # opaque id chosen by the caller (e.g. a tuple (draft, k))
    ratios: dict  # unit -> ratio > 0: prompt -> ratio ("workload"), or (prompt, pass) -> ratio ("suite")
    cost: tuple = ()  # smaller is cheaper: caller passes e.g. (draft_weights_gb, k)


@dataclass
class Verdict:
    verdict: str  # "speculative", "no-gain" or "inconclusive"
    chosen: object | None  # key of the recommended candidate (None unless verdict == "speculative")
    leader: object | None  # key of the candidate with the highest geometric mean
    estimate: RatioEstimate | None  # of `chosen` (or of the leader when nothing is chosen), widened for all
    tied: list  # keys not shown different from the leader (leader itself excluded): "tied" is no equivalence
    candidates: int  # how many setups were compared
    more_units_needed: int | None  # inconclusive only: rough extra units (prompts under "workload") likely to
    # decide it; None if hopeless
    reason: str  # one plain-English sentence a user reads, no trailing period
    estimand: str = "workload"  # ESTIMANDS: prompts like these, or these exact prompts ("suite")
    prompts: int = 0  # prompts behind `estimate`
    rule: str | None = None  # speculative only: "fastest" or "equivalent" (the cheapest shown within the margin)
    margin: float = EQUIVALENCE_MARGIN  # of the equivalence test
    equivalent: list = field(default_factory=list)  # keys shown within the margin of the fastest (cheaper ones)

    @property
    def unit(self) -> str:
        """What n counts: "prompt" under the workload estimand, "run" (prompt x pass) under the suite one."""
        return "prompt" if self.estimand == "workload" else "run"

    @property
    def scope(self) -> str:
        """What the verdict is about, for a reader: 'for prompts like these 12 (...)' or 'for these 12 prompts
        exactly (...)'."""
        if self.estimand == "workload":
            about = "prompts like this one" if self.prompts == 1 else f"prompts like these {self.prompts}"
            return f"for {about} (n = prompts, the median of each prompt's passes)"
        n = self.estimate.n if self.estimate else 0
        about = "this prompt" if self.prompts == 1 else f"these {self.prompts} prompts"
        return f"for {about} exactly (n = {n} run{'s' if n != 1 else ''}, prompt x pass)"

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "chosen": self.chosen,
            "leader": self.leader,
            "estimate": self.estimate.to_dict() if self.estimate else None,
            "tied": list(self.tied),
            "candidates": self.candidates,
            "more_units_needed": self.more_units_needed,
            "reason": self.reason,
            "estimand": self.estimand,
            "unit": self.unit,
            "prompts": self.prompts,
            "scope": self.scope,
            "rule": self.rule,
            "margin": self.margin,
            "equivalent": list(self.equivalent),
        }


MAX_GROWTH_FOR_MORE_UNITS = 20
"""more_units_needed is None when deciding would take more than this many times the current units."""


def _units_to_decide(mean: float, sd: float | None, n: int, confidence: float, candidates: int) -> int | None:
    """Smallest total of units at which the widened interval of a log mean `mean` with sd `sd` would exclude
    0, if both stayed as observed; None when that is more than MAX_GROWTH_FOR_MORE_UNITS x n (or never)."""
    if sd is None or mean == 0:
        return None
    if sd == 0:
        return n

    def decided(total: int) -> bool:
        return _widened_quantile(confidence, candidates, total) * sd / math.sqrt(total) < abs(mean)

    limit = MAX_GROWTH_FOR_MORE_UNITS * n
    # the normal quantile is the t quantile's lower limit: if even it needs too many units, stop here
    z = statistics.NormalDist().inv_cdf(1.0 - (1.0 - confidence) / (2 * candidates))
    if (z * sd / mean) ** 2 > limit or not decided(limit):
        return None
    low, high = max(n, 1), limit  # decided(high) holds; the half-width shrinks as total grows
    if decided(max(low, 2)):
        return max(low, 2)
    while high - low > 1:
        middle = (low + high) // 2
        if decided(middle):
            high = middle
        else:
            low = middle
    return high


def units_to_decide(estimate: RatioEstimate) -> int | None:
    """The total units (the estimate's own: prompts when its ratios are per prompt) at which `estimate`'s
    interval (widened as it is) would exclude 1.0 if its log mean and sd stayed as observed; None when that is
    more than MAX_GROWTH_FOR_MORE_UNITS x its n, or never. Under the workload estimand the sd is the spread
    across prompts, which only more prompts average away: passes do not."""
    if estimate.log_sd is None or estimate.geomean <= 0:
        return None
    return _units_to_decide(math.log(estimate.geomean), estimate.log_sd, estimate.n, estimate.confidence,
                            estimate.candidates)


def ratio_digits(*values: float | None, digits: int = 2, most: int = 6) -> int:
    """Decimals to print ratios with so that none on one side of 1.0 prints as 1.00 (0.996 is '0.996', not
    '1.00'): a figure shown beside words that claim a difference never reads as no difference."""
    values = [v for v in values if v is not None and math.isfinite(v) and v != 1.0]
    while digits < most and any(round(v, digits) == 1.0 for v in values):
        digits += 1
    return digits


def format_ratio(ratio: float) -> str:
    """'0.80x'; '0.996x' rather than '1.00x' for a ratio that is not 1 (see `ratio_digits`)."""
    return f"{ratio:.{ratio_digits(ratio)}f}x"


def _format_interval(estimate: RatioEstimate) -> str:
    d = ratio_digits(estimate.low, estimate.high)
    level = f"{estimate.confidence * 100:g}% interval {estimate.low:.{d}f}-{estimate.high:.{d}f}x"
    if estimate.candidates > 1:
        level += f", widened for {estimate.candidates} setups"
    return level


def _percent(ratio: float) -> str:
    change = (ratio - 1.0) * 100
    digits = ratio_digits(ratio, digits=3) - 2  # never '0.0% slower' for a ratio that differs from 1
    return f"{abs(change):.{digits}f}% {'faster' if change >= 0 else 'slower'}"


def _paired_log_differences(logs: dict, other_logs: dict) -> list[float]:
    return [logs[unit] - other_logs[unit] for unit in logs if unit in other_logs]


def _tied(leader_logs: dict, other_logs: dict, leader_est: RatioEstimate, other_est: RatioEstimate | None,
          confidence: float, comparisons: int) -> bool:
    differences = _paired_log_differences(leader_logs, other_logs)
    if len(differences) >= MIN_UNITS_FOR_INTERVAL:
        mean, sd = _mean_sd(differences)
        half_width = _widened_quantile(confidence, comparisons, len(differences)) * sd / math.sqrt(len(differences))
        return mean - half_width <= 0.0 <= mean + half_width
    if other_est is None or leader_est.low is None or other_est.low is None:
        return True  # too few units to tell them apart
    return other_est.low <= leader_est.high and leader_est.low <= other_est.high


def equivalence_bound(logs: dict, fastest_logs: dict, confidence: float = 0.95, comparisons: int = 1) -> float | None:
    """The one-sided lower confidence bound (at `confidence`, Bonferroni-widened for `comparisons` tests) of
    the geometric-mean paired ratio of a setup to the fastest, over their common units (log ratios to the
    baseline given per unit); None below MIN_UNITS_FOR_INTERVAL common units. The setup is shown to be within
    a margin of the fastest when this bound is above 1 / (1 + margin)."""
    differences = _paired_log_differences(logs, fastest_logs)
    n = len(differences)
    if n < MIN_UNITS_FOR_INTERVAL:
        return None
    mean, sd = _mean_sd(differences)
    quantile = t_quantile(1.0 - (1.0 - confidence) / comparisons, n - 1)
    return _exp(mean - quantile * sd / math.sqrt(n))


def _prompt_count(units) -> int:
    return len({unit[0] if isinstance(unit, tuple) else unit for unit in units})


def decide(candidates: list[Candidate], confidence: float = 0.95,
           describe: Callable[[object], str] = str, estimand: str = "workload",
           margin: float = EQUIVALENCE_MARGIN, compared: int = 0) -> Verdict | None:
    """Say whether speculative decoding beats the baseline, and with which candidate setup.

    Each candidate carries per-unit ratios speculative / baseline: per prompt under the "workload" estimand
    (prompts like these, the default: the caller averages each prompt's passes, `per_prompt`), per run
    (prompt x pass) under "suite" (these exact prompts). Rules:

    - Only candidates with at least MIN_UNITS_FOR_INTERVAL usable ratios compete (one cut short after a
      lucky run cannot lead); when none has that many, all candidates with a usable ratio do.
    - m is the number of competing candidates; None when there is none at all. Every candidate's
      interval is `estimate_ratio(..., candidates=m)`: Bonferroni-widened so that the m intervals hold
      simultaneously at `confidence`, and picking the best of m does not overstate it (winner's curse).
    - The leader is the candidate with the highest geometric mean (the first, on equal means).
    - A candidate is tied with the leader when the interval of the mean paired difference of their log
      ratios over their common units, widened for m - 1 comparisons, includes 0. With fewer than
      MIN_UNITS_FOR_INTERVAL common units it is tied when the two widened intervals overlap (or when
      either has no interval). Tied means "not shown different", not "as fast": it never chooses a setup.
    - "speculative" when the widened lower bound of the leader, or of a candidate tied with it, is above 1
      (the m intervals hold together, so any one of them shows a gain; a leader measured on fewer units may
      be the one that cannot). The fastest setup shown faster is the leader when its bound is above 1, else
      the highest geometric mean among the tied ones whose bound is. It is recommended (rule "fastest")
      unless a cheaper setup (smaller `cost`) whose widened lower bound is above 1 too is shown equivalent
      to it: the one-sided lower bound, at `confidence` and Bonferroni-widened for the cheaper setups
      tested, of their paired ratio (cheaper / fastest) over their common units is above 1 / (1 + margin),
      i.e. the fastest is shown to be at most `margin` faster. Then the cheapest such setup is recommended
      (rule "equivalent"). `estimate` is the chosen one's widened estimate.
    - "no-gain" when every candidate's own upper bound is below 1: no setup beats the baseline (a claim
      about all of them at once, which each one's interval at the confidence level establishes: an
      intersection-union test needs no widening).
    - Otherwise "inconclusive", including when the leader has fewer than MIN_UNITS_FOR_INTERVAL units
      (then more_units_needed is the units still missing for any interval). Else, taking the leader's
      mean log ratio and sd as they are, more_units_needed is the total n at which the widened interval
      would exclude 1, minus the current n; None when that total is above MAX_GROWTH_FOR_MORE_UNITS x
      the current n: the difference is then too small for more runs to settle. The leader's observed mean
      is biased upwards by its selection, so read this number as optimistic. Under "workload" the units
      are prompts, and the advice is to add prompts (spread over the suite's categories), not passes.

    `describe` turns a key into the name used in `reason`. `compared`, when larger than m, is the number of setups
    the intervals are widened for instead: every setup the sweep compared, including those a smart sweep's race
    stopped measuring (they were compared too, on fewer prompts or on predictions), so that a smart verdict is
    widened as much as an exhaustive sweep's of the same setups.
    """
    _check_level(confidence, 1)
    if estimand not in ESTIMANDS:
        raise ValueError(f"estimand must be one of {', '.join(ESTIMANDS)}, got {estimand!r}")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    workload = estimand == "workload"
    usable = []  # (index, candidate, {unit: log ratio})
    for index, candidate in enumerate(candidates):
        logs = {}
        for unit, ratio in candidate.ratios.items():
            value = _usable_logs([ratio])
            if value:
                logs[unit] = value[0]
        if logs:
            usable.append((index, candidate, logs))
    # Setups with an interval compete; one with fewer units (a pair cut short) cannot lead on luck.
    with_interval = [item for item in usable if len(item[2]) >= MIN_UNITS_FOR_INTERVAL]
    too_few = [item for item in usable if len(item[2]) < MIN_UNITS_FOR_INTERVAL] if with_interval else []
    usable = with_interval or usable
    m = len(usable)
    if m == 0:
        return None
    widened = max(m, compared)  # the setups the intervals hold for together
    estimates = {index: _estimate_from_logs(list(logs.values()), confidence, widened) for index, _, logs in usable}
    units_of = {index: logs for index, _, logs in usable}
    leader_index, leader, leader_logs = max(usable, key=lambda item: (estimates[item[0]].geomean, -item[0]))
    leader_est = estimates[leader_index]
    tied = [
        (index, candidate)
        for index, candidate, logs in usable
        if index != leader_index
        and _tied(leader_logs, logs, leader_est, estimates[index], confidence, max(widened - 1, 1))
    ]
    tied_keys = [candidate.key for _, candidate in tied]
    name = describe(leader.key)
    unit_word = "prompt" if workload else "run"

    def verdict(kind: str, reason: str, chosen=None, estimate=leader_est, more=None, index=leader_index,
                rule=None, equivalent=()) -> Verdict:
        return Verdict(verdict=kind, chosen=chosen, leader=leader.key, estimate=estimate, tied=tied_keys,
                       candidates=widened, more_units_needed=more, reason=reason, estimand=estimand,
                       prompts=_prompt_count(units_of[index]), rule=rule, margin=margin,
                       equivalent=list(equivalent))

    if leader_est.low is None:
        n = leader_est.n
        advice = ("add prompts (a suite of 12 or more)" if workload
                  else "run more passes (-r)")
        return verdict(
            "inconclusive",
            f"n={n} {unit_word}{'s' if n != 1 else ''}: too few for an interval; {advice}",
            more=MIN_UNITS_FOR_INTERVAL - n,
        )
    # Surely faster than the baseline: the leader, or a setup tied with it (the leader may have fewer units
    # and so a wider interval); every interval is widened for all m, so any one of them proves the claim.
    pool = [(index, candidate) for index, candidate in [(leader_index, leader)] + tied
            if estimates[index].low is not None and estimates[index].low > 1.0]
    if pool:
        fastest_index, fastest = max(pool, key=lambda item: (estimates[item[0]].geomean, -item[0]))
        fastest_est = estimates[fastest_index]
        # a cheaper setup replaces it only when shown within the margin of it (one-sided, widened for the tests)
        cheaper = [(index, candidate) for index, candidate, _ in usable
                   if index != fastest_index and candidate.cost < fastest.cost
                   and estimates[index].low is not None and estimates[index].low > 1.0]
        bounds = {index: equivalence_bound(units_of[index], units_of[fastest_index], confidence, len(cheaper))
                  for index, _ in cheaper}
        floor = 1.0 / (1.0 + margin)
        equivalent = [(index, candidate) for index, candidate in cheaper
                      if bounds[index] is not None and bounds[index] > floor]
        fastest_name = describe(fastest.key)
        if fastest_index == leader_index:
            fastest_text = "the fastest setup"
        else:
            fastest_text = (f"the fastest setup shown faster than the baseline; the fastest, {name} at "
                            f"{format_ratio(leader_est.geomean)} ({_format_interval(leader_est)}), is tied with it but "
                            f"less certain (n={leader_est.n})")
        if equivalent:
            chosen_index, chosen = min(equivalent, key=lambda item: (item[1].cost, item[0]))
            chosen_est = estimates[chosen_index]
            reason = (f"{describe(chosen.key)} is {format_ratio(chosen_est.geomean)} faster "
                      f"({_format_interval(chosen_est)}), the cheapest setup within {margin:.0%} of the fastest, "
                      f"{fastest_name} at {format_ratio(fastest_est.geomean)} (equivalence test: at least "
                      f"{bounds[chosen_index]:.3f}x of its speed, one-sided {confidence:.0%})")
            return verdict("speculative", reason, chosen=chosen.key, estimate=chosen_est, index=chosen_index,
                           rule="equivalent", equivalent=[c.key for _, c in equivalent])
        reason = f"{fastest_name} is {format_ratio(fastest_est.geomean)} faster ({_format_interval(fastest_est)})"
        if m > 1:
            reason += f", {fastest_text}"
            if cheaper:
                reason += f" (no cheaper setup is shown within {margin:.0%} of it)"
        return verdict("speculative", reason, chosen=fastest.key, estimate=fastest_est, index=fastest_index,
                       rule="fastest")
    # "every setup is slower" is an intersection of claims: it holds at the confidence level when each
    # setup's own (not widened) interval says so (an intersection-union test), unlike "this one is faster"
    own = {index: _estimate_from_logs(list(logs.values()), confidence, 1) for index, _, logs in usable}
    if all(own[index].high is not None and own[index].high < 1.0 for index, _, _ in usable):
        ahead = [candidate for _, candidate, logs in too_few if math.fsum(logs.values()) >= 0]
        if ahead:
            return verdict(
                "inconclusive",
                f"no setup with enough runs beats the baseline (the best, {name}, is "
                f"{format_ratio(leader_est.geomean)}), "
                f"but {describe(ahead[0].key)} has too few runs to judge and is not slower; finish measuring it",
            )
        return verdict(
            "no-gain",
            f"no setup beats the baseline: each is surely slower on its own interval; the best, {name}, is "
            f"{format_ratio(leader_est.geomean)} ({_format_interval(own[leader_index])})",
        )
    mean, sd = math.log(leader_est.geomean), leader_est.log_sd
    total = _units_to_decide(mean, sd, leader_est.n, confidence, widened)
    if total is None:
        return verdict(
            "inconclusive",
            f"the best setup, {name}, is {_percent(leader_est.geomean)} than the baseline "
            f"({_format_interval(leader_est)}): too close to call, and more "
            f"{'prompts' if workload else 'runs'} are unlikely to make it matter",
        )
    more = max(total - leader_est.n, 1)
    if workload:
        advice = (f"about {more} more prompt{'s' if more != 1 else ''} like these (spread over the suite's "
                  "categories) would likely decide it; more passes would not")
    else:
        advice = f"about {more} more run{'s' if more != 1 else ''} of these prompts (passes, -r) would likely decide it"
    return verdict(
        "inconclusive",
        f"the best setup, {name}, is {format_ratio(leader_est.geomean)} ({_format_interval(leader_est)}), not clearly "
        f"different from the baseline; {advice}",
        more=more,
    )


# --- losslessness -------------------------------------------------------------------------------------


@dataclass
class Losslessness:
    """Whether speculative token ids equal the baseline's, run for run."""

    checked: bool  # False when sampling (temp > 0) makes the comparison meaningless
    identical: bool | None
    runs_compared: int = 0
    runs_diverged: int = 0
    first_divergence: dict | None = None  # prompt_index, pass_index, token_index

    def to_dict(self) -> dict:
        return asdict(self)


def first_divergence(a: list[int], b: list[int]) -> int | None:
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def compare_outputs(baseline_samples, speculative_samples, greedy: bool) -> Losslessness:
    """Compare token ids run for run; samples need prompt_index, pass_index and token_ids."""
    if not greedy:
        return Losslessness(checked=False, identical=None)
    reference = {(s.prompt_index, s.pass_index): s.token_ids for s in baseline_samples}
    result = Losslessness(checked=True, identical=True)
    for sample in speculative_samples:
        expected = reference.get((sample.prompt_index, sample.pass_index))
        if expected is None:
            continue
        result.runs_compared += 1
        index = first_divergence(expected, sample.token_ids)
        if index is not None:
            result.runs_diverged += 1
            if result.identical:
                result.identical = False
                result.first_divergence = {
                    "prompt_index": sample.prompt_index,
                    "pass_index": sample.pass_index,
                    "token_index": index,
                }
    return result
