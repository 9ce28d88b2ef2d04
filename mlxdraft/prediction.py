"""Predicted speedups of speculative decoding at every draft length k <= k_max, from one measurement at
k_max and the target's timed forward passes (the speedup model of issue #12), with honest intervals.

The model, for a fixed k:

- acceptance profile: P(the first i drafted tokens of a round are all accepted), i = 1..k_max, measured
  from the complete rounds of runs at k_max. A round at a smaller k drafts the same first tokens and
  stops earlier, so the profile at k_max gives every k <= k_max;
- expected tokens per round E(k) = 1 + sum_{i=1..k} P(first i accepted) (Leviathan et al., with a
  measured per-position profile instead of one constant alpha);
- time per round R(k) = k * draft_token_s + T(k+1) + round_overhead_s, T(n) being one target forward
  pass over n tokens at the workload's context length; the baseline spends T(1) per token;
- decode speedup(k) = (E(k) / R(k)) / (1 / T(1));
- end-to-end: total time = time to first token + (tokens after the first round) x (time per token), with
  the measured baseline and speculative times to first token (the speculative one moved from k_max to k
  by R(k) - R(k_max): its first round drafts k tokens) and the workload's generated tokens.

Like the measured speedups (`analysis.compare`), a predicted speedup is the geometric mean over units
(prompt x pass) of per-unit speedups: each unit's E(k) comes from its own rounds.

Interval (default confidence 0.95, DEFAULT_CONFIDENCE), on the log scale, from two independent parts:

- units: the sample variance of the per-unit log speedups / n, as in `stats.estimate_ratio` (a t
  interval on logs; it is what a bootstrap over units estimates, without the percentile bootstrap's
  narrowness at small n);
- timing: a seeded bootstrap of the timing repeats (each resample takes the medians of the repeats
  drawn with replacement; verify timings with the same number of repeats are drawn with the same repeat
  indices, since `Engine.time_forward` times every width within each repeat);

added, with a t quantile at Welch-Satterthwaite degrees of freedom (units - 1, and r - 1 for the fewest
repeats r). Seeded simulations (tests/test_prediction.py) put the coverage of the 95% interval at
0.94-0.98 with 3 to 30 units and 1 to 5 repeats of 1-5% noise. Below
stats.MIN_UNITS_FOR_INTERVAL units there is no interval. Timings with one repeat have no spread and add
nothing. The interval covers the sampling uncertainty of the model's inputs, not the model's own error
(loop overheads that forward-pass timings miss): compare a prediction with a measured k to see that.

Pure Python: nothing here is measured, loaded or printed.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from .errors import InvalidInputError
from .stats import MIN_UNITS_FOR_INTERVAL, t_quantile

DEFAULT_CONFIDENCE = 0.95
DEFAULT_BOOTSTRAP_REPEATS = 1000  # timing resamples per model (shared by all its predictions)


def _unit(sample) -> tuple[int, int]:
    """The unit of pairing, as `analysis.unit_of`: one prompt in one pass."""
    return (sample.prompt_index, sample.pass_index)


# --- acceptance ---------------------------------------------------------------------------------------


@dataclass
class AcceptanceProfile:
    """How far into a round the drafted tokens survive, from complete rounds that drafted k tokens."""

    k: int  # drafted tokens per round in the rounds counted (k_max)
    counts: dict = field(default_factory=dict)  # unit -> rounds by accepted drafted tokens (list, index 0..k)

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        for unit, row in self.counts.items():
            if len(row) != self.k + 1 or any(c < 0 for c in row):
                raise ValueError(f"unit {unit}: need {self.k + 1} non-negative round counts, got {row}")
        self.counts = {unit: list(row) for unit, row in self.counts.items() if sum(row) > 0}

    @classmethod
    def from_samples(cls, samples: Iterable, k: int) -> AcceptanceProfile:
        """Complete rounds with exactly k drafted tokens, per unit. Samples without per-round records
        (older files) count when they were measured at k: their accepted_length_counts are complete rounds."""
        counts: dict = {}
        for sample in samples:
            if sample.is_baseline:
                continue
            row = [0] * (k + 1)
            if sample.rounds is not None:
                for proposed, accepted, complete in sample.rounds:
                    if complete and proposed == k:
                        row[accepted] += 1
            elif sample.num_draft_tokens == k and len(sample.accepted_length_counts) == k + 1:
                row = list(sample.accepted_length_counts)
            if sum(row):
                total = counts.setdefault(_unit(sample), [0] * (k + 1))
                for index, count in enumerate(row):
                    total[index] += count
        if not counts:
            raise InvalidInputError(f"no complete verify round drafted {k} tokens in these runs: measure at k={k} "
                                    "with a method that drafts a fixed number of tokens")
        return cls(k, counts)

    @property
    def units(self) -> int:
        return len(self.counts)

    @property
    def rounds(self) -> int:
        return sum(sum(row) for row in self.counts.values())

    def pooled_counts(self) -> list[int]:
        """Rounds by accepted drafted tokens, all units together."""
        return [sum(row[j] for row in self.counts.values()) for j in range(self.k + 1)]

    def _check(self, i: int) -> None:
        if not 0 <= i <= self.k:
            raise ValueError(f"the profile was measured at k={self.k}: it says nothing about position {i}")

    @staticmethod
    def _reached(row: list[int], i: int) -> int:
        """Rounds whose first i drafted tokens were all accepted."""
        return sum(row[i:])

    def all_accepted(self, i: int) -> float:
        """P(the first i drafted tokens of a round are all accepted), all rounds pooled; 1 for i = 0."""
        self._check(i)
        row = self.pooled_counts()
        return self._reached(row, i) / sum(row)

    def conditional_acceptance(self, i: int) -> float | None:
        """P(the i-th drafted token is accepted | the ones before it were), i >= 1; None when no round
        reached position i."""
        self._check(i)
        if i < 1:
            raise ValueError("positions start at 1")
        row = self.pooled_counts()
        reached = self._reached(row, i - 1)
        return self._reached(row, i) / reached if reached else None

    @property
    def position_acceptance(self) -> list[float | None]:
        """conditional_acceptance(i) for i = 1..k."""
        return [self.conditional_acceptance(i) for i in range(1, self.k + 1)]

    def expected_tokens(self, k: int | None = None) -> float:
        """Expected tokens per round when drafting k <= self.k tokens, all rounds pooled."""
        k = self.k if k is None else k
        self._check(k)
        return _expected_tokens(self.pooled_counts(), k)

    def unit_expected_tokens(self, k: int | None = None) -> dict:
        """Expected tokens per round at k, per unit, from each unit's own rounds."""
        k = self.k if k is None else k
        self._check(k)
        return {unit: _expected_tokens(row, k) for unit, row in self.counts.items()}

    def resample(self, rng: random.Random) -> AcceptanceProfile:
        """A bootstrap replicate: as many units as there are, drawn with replacement (keys become 0..n-1)."""
        rows = list(self.counts.values())
        return AcceptanceProfile(self.k, {index: list(rng.choice(rows)) for index in range(len(rows))})


