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
(loop overheads that forward-pass timings miss): compare a prediction with a measured k to see that. The smart
sweep's race does so before it prunes anything on a prediction (`race.Race.model_errors`: it measures each draft's
predicted best k, and widens every prediction by the error found there).

Pure Python: nothing here is measured, loaded or printed.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from .errors import InvalidInputError
from .stats import MIN_UNITS_FOR_INTERVAL, t_quantile

DEFAULT_CONFIDENCE = 0.95
DEFAULT_BOOTSTRAP_REPEATS = 1000  # timing resamples per model (shared by all its predictions)


def _unit(sample) -> int:
    """The unit of replication, as `analysis.paired_ratios`: one prompt, its passes pooled (acceptance counts
    summed, times and log speeds averaged), so that a prediction's interval has prompts as its n, as every
    measured speedup's has."""
    return sample.prompt_index


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

    def unit_reach(self) -> dict:
        """Per unit, [P(the first i drafted tokens are all accepted) for i = 0..k], from its own rounds."""
        return {unit: [self._reached(row, i) / sum(row) for i in range(self.k + 1)]
                for unit, row in self.counts.items()}

    def resample(self, rng: random.Random) -> AcceptanceProfile:
        """A bootstrap replicate: as many units as there are, drawn with replacement (keys become 0..n-1)."""
        rows = list(self.counts.values())
        return AcceptanceProfile(self.k, {index: list(rng.choice(rows)) for index in range(len(rows))})


def _expected_tokens(row: list[int], k: int) -> float:
    rounds = sum(row)
    return 1.0 + sum(sum(row[i:]) for i in range(1, k + 1)) / rounds


def _outcomes(reach: list[float], drafted: int) -> list[float]:
    """P(exactly a drafted tokens accepted), a = 0..drafted, in a round that drafts `drafted` tokens."""
    return [reach[a] - (reach[a + 1] if a < drafted else 0.0) for a in range(drafted + 1)]


def _decode_times(reach: list[float], k: int, tokens: int, round_s: Callable[[int], float]) -> list[float]:
    """[expected seconds to emit m more tokens for m = 0..tokens], drafting k tokens per round but never
    more than the tokens left (as mlx-lm does near max-tokens); a round that drafts r tokens costs
    round_s(r) and emits its accepted tokens and one of the target's own, up to the tokens left."""
    times = [0.0] * (tokens + 1)
    for left in range(1, tokens + 1):
        drafted = min(k, left)
        times[left] = round_s(drafted) + sum(p * times[left - min(a + 1, left)]
                                             for a, p in enumerate(_outcomes(reach, drafted)))
    return times


def _decode_phase(reach: list[float], k: int, generated: int, round_s: Callable[[int], float]) -> tuple[float, float]:
    """Expected (tokens, seconds) of a run's decode phase: what follows its first round (the first round,
    which drafts too, ends the time to first token), for a run of `generated` tokens."""
    times = _decode_times(reach, k, generated, round_s)
    tokens = seconds = 0.0
    for accepted, p in enumerate(_outcomes(reach, min(k, generated))):
        left = generated - min(accepted + 1, generated)
        tokens += p * left
        seconds += p * times[left]
    return tokens, seconds


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