def _expected_tokens(row: list[int], k: int) -> float:
    rounds = sum(row)
    return 1.0 + sum(sum(row[i:]) for i in range(1, k + 1)) / rounds


# --- costs --------------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def _float_list(values, what: str, allow_zero: bool = False) -> list[float]:
    if isinstance(values, (int, float)):
        values = [values]
    values = [float(v) for v in values]
    if not values:
        raise InvalidInputError(f"{what}: no timing")
    for value in values:
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise InvalidInputError(f"{what}: {value} is not a usable time in seconds")
    return values


@dataclass
class _Timing:
    """Point values of the costs: one number per width."""

    verify_s: dict  # n -> seconds (sorted by n)
    draft_token_s: float
    round_overhead_s: float
    token_overhead_s: float = 0.0
    round_scale: float = 1.0

    def baseline_token_s(self) -> float:
        """The baseline's time per token: T(1) plus the plain loop's own overhead."""
        return max(self.target_s(1) + self.token_overhead_s, 1e-12)

    def target_s(self, n: int) -> float:
        """T(n), linear between measured widths."""
        if n in self.verify_s:
            return self.verify_s[n]
        below = [m for m in self.verify_s if m < n]
        above = [m for m in self.verify_s if m > n]
        if not below or not above:
            raise InvalidInputError(f"no verify timing for {n} tokens (timed: {sorted(self.verify_s)}); "
                                    f"time every width from 1 to k_max + 1")
        low, high = max(below), min(above)
        share = (n - low) / (high - low)
        return self.verify_s[low] + share * (self.verify_s[high] - self.verify_s[low])

    def round_s(self, k: int) -> float:
        return self.round_scale * (k * self.draft_token_s + self.target_s(k + 1) + self.round_overhead_s)


@dataclass
class VerifyCosts:
    """What a round costs: the target's forward pass over n tokens (a verify of n - 1 drafted tokens;
    n = 1 is a plain decoding step) and the draft's time per proposed token, as repeated timings."""

    verify_s: dict  # n -> [seconds, ...]: repeats of one target forward pass over n tokens
    draft_token_s: list = field(default_factory=lambda: [0.0])  # repeats of the draft's seconds per token
    round_overhead_s: float = 0.0  # per round, beyond drafting and verifying (seconds); 0 unless calibrated
    token_overhead_s: float = 0.0  # per baseline token, beyond T(1) (seconds); 0 unless calibrated
    round_scale: float = 1.0  # measured round time / modelled round time at k_max; 1 unless calibrated

    def __post_init__(self):
        self.verify_s = {int(n): _float_list(times, f"verify time for {n} tokens")
                         for n, times in sorted(self.verify_s.items(), key=lambda item: int(item[0]))}
        if 1 not in self.verify_s:
            raise InvalidInputError("the verify costs need T(1), the time of one plain decoding step")
        if any(n < 1 for n in self.verify_s):
            raise InvalidInputError("verify widths start at 1 token")
        self.draft_token_s = _float_list(self.draft_token_s, "draft time per token", allow_zero=True)
        if not math.isfinite(self.round_overhead_s) or self.round_overhead_s < 0:
            raise InvalidInputError(f"round overhead {self.round_overhead_s} s is not a usable time")
        if not math.isfinite(self.token_overhead_s):  # negative when calibration takes time off T(1)
            raise InvalidInputError(f"token overhead {self.token_overhead_s} s is not a usable time")
        if not math.isfinite(self.round_scale) or self.round_scale <= 0:
            raise InvalidInputError(f"round scale {self.round_scale} is not usable")

    @property
    def max_width(self) -> int:
        return max(self.verify_s)

    @property
    def repeats(self) -> int | None:
        """Fewest repeats among timings that have more than one (None when none does: no spread)."""
        counts = [len(v) for v in (*self.verify_s.values(), self.draft_token_s) if len(v) > 1]
        return min(counts) if counts else None

    def point(self) -> _Timing:
        """Medians of the repeats."""
        return _Timing({n: statistics.median(v) for n, v in self.verify_s.items()},
                       statistics.median(self.draft_token_s), self.round_overhead_s, self.token_overhead_s,
                       self.round_scale)

    def resample(self, rng: random.Random) -> _Timing:
        """Medians of repeats drawn with replacement; verify timings with equal repeat counts share the
        drawn repeat indices (every width is timed within each repeat)."""
        indices: dict[int, list[int]] = {}
        verify = {}
        for n, times in self.verify_s.items():
            if len(times) not in indices:
                indices[len(times)] = [int(rng.random() * len(times)) for _ in times]
            verify[n] = _median([times[i] for i in indices[len(times)]])
        draft = _median([self.draft_token_s[int(rng.random() * len(self.draft_token_s))]
                         for _ in self.draft_token_s])
        return _Timing(verify, draft, self.round_overhead_s, self.token_overhead_s, self.round_scale)

    def target_s(self, n: int) -> float:
        """Median T(n), linear between timed widths."""
        return self.point().target_s(n)

    def round_s(self, k: int) -> float:
        """Median time of one round drafting k tokens."""
        return self.point().round_s(k)