def non_decreasing(times: dict) -> dict:
    """The closest non-decreasing curve (least squares) to {n: seconds}: a forward pass over more tokens
    does not take less time, so a width that came out slower than wider ones met noise, and it is averaged
    with them (pool-adjacent-violators) instead of bending the predicted best k around it."""
    blocks: list[list] = []  # [mean, count] per pooled block, in order of n
    for n in sorted(times):
        blocks.append([times[n], 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, count = blocks.pop()
            blocks[-1] = [(blocks[-1][0] * blocks[-1][1] + mean * count) / (blocks[-1][1] + count),
                          blocks[-1][1] + count]
    values = [mean for mean, count in blocks for _ in range(count)]
    return dict(zip(sorted(times), values))


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
        """One round drafting k tokens. An anchored timing draw's overhead may be negative; a round never
        costs nothing."""
        return max(self.round_scale * (k * self.draft_token_s + self.target_s(k + 1) + self.round_overhead_s), 1e-12)


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
        """Medians of the repeats (T(n) made non-decreasing, `non_decreasing`)."""
        return _Timing(non_decreasing({n: statistics.median(v) for n, v in self.verify_s.items()}),
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
        return _Timing(non_decreasing(verify), draft, self.round_overhead_s, self.token_overhead_s, self.round_scale)

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


@dataclass
class PredictedLogs:
    """One setup's predicted log decode speedups, for comparing setups unit by unit: per unit (median
    timings) and per timing draw (mean over units; the draws of one model's setups share their index)."""

    units: dict  # unit -> log speedup
    draws: list  # one log speedup per timing resample
    repeats: int | None = None  # fewest timing repeats behind the draws (None: the timings have no spread)

    def mean(self) -> float:
        return _mean(list(self.units.values()))


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


def combined_interval(log_point: float, unit_logs: list[float], timing_logs: list[float], repeats: int | None,
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
    anchor_logs: dict = field(default_factory=dict)  # unit -> measured log decode speedup at k_max (calibrated)
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
            rng, point = random.Random(self.seed), self.costs.point()
            self._draws = [self._anchored(self.costs.resample(rng), point) for _ in range(self.bootstrap_repeats)]
        return self._draws

    def _anchored(self, draw: _Timing, point: _Timing) -> _Timing:
        """A calibrated model's timing draw, calibrated the same way (in the steady state): the baseline's
        time per token and the round at k_max stay as measured, so a draw varies only the shape of the
        costs between k and k_max; the measurement at k_max has its own share (the units')."""
        if not self.anchor_logs:
            return draw
        import dataclasses

        raw = dataclasses.replace(draw, round_overhead_s=0.0, round_scale=1.0)
        anchored = dataclasses.replace(raw, token_overhead_s=point.baseline_token_s() - raw.target_s(1))
        if point.round_scale != 1.0:
            return dataclasses.replace(anchored, round_scale=point.round_s(self.k_max) / raw.round_s(self.k_max))
        return dataclasses.replace(anchored, round_overhead_s=point.round_s(self.k_max) - raw.round_s(self.k_max))

    def _e2e_logs(self, k: int, tokens: dict, timing: _Timing, units: list, generated: int | None,
                  exact: bool = False) -> list[float]:
        """Per unit, log(baseline total time / speculative total time) at k; `exact`: the decode phase of a
        run of that length (`_decode_phase`), else the steady state."""
        t1, round_s = timing.baseline_token_s(), timing.round_s(k)
        shift = round_s - timing.round_s(self.k_max)  # the first round drafts k tokens, not k_max
        reach = self.profile.unit_reach() if exact else {}
        logs = []
        for unit in units:
            n = generated if generated is not None else self.generated_tokens[unit]
            baseline = self.baseline_ttft_s[unit] + max(n - 1, 0) * t1
            first = max(self.speculative_ttft_s[unit] + shift, 0.0)
            if exact and round(n) > 1:
                speculative = first + _decode_phase(reach[unit], k, round(n), timing.round_s)[1]
            else:
                speculative = first + max(n - tokens[unit], 0.0) * round_s / tokens[unit]
            logs.append(math.log(baseline / speculative))
        return logs

    def _unit_decode_logs(self, k: int, timing: _Timing) -> dict:
        """Per unit, the log of the predicted decode speedup at k: the expected decode phase of a run as
        long as the unit's (`_decode_phase`: short runs end in rounds cut short), or, for a unit whose
        length is unknown, the steady state E(k) / R(k)."""
        t1 = timing.baseline_token_s()
        logs = {}
        for unit, reach in self.profile.unit_reach().items():
            generated = round(self.generated_tokens.get(unit, 0))
            tokens, seconds = _decode_phase(reach, k, generated, timing.round_s) if generated > 1 else (0.0, 0.0)
            if tokens > 0 and seconds > 0:
                logs[unit] = math.log(tokens / seconds * t1)
            else:
                logs[unit] = math.log(self.profile.unit_expected_tokens(k)[unit] * t1 / timing.round_s(k))
        return logs

    def _anchored_unit_logs(self, k: int, timing: _Timing) -> dict:
        """`_unit_decode_logs`, each unit moved by its own residual at k_max (measured minus modelled) when
        the model was calibrated: the prediction at k_max is each unit's measurement, and its noise is part of
        every prediction's interval, while two predictions of the same model differ only by the model."""
        logs = self._unit_decode_logs(k, timing)
        if not self.anchor_logs:
            return logs
        at_max = logs if k == self.k_max else self._unit_decode_logs(self.k_max, timing)
        return {unit: log + self.anchor_logs[unit] - at_max[unit] for unit, log in logs.items()
                if unit in self.anchor_logs}

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

        unit_logs = list(self._anchored_unit_logs(k, point).values())
        log_point = _mean(unit_logs)
        # the timings' share of the variance, from the steady state (a bootstrap of the exact decode phase
        # would cost a dynamic programme per draw, unit and k for the same spread)
        mean_tokens_log = _mean(token_logs)
        low, high = combined_interval(log_point, unit_logs, [mean_tokens_log + decode_log(t) for t in draws], repeats,
                            self.confidence)

        e2e = e2e_low = e2e_high = None
        e2e_units = [u for u in units if u in self.baseline_ttft_s and u in self.speculative_ttft_s
                     and (generated_tokens is not None or u in self.generated_tokens)]
        if e2e_units:
            e2e_logs = self._e2e_logs(k, tokens, point, e2e_units, generated_tokens, exact=True)
            e2e_log = _mean(e2e_logs)
            draws_logs = [_mean(self._e2e_logs(k, tokens, t, e2e_units, generated_tokens)) for t in draws]
            e2e = math.exp(e2e_log)
            e2e_low, e2e_high = combined_interval(e2e_log, e2e_logs, draws_logs, repeats, self.confidence)

        return Prediction(k=k, decode_speedup=math.exp(log_point), low=low, high=high, e2e_speedup=e2e,
                          e2e_low=e2e_low, e2e_high=e2e_high, expected_tokens_per_round=math.exp(mean_tokens_log),
                          round_s=point.round_s(k), units=len(units), confidence=self.confidence)

    def unit_decode_logs(self, k: int) -> dict:
        """Per unit, the log of the predicted decode speedup at k (median timings): predictions at two k
        (or of two setups measured on the same units) compare unit by unit, which cancels what the units
        share."""
        return self._anchored_unit_logs(k, self.costs.point())

    def draw_decode_logs(self, k: int) -> list[float]:
        """Per timing resample, the steady-state log decode speedup at k (mean over units): the timings'
        share of the uncertainty of a difference between two k."""
        mean_tokens_log = _mean([math.log(t) for t in self.profile.unit_expected_tokens(k).values()])
        return [mean_tokens_log + math.log(t.baseline_token_s()) - math.log(t.round_s(k)) for t in self._timing_draws()]

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

    `calibrate` anchors the model to the runs themselves (`_calibrated`): the baseline's time per token is
    its measured one, a cost per round (or a scale, when the loop overlaps passes) makes the modelled
    speedup at k the measured one, and each unit's predictions move by its own residual at k (the model's
    anchor_logs). The shape of the timed T(n) curve and the draft's cost then carry the prediction from k
    to every smaller k."""
    speculative = [s for s in speculative_samples if not s.is_baseline]
    if k is None:
        ks = sorted({s.num_draft_tokens for s in speculative})
        if len(ks) != 1:
            raise InvalidInputError(f"these runs were measured at k = {ks or 'nothing'}: say which k to use")
        k = ks[0]
    profile = AcceptanceProfile.from_samples(speculative, k)
    speculative = [s for s in speculative if _unit(s) in profile.counts and s.num_draft_tokens == k]
    anchor_logs = {}
    if calibrate:
        baseline = [s for s in baseline_samples if s.is_baseline]
        costs = _calibrated(costs, speculative, baseline, profile)
        anchor_logs = {unit: log for unit, log in _measured_unit_logs(speculative, baseline).items()
                       if unit in profile.counts}
    return SpeedupModel(
        profile=profile,
        costs=costs,
        speculative_ttft_s=_per_unit(speculative, "ttft_s"),
        baseline_ttft_s=_per_unit([s for s in baseline_samples if s.is_baseline], "ttft_s"),
        generated_tokens=_per_unit(speculative, "generated_tokens"),
        anchor_logs=anchor_logs,
        confidence=confidence,
        bootstrap_repeats=bootstrap_repeats,
        seed=seed,
    )


def _calibrated(costs: VerifyCosts, speculative: list, baseline: list, profile: AcceptanceProfile) -> VerifyCosts:
    """`costs` anchored to the runs (see fit_model): the baseline's time per token is its measured one,
    and the rounds are adjusted so that the model's decode speedup at k, each unit's decode phase
    modelled as it ran (its length, its acceptance, rounds cut short near the end), is the measured one
    (the mean over units of the log speedup against the baseline runs of the same unit). A model slower
    than the runs gets a cost per round (the loop's sampling and bookkeeping, the draft catching up on
    tokens it did not propose); one faster than the runs, whose passes overlapped in the loop, has every
    round scaled down."""
    import dataclasses

    plain = dataclasses.replace(costs, token_overhead_s=0.0, round_scale=1.0, round_overhead_s=0.0)
    point = plain.point()
    token_times = [s.decode_s / s.decode_tokens for s in baseline if s.decode_tokens > 0 and s.decode_s > 0]
    if not token_times:
        return costs
    calibrated = dataclasses.replace(plain, token_overhead_s=statistics.median(token_times) - point.target_s(1))
    t1 = calibrated.point().baseline_token_s()
    measured = _measured_unit_logs(speculative, baseline)
    reach = profile.unit_reach()
    phases = []  # per unit: (tokens, seconds without overhead, rounds), expected over its decode phase
    for unit in measured:
        generated = round(_mean([s.generated_tokens for s in speculative if _unit(s) == unit]))
        if unit in reach and generated > 1:
            tokens, seconds = _decode_phase(reach[unit], profile.k, generated, point.round_s)
            rounds = _decode_phase(reach[unit], profile.k, generated, lambda drafted: 1.0)[1]
            if tokens > 0 and seconds > 0:
                phases.append((tokens, seconds, rounds, measured[unit]))
    if not phases:
        return dataclasses.replace(calibrated, round_scale=costs.round_scale, round_overhead_s=costs.round_overhead_s)
    target = _mean([log for *_, log in phases])

    def modelled(overhead: float) -> float:
        return _mean([math.log(tokens / (seconds + overhead * rounds) * t1) for tokens, seconds, rounds, _ in phases])

    if modelled(0.0) < target:  # the runs were faster than the timed passes add up to
        return dataclasses.replace(calibrated, round_scale=math.exp(modelled(0.0) - target))
    low, high = 0.0, max(seconds / rounds for _, seconds, rounds, _ in phases)
    while modelled(high) > target:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if modelled(middle) > target else (low, middle)
    return dataclasses.replace(calibrated, round_overhead_s=(low + high) / 2)


def _measured_unit_logs(speculative: list, baseline: list) -> dict:
    """Per unit with both, the measured log decode speedup: mean log decode speed of the speculative runs
    minus that of the baseline runs."""
    def logs(samples):
        by_unit: dict = {}
        for sample in samples:
            if sample.decode_tokens > 0 and sample.decode_s > 0:
                by_unit.setdefault(_unit(sample), []).append(math.log(sample.decode_tokens / sample.decode_s))
        return {unit: _mean(values) for unit, values in by_unit.items()}

    fast, plain = logs(speculative), logs(baseline)
    return {unit: fast[unit] - plain[unit] for unit in fast if unit in plain}


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
    each setup's PredictedLogs (per unit, SpeedupModel.unit_decode_logs; per timing draw, draw_decode_logs)."""
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
                unit_logs.update({(method, k): PredictedLogs(model.unit_decode_logs(k), model.draw_decode_logs(k),
                                                                model.costs.repeats)
                                  for k in range(1, k_max + 1)})
        except (InvalidInputError, ValueError, ZeroDivisionError):  # too few complete rounds to fit
            continue
    return predictions