def costs_from_samples(speculative_samples: Iterable, baseline_samples: Iterable) -> VerifyCosts:
    """Costs estimated from measured runs, when no forward pass was timed directly: T(1) from each
    baseline run's decode time per token; from each speculative run that split its time (own-loop methods:
    draft_s and target_s set, rounds recorded) the draft's time per proposed token, T(k+1) as its verify
    time per round, and the per-round overhead as its decode time per round beyond drafting and verifying
    (the first round taken as average; median over runs, at least 0).

    A fallback: only T(1) and T(k+1) are known, so T(n) in between is a straight line, while the real one
    may jump from 1 to 2 rows. T(1) includes the baseline loop's own per-token overhead."""
    verify: dict[int, list[float]] = {}
    for sample in baseline_samples:
        if sample.decode_tokens and sample.decode_s > 0:
            verify.setdefault(1, []).append(sample.decode_s / sample.decode_tokens)
    draft, overheads = [], []
    for sample in speculative_samples:
        if sample.is_baseline or sample.rounds is None or sample.draft_s is None or sample.target_s is None:
            continue
        rounds = len(sample.rounds)
        proposed = sum(row[0] for row in sample.rounds)
        if not rounds or not proposed:
            continue
        draft.append(sample.draft_s / proposed)
        verify.setdefault(sample.num_draft_tokens + 1, []).append(sample.target_s / rounds)
        if rounds > 1:
            per_round = (sample.draft_s + sample.target_s) / rounds
            overheads.append((sample.decode_s - per_round * (rounds - 1)) / (rounds - 1))
    if 1 not in verify:
        raise InvalidInputError("no baseline run with a decode phase: T(1) cannot be estimated")
    if not draft:
        raise InvalidInputError("no speculative run recorded its drafting and verify times separately; "
                                "time the forward passes instead (Engine.time_forward)")
    return VerifyCosts(verify, draft, max(0.0, statistics.median(overheads)) if overheads else 0.0)


# --- the model ----------------------------------------------------------------------------------------


@dataclass
class Prediction:
    """Predicted speedups at one k; bounds are None below MIN_UNITS_FOR_INTERVAL units."""

    k: int
    decode_speedup: float  # geometric mean over units of (E(k) / R(k)) * T(1)
    low: float | None
    high: float | None
    e2e_speedup: float | None  # None without baseline runs to take the time to first token from
    e2e_low: float | None
    e2e_high: float | None
    expected_tokens_per_round: float  # geometric mean over units of E(k)
    round_s: float  # R(k), from the medians of the timings
    units: int = 0  # units (prompt x pass) the acceptance comes from
    confidence: float = DEFAULT_CONFIDENCE

    def to_dict(self) -> dict:
        return asdict(self)


def can_still_win(prediction: Prediction, leader_low: float | None, objective: str = "decode") -> bool:
    """Whether a candidate may still beat the leader: its predicted upper bound (decode, or "e2e") is at
    least the leader's lower bound. Without either bound nothing is ruled out (True)."""
    if objective not in ("decode", "e2e"):
        raise ValueError(f"objective must be 'decode' or 'e2e', got {objective!r}")
    high = prediction.high if objective == "decode" else prediction.e2e_high
    if high is None or leader_low is None:
        return True
    return high >= leader_low


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def _variance(values: list[float]) -> float:
    mean = _mean(values)
    return math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)


def _bounds(log_point: float, unit_logs: list[float], timing_logs: list[float], repeats: int | None,
            confidence: float) -> tuple[float | None, float | None]:
    """Interval on the ratio scale: unit and timing variances of the log estimate added, t quantile at
    Welch-Satterthwaite degrees of freedom."""
    n = len(unit_logs)
    if n < MIN_UNITS_FOR_INTERVAL:
        return None, None
    var_units = _variance(unit_logs) / n
    var_timing = 0.0
    if repeats and len(timing_logs) > 1:
        var_timing = _variance(timing_logs)
    total = var_units + var_timing
    if total <= 0:
        return math.exp(log_point), math.exp(log_point)
    denominator = var_units ** 2 / (n - 1) + (var_timing ** 2 / (repeats - 1) if var_timing else 0.0)
    df = max(1, math.floor(total ** 2 / denominator))
    half_width = t_quantile(1.0 - (1.0 - confidence) / 2.0, df) * math.sqrt(total)
    return math.exp(log_point - half_width), math.exp(log_point + half_width)


@dataclass
class SpeedupModel:
    """An acceptance profile measured at k_max, the costs, and per unit the measured times to first
    token: everything a prediction at k <= k_max needs."""

    profile: AcceptanceProfile
    costs: VerifyCosts
    speculative_ttft_s: dict = field(default_factory=dict)  # unit -> time to first token at k_max (s)
    baseline_ttft_s: dict = field(default_factory=dict)  # unit -> baseline time to first token (s)
    generated_tokens: dict = field(default_factory=dict)  # unit -> tokens generated per run
    confidence: float = DEFAULT_CONFIDENCE
    bootstrap_repeats: int = DEFAULT_BOOTSTRAP_REPEATS
    seed: int = 0
    _draws: list | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.costs.max_width < self.profile.k + 1:
            raise InvalidInputError(f"verify timings go up to {self.costs.max_width} tokens; predictions up to "
                                    f"k={self.profile.k} need up to {self.profile.k + 1}")

    @property
    def k_max(self) -> int:
        return self.profile.k

    def _timing_draws(self) -> list[_Timing]:
        """The timing bootstrap, drawn once (seeded) and shared by every k, so predictions do not depend
        on the order they are asked in."""
        if self._draws is None:
            rng = random.Random(self.seed)
            self._draws = [self.costs.resample(rng) for _ in range(self.bootstrap_repeats)]
        return self._draws

    def _e2e_logs(self, k: int, tokens: dict, timing: _Timing, units: list, generated: int | None) -> list[float]:
        """Per unit, log(baseline total time / speculative total time) at k."""
        t1, round_s = timing.baseline_token_s(), timing.round_s(k)
        shift = round_s - timing.round_s(self.k_max)  # the first round drafts k tokens, not k_max
        logs = []
        for unit in units:
            n = generated if generated is not None else self.generated_tokens[unit]
            baseline = self.baseline_ttft_s[unit] + max(n - 1, 0) * t1
            first = max(self.speculative_ttft_s[unit] + shift, 0.0)
            speculative = first + max(n - tokens[unit], 0.0) * round_s / tokens[unit]
            logs.append(math.log(baseline / speculative))
        return logs

    def predict(self, k: int, generated_tokens: int | None = None) -> Prediction:
        """The predicted decode and end-to-end speedups of drafting k tokens per round (1 <= k <= k_max);
        `generated_tokens` replaces each unit's measured length in the end-to-end figure."""
        if not 1 <= k <= self.k_max:
            raise InvalidInputError(f"acceptance was measured at k={self.k_max}: predictions go from k=1 to "
                                    f"k={self.k_max}, not k={k}")
        tokens = self.profile.unit_expected_tokens(k)
        units = list(tokens)
        token_logs = [math.log(tokens[unit]) for unit in units]
        point = self.costs.point()
        draws = self._timing_draws()
        repeats = self.costs.repeats

        def decode_log(timing: _Timing) -> float:
            return math.log(timing.baseline_token_s()) - math.log(timing.round_s(k))

        mean_tokens_log = _mean(token_logs)
        log_point = mean_tokens_log + decode_log(point)
        low, high = _bounds(log_point, token_logs, [mean_tokens_log + decode_log(t) for t in draws], repeats,
                            self.confidence)

        e2e = e2e_low = e2e_high = None
        e2e_units = [u for u in units if u in self.baseline_ttft_s and u in self.speculative_ttft_s
                     and (generated_tokens is not None or u in self.generated_tokens)]
        if e2e_units:
            unit_logs = self._e2e_logs(k, tokens, point, e2e_units, generated_tokens)
            e2e_log = _mean(unit_logs)
            draws_logs = [_mean(self._e2e_logs(k, tokens, t, e2e_units, generated_tokens)) for t in draws]
            e2e = math.exp(e2e_log)
            e2e_low, e2e_high = _bounds(e2e_log, unit_logs, draws_logs, repeats, self.confidence)

        return Prediction(k=k, decode_speedup=math.exp(log_point), low=low, high=high, e2e_speedup=e2e,
                          e2e_low=e2e_low, e2e_high=e2e_high, expected_tokens_per_round=math.exp(mean_tokens_log),
                          round_s=point.round_s(k), units=len(units), confidence=self.confidence)

    def unit_decode_logs(self, k: int) -> dict:
        """Per unit, the log of the predicted decode speedup at k (median timings): predictions at two k
        (or of two setups measured on the same units) compare unit by unit, which cancels what the units
        share."""
        timing = self.costs.point()
        offset = math.log(timing.baseline_token_s()) - math.log(timing.round_s(k))
        return {unit: math.log(tokens) + offset for unit, tokens in self.profile.unit_expected_tokens(k).items()}

    def predict_all(self, ks: Iterable[int] | None = None, generated_tokens: int | None = None) -> list[Prediction]:
        """Predictions at every k in `ks` (default 1..k_max)."""
        ks = range(1, self.k_max + 1) if ks is None else ks
        return [self.predict(k, generated_tokens) for k in ks]


def fit_model(speculative_samples: Iterable, costs: VerifyCosts, baseline_samples: Iterable = (), *,
              k: int | None = None, confidence: float = DEFAULT_CONFIDENCE,
              bootstrap_repeats: int = DEFAULT_BOOTSTRAP_REPEATS, seed: int = 0,
              calibrate: bool = False) -> SpeedupModel:
    """A SpeedupModel from the runs of one speculative setup measured at k (default: the one k they were
    run at; measure at the largest k of interest), the costs, and the baseline runs measured beside them
    (for the end-to-end figure; without them e2e predictions are None).

    `calibrate` anchors the costs to the runs themselves: every modelled round time is scaled so that
    the measured decode time per round at k is met (the loop's own cost beyond the separately timed
    forward passes: sampling, bookkeeping, dispatch, passes that overlap in the loop), and the baseline's
    time per token is its measured one. The shape of the timed T(n) curve and the draft's cost then carry
    the prediction from k to every smaller k."""
    speculative = [s for s in speculative_samples if not s.is_baseline]
    if k is None:
        ks = sorted({s.num_draft_tokens for s in speculative})
        if len(ks) != 1:
            raise InvalidInputError(f"these runs were measured at k = {ks or 'nothing'}: say which k to use")
        k = ks[0]
    profile = AcceptanceProfile.from_samples(speculative, k)
    speculative = [s for s in speculative if _unit(s) in profile.counts and s.num_draft_tokens == k]
    if calibrate:
        costs = _calibrated(costs, speculative, [s for s in baseline_samples if s.is_baseline], k,
                            profile.expected_tokens(k))
    return SpeedupModel(
        profile=profile,
        costs=costs,
        speculative_ttft_s=_per_unit(speculative, "ttft_s"),
        baseline_ttft_s=_per_unit([s for s in baseline_samples if s.is_baseline], "ttft_s"),
        generated_tokens=_per_unit(speculative, "generated_tokens"),
        confidence=confidence,
        bootstrap_repeats=bootstrap_repeats,
        seed=seed,
    )


def _calibrated(costs: VerifyCosts, speculative: list, baseline: list, k: int, tokens_per_round: float) -> VerifyCosts:
    """`costs` with the overheads that make the model meet the measured decode speeds (see fit_model).
    The effective round time is the measured decode time per token times the expected tokens of a
    complete round, so rounds cut short at the end of a run are paid for as they were."""
    import dataclasses

    point = dataclasses.replace(costs, token_overhead_s=0.0, round_scale=1.0).point()
    round_times = [s.decode_s / s.decode_tokens * tokens_per_round for s in speculative
                   if s.decode_tokens > 0 and s.decode_s > 0]
    token_times = [s.decode_s / s.decode_tokens for s in baseline if s.decode_tokens > 0 and s.decode_s > 0]
    return dataclasses.replace(
        costs,
        round_scale=statistics.median(round_times) / point.round_s(k) if round_times else costs.round_scale,
        token_overhead_s=statistics.median(token_times) - point.target_s(1) if token_times else costs.token_overhead_s,
    )


def _per_unit(samples: list, attribute: str) -> dict:
    """Mean of `attribute` per unit."""
    values: dict = {}
    for sample in samples:
        values.setdefault(_unit(sample), []).append(float(getattr(sample, attribute)))
    return {unit: _mean(v) for unit, v in values.items()}


def predict_setups(samples: Iterable, verify_s: dict, token_s: list[float] | float, k_max: int,
                   methods: Iterable[str], unit_logs: dict | None = None) -> dict[tuple[str, int], Prediction]:
    """Predictions at every k <= k_max for each of `methods` (fixed-k methods: each fitted to its runs at
    k_max among `samples`, with the baseline runs among them), as {(method, k): Prediction}. A method
    whose runs cannot be fitted (no complete round yet) gets none. `unit_logs`, when given, receives
    each setup's per-unit log decode speedups (SpeedupModel.unit_decode_logs)."""
    samples = list(samples)
    baseline = [s for s in samples if s.is_baseline]
    costs = VerifyCosts({int(n): s for n, s in verify_s.items()}, token_s)
    predictions = {}
    for method in methods:
        at_max = [s for s in samples if s.method == method and s.num_draft_tokens == k_max]
        if not at_max:
            continue
        try:
            model = fit_model(at_max, costs, baseline, k=k_max, calibrate=True)
            predictions.update({(method, p.k): p for p in model.predict_all()})
            if unit_logs is not None:
                unit_logs.update({(method, k): model.unit_decode_logs(k) for k in range(1, k_max + 1)})
        except (InvalidInputError, ValueError, ZeroDivisionError):  # too few complete rounds to fit
            continue
    return predictions
