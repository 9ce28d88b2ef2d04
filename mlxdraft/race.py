"""The smart sweep's race within one group (a target with one draft, or alone): which setups
(method, k) are still worth measuring, decided only from the samples measured so far, so that a
resumed sweep replays every decision exactly and continues the race where it stopped.

The race takes its units (prompt x pass) in `SweepPlan.race_units` order: each pass's prompts stratified by
category (seeded), so that its first units are spread over the categories, never the first prompts in file order.
Within a unit the baseline and the setups run in a seeded random order (module `order`).

1. Probe: the first PROBE_UNITS units measure the baseline and each method at its largest k (fewer when every one
   of them is surely slower than the baseline sooner).
2. Check: the speedup model (`prediction`) is fitted; each fixed-k method's predicted best k (the next best when
   that is the probe's own k) joins the race and is measured for CHECK_UNITS units, next to the probe's k: nothing
   is pruned on a prediction before the prediction at one k has been measured. Measured against predicted, prompt
   by prompt, it gives the model's own error (`Race.model_errors`: |mean| plus its 95% half-width, on the log
   scale), which widens every prediction's interval, in proportion to the distance from k_max.
3. Prediction: a setup whose widened predicted upper bound is below the leader's lower bound is pruned without a
   run, and (decode objective) so is one that surely cannot beat the predicted best by more than TIE_MARGIN, the
   model's error included; where the model predicts a gain, that holds for the measured setups too (where it does
   not, they stay, as "no gain" needs each one measured surely slower). Setups the model cannot predict (adaptive,
   prompt lookup) stay in.
4. Race: every following unit measures the baseline and the setups still in; after each unit a setup
   whose upper bound falls below the leader's lower bound is dropped. The bounds are the paired
   statistics' intervals (per prompt, the median of its passes), widened (Bonferroni) for the setups still
   racing; the leader is the setup with the highest lower bound here, or an earlier group's of the same
   target (`leader_floor`), or
   the baseline itself (1.00x): a setup surely slower than no speculative decoding at all is out. So is a
   setup that surely cannot be more than TIE_MARGIN faster than a rival showing a gain, compared prompt by
   prompt (another setup racing, or one an earlier group of the target kept): measuring it on could change
   the choice by less than a tie.
The group ends when every unit is measured or no setup is left. The setups admitted in step 3 miss the
probe's units; once every group of the target is measured, `settle` measures them there where the target's
verdict hangs on them. The verdict (`analysis`) is widened for every setup compared, pruned ones included.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from .estimates import METRIC, setup_ratios, unit_of
from .prediction import PredictedLogs, Prediction, can_still_win, combined_interval
from .stats import EQUIVALENCE_MARGIN, MIN_UNITS_FOR_INTERVAL, RatioEstimate, estimate_ratio, ratio_digits, t_quantile

PROBE_UNITS = 4  # units measured at the largest k before the model is fitted
CHECK_UNITS = 3  # units then measured at each method's predicted best k (with k_max) before the model prunes
TIE_MARGIN = EQUIVALENCE_MARGIN  # a setup surely no more than this faster than the (predicted) best, or a rival,
# is pruned: the verdict's own margin, within which a cheaper setup may replace the fastest
MIN_UNITS_FOR_RACE = 2 * PROBE_UNITS  # fewer units than this: nothing to gain, the group runs exhaustively
BASELINE_SPEEDUP = 1.0  # the baseline's speedup over itself: every setup races against it too

Setup = tuple  # (method key, k)


@dataclass
class Pruned:
    """A setup the race stopped measuring (or never measured), and why."""

    method: str
    num_draft_tokens: int
    after_units: int  # units measured in the group when it was decided
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Pruned:
        return cls(data["method"], data["num_draft_tokens"], data["after_units"], data["reason"])


@dataclass
class RaceState:
    alive: list[Setup]  # setups to measure in the next unit, besides the baseline, in plan order
    units_done: int  # whole units measured
    keep: int  # samples that form whole units (the rest is measured again)
    pruned: list[Pruned] = field(default_factory=list)
    leader: Setup | None = None
    leader_low: float = BASELINE_SPEEDUP  # the leader's lower bound (the baseline's speedup without one)

    def finished(self, units: int) -> bool:
        return not self.alive or self.units_done >= units


def _ratios(samples, setup: Setup, metric: str) -> dict:
    """Per prompt, `setup`'s ratio to the baseline run measured next to it (the geometric mean over the prompt's
    passes: `estimates.paired_ratios`), so that every interval and tie test of the race has the prompt as its
    unit of replication, as the verdict has."""
    return setup_ratios(samples, setup, metric)


def _estimate(samples, setup: Setup, metric: str, candidates: int) -> RatioEstimate | None:
    return estimate_ratio(list(_ratios(samples, setup, metric).values()), candidates=max(candidates, 1))


def leader_floor(earlier_groups: list[list], objective: str) -> tuple[float | None, str | None]:
    """The best lower bound among earlier groups' setups of this target (each widened for the setups of
    its group), and which setup it is: a later group's setups must beat it to stay in."""
    best, name = None, None
    for samples in earlier_groups:
        setups = list(dict.fromkeys((s.method, s.num_draft_tokens) for s in samples if not s.is_baseline))
        for setup in setups:
            estimate = _estimate(samples, setup, METRIC[objective], len(setups))
            if estimate and estimate.low is not None and (best is None or estimate.low > best):
                best, name = estimate.low, f"{setup[0]} k={setup[1]}"
    return best, name


def earlier_rivals(earlier_groups: list, objective: str) -> dict[str, dict]:
    """The setups of earlier groups of this target that their races kept ("<draft> <method> k=<k>" -> per-unit
    ratio to that group's own baseline): a later group's setup surely no more than TIE_MARGIN faster than one
    of them, prompt by prompt, leaves its race (`Race._drop_tied`). Each ratio is paired within its group, so
    comparing two groups' ratios on the same prompt is fair (the prompt's effect largely cancels; the moment's
    cancelled within each group)."""
    rivals = {}
    for record in earlier_groups:
        dropped = {(p["method"], p["num_draft_tokens"]) for p in record.pruned}
        for setup in dict.fromkeys((s.method, s.num_draft_tokens) for s in record.samples if not s.is_baseline):
            if setup not in dropped:
                name = f"{record.draft + ' ' if record.draft else ''}{setup[0]} k={setup[1]}"
                rivals[name] = _ratios(record.samples, setup, METRIC[objective])
    return rivals


@dataclass
class Race:
    """The decisions of one group's race, replayed from its samples."""

    setups: list[Setup]  # every (method, k) of the group, in plan order
    units: list[tuple[int, int]]  # (prompt_index, pass_index) in measuring order
    objective: str  # "e2e" or "decode"
    predict: Callable[[list, dict], dict]  # (probe samples, unit logs to fill) -> {(method, k): Prediction}
    floor: float | None = None  # leader_floor of earlier groups
    floor_name: str | None = None
    rivals: dict = field(default_factory=dict)  # earlier_rivals of earlier groups
    _fitted: dict = field(default_factory=dict, repr=False)  # the probe's samples never change: fit once

    def probe_setups(self) -> list[Setup]:
        largest: dict[str, int] = {}
        for method, k in self.setups:
            largest[method] = max(k, largest.get(method, k))
        return [s for s in self.setups if largest[s[0]] == s[1]]

    def replay(self, samples: list) -> RaceState:
        alive = self.probe_setups()
        pruned: list[Pruned] = []
        by_unit: dict[tuple[int, int], list] = {}
        for sample in samples:
            by_unit.setdefault(unit_of(sample), []).append(sample)
        state = RaceState(alive=list(alive), units_done=0, keep=0)
        probe = min(PROBE_UNITS, len(self.units))
        checks: list[Setup] = []  # the check setups (each method's predicted best k), once admitted
        check_start = None  # units done when they were admitted
        predicted = False  # whether the rest was pruned or admitted on prediction
        for unit in self.units:
            expected = [("baseline", 0)] + state.alive
            got = [(s.method, s.num_draft_tokens) for s in by_unit.get(unit, [])]
            # a unit's runs are in a random order (module `order`; older files: the baseline first): a unit counts
            # when it holds exactly the variants racing then, in whatever order
            if sorted(got) != sorted(expected) or not state.alive:
                break
            state.units_done += 1
            state.keep += len(got)
            measured = samples[: state.keep]
            self._find_leader(state, measured)
            if state.units_done >= min(probe, MIN_UNITS_FOR_INTERVAL):
                self._drop_behind(state, measured, pruned)
            if predicted:
                continue
            last = state.units_done == len(self.units)
            if check_start is None:
                if state.units_done < probe and state.alive:
                    continue
                # the model predicts; before it prunes anything, each method's predicted best k is measured
                checks = self._check_setups(measured, pruned)
                if checks and not last:
                    check_start = state.units_done
                    state.alive = [s for s in self.setups if s in set(state.alive) | set(checks)]
                    continue
            elif (state.units_done - check_start < CHECK_UNITS and not last
                  and any(setup in state.alive for setup in checks)):
                continue  # the checks need prompts enough for an interval, unless dropped sooner
            self._prune_by_prediction(state, measured, pruned, checks)
            predicted = True
        state.pruned = pruned
        return state

    def _predictions(self, measured: list) -> tuple[dict, dict]:
        if len(measured) not in self._fitted:
            unit_logs: dict = {}
            self._fitted[len(measured)] = (self.predict(measured, unit_logs), unit_logs)
        return self._fitted[len(measured)]

    def _point(self, prediction: Prediction) -> float:
        point = prediction.decode_speedup if self.objective == "decode" else prediction.e2e_speedup
        return prediction.decode_speedup if point is None else point

    def _check_setups(self, measured: list, pruned: list[Pruned]) -> list[Setup]:
        """Per predicted method, the setup that checks the model: its predicted best k among the plan's, or, when
        that is the probe's own k_max, the next best (a second measured k shows the model's error)."""
        predictions, _ = self._predictions(measured)
        probe = set(self.probe_setups())
        dropped = {(p.method, p.num_draft_tokens) for p in pruned}
        checks = []
        for method in dict.fromkeys(m for m, _ in self.setups):
            ranked = sorted((s for s in self.setups if s[0] == method and s in predictions),
                            key=lambda s: -self._point(predictions[s]))
            ranked = [s for s in ranked if s not in probe and s not in dropped]
            if ranked:
                checks.append(ranked[0])
        return checks

    def model_errors(self, measured: list, checks: list[Setup]) -> dict:
        """Per method with a check setup, (the model's error bound on the log scale at that k, the k): measured
        against predicted decode speedup at the check k, prompt by prompt where the prompt has the probe's k_max
        too (each prompt's prediction is anchored there), else mean against mean; the bound is |mean error| plus
        its 95% half-width, so it holds for the bias with 97.5% confidence. No bound (inf) with too few prompts."""
        predictions, unit_logs = self._predictions(measured)
        errors = {}
        for setup in checks:
            logs = unit_logs.get(setup)
            measured_ratios = _ratios(measured, setup, "decode_tps")
            common = [u for u in measured_ratios if logs is not None and u in logs.units]
            bound = math.inf
            if len(common) >= MIN_UNITS_FOR_INTERVAL:
                residuals = [math.log(measured_ratios[u]) - logs.units[u] for u in common]
                mean, sd = statistics.fmean(residuals), statistics.stdev(residuals)
                bound = abs(mean) + t_quantile(0.975, len(common) - 1) * sd / math.sqrt(len(common))
            else:
                estimate = estimate_ratio(list(measured_ratios.values()))
                prediction = predictions.get(setup)
                if estimate and estimate.low is not None and prediction and prediction.low is not None:
                    se_measured = estimate.log_sd / math.sqrt(estimate.n)
                    se_predicted = math.log(prediction.high / prediction.low) / (2 * 1.96)
                    bound = (abs(math.log(estimate.geomean / prediction.decode_speedup))
                             + 1.96 * math.sqrt(se_measured ** 2 + se_predicted ** 2))
            errors[setup[0]] = (bound, setup[1])
        return errors

    def _error_at(self, errors: dict, setup: Setup) -> float:
        """The model's error bound (log scale) at a setup: the check's, grown in proportion to how much farther from
        the probe's k_max the setup is than the check (the prediction is anchored at k_max); 0 for a method
        without a check (nothing to widen by: such a method's setups are all measured or none predicted)."""
        if setup[0] not in errors:
            return 0.0
        bound, k_check = errors[setup[0]]
        k_max = max(k for m, k in self.setups if m == setup[0])
        if k_check == k_max or bound == 0.0:
            return bound
        return bound * max(1.0, abs(k_max - setup[1]) / abs(k_max - k_check))

    def _racing_estimates(self, state: RaceState, measured: list) -> dict:
        return {setup: _estimate(measured, setup, METRIC[self.objective], len(state.alive))
                for setup in state.alive}

    def _floor(self) -> float:
        return BASELINE_SPEEDUP if self.floor is None else max(self.floor, BASELINE_SPEEDUP)

    def _find_leader(self, state: RaceState, measured: list) -> None:
        state.leader, state.leader_low = None, self._floor()
        for setup, estimate in self._racing_estimates(state, measured).items():
            if estimate and estimate.low is not None and estimate.low > state.leader_low:
                state.leader, state.leader_low = setup, estimate.low

    def leader_name(self, state: RaceState) -> str:
        if state.leader:
            return f"{state.leader[0]} k={state.leader[1]}"
        if self.floor is not None and self.floor > BASELINE_SPEEDUP:
            return f"{self.floor_name} (an earlier draft)"
        return "the baseline"

    def _leader_text(self, state: RaceState, digits: int = 2) -> str:
        """The bar a setup failed, its figure printed with `digits` (those of the figures beside it)."""
        if state.leader is None and state.leader_low == BASELINE_SPEEDUP:
            return f"the baseline's {BASELINE_SPEEDUP:.{digits}f}x (no speculative decoding)"
        return f"the leader {self.leader_name(state)}'s lower bound {state.leader_low:.{digits}f}x"

    def _prune_by_prediction(self, state: RaceState, measured: list, pruned: list[Pruned],
                             checks: list[Setup] = ()) -> None:
        """Prune or admit every setup not measured yet on the model's predictions, each interval widened by the
        model's own error as the check setups showed it (`model_errors`): only on measured evidence."""
        predictions, unit_logs = self._predictions(measured)
        errors = self.model_errors(measured, list(checks)) if checks else {}
        widened = {setup: _widen(prediction, self._error_at(errors, setup))
                   for setup, prediction in predictions.items()}
        best = max(unit_logs, key=lambda s: unit_logs[s].mean(), default=None)
        alive = set(state.alive)
        dropped = {(p.method, p.num_draft_tokens) for p in pruned}
        gain_predicted = best is not None and predictions[best].decode_speedup > BASELINE_SPEEDUP
        for setup in self.setups:
            if setup in dropped:
                continue
            prediction: Prediction | None = widened.get(setup)
            error = self._error_at(errors, setup) + (self._error_at(errors, best) if best else 0.0)
            if setup in alive:
                # a measured setup goes too when the model predicts a gain and it is at best tied with the predicted
                # best (where no gain is predicted it stays: "no gain" needs each setup measured surely slower)
                if (self.objective == "decode" and gain_predicted and setup != best and setup in unit_logs
                        and _cannot_beat_by_a_margin(unit_logs[setup], unit_logs[best], error)):
                    alive.discard(setup)
                    pruned.append(Pruned(*setup, state.units_done, (
                        f"measured, predicted {_predicted_text(prediction, self.objective)}: surely "
                        f"not more than {TIE_MARGIN:.0%} faster than the predicted best {best[0]} k={best[1]} "
                        f"({_predicted_text(widened[best], self.objective)}), prompt by prompt"
                        f"{_error_text(errors, setup[0])}")))
            elif prediction is not None and not can_still_win(
                    prediction, state.leader_low, self.objective):
                pruned.append(Pruned(*setup, state.units_done, (
                    f"predicted {_predicted_text(prediction, self.objective, state.leader_low)} cannot reach "
                    f"{self._leader_text(state, _digits(prediction, self.objective, state.leader_low))}"
                    f"{_error_text(errors, setup[0])}")))
            elif (self.objective == "decode" and best is not None and setup != best and setup in unit_logs
                  and _cannot_beat_by_a_margin(unit_logs[setup], unit_logs[best], error)):
                pruned.append(Pruned(*setup, state.units_done, (
                    f"predicted {_predicted_text(prediction, self.objective)}: surely not more than "
                    f"{TIE_MARGIN:.0%} faster than the predicted best {best[0]} k={best[1]} "
                    f"({_predicted_text(widened[best], self.objective)}), prompt by prompt"
                    f"{_error_text(errors, setup[0])}")))
            else:
                alive.add(setup)
        state.alive = [s for s in self.setups if s in alive]

    def _drop_behind(self, state: RaceState, measured: list, pruned: list[Pruned]) -> None:
        """Drop the setups whose own upper bound is below the leader's lower bound. The leader's bound is
        widened for the setups racing (it is the best of them); a dropped setup's is not: the one drop that
        can cost the choice anything is the truly fastest setup's, a single test."""
        for setup in list(state.alive):
            estimate = _estimate(measured, setup, METRIC[self.objective], 1)
            if setup == state.leader or not estimate or estimate.n < MIN_UNITS_FOR_INTERVAL:
                continue
            if estimate.high is not None and estimate.high < state.leader_low:
                d = ratio_digits(estimate.geomean, estimate.low, estimate.high, state.leader_low)
                pruned.append(Pruned(*setup, state.units_done, (
                    f"measured {estimate.geomean:.{d}f}x [{estimate.low:.{d}f}, {estimate.high:.{d}f}] over "
                    f"{estimate.n} prompt(s) is below {self._leader_text(state, d)}")))
                state.alive.remove(setup)
        tied = self._drop_tied(state, measured)
        pruned += tied
        if state.leader and any((p.method, p.num_draft_tokens) == state.leader for p in tied):
            self._find_leader(state, measured)  # a faster rival leads now

    def _drop_tied(self, state: RaceState, measured: list) -> list[Pruned]:
        """The setups that surely cannot be more than TIE_MARGIN faster than the best rival showing a gain (its
        geometric mean above 1.00x): another setup still racing, or one an earlier group of the target kept.
        They are compared prompt by prompt on their ratios to the baseline (within the group simply the ratio
        of two setups measured back to back, the baseline's noise cancelled), a far sharper test than one
        setup's interval against another's lower bound. Setups measured on fewer units, then the slower, are
        looked at first, and the rival stays: of two tied setups one is kept, the better measured where both
        could go (the verdict and the settling then need fewer runs). One test per setup and unit, one-sided
        95%, widened neither for the units already looked at nor for the setups (as in
        `_cannot_beat_by_a_margin`): the one drop that can cost the choice anything is the truly fastest
        setup's, and then by at most the margin per step. Without a gain nothing leaves for being tied: "no
        gain" needs each setup measured surely slower."""
        ratios = {setup: _ratios(measured, setup, METRIC[self.objective]) for setup in state.alive}
        ratios.update(self.rivals)
        geomeans = {key: estimate.geomean for key, values in ratios.items()
                    if (estimate := estimate_ratio(list(values.values())))}
        ranked = sorted((setup for setup in state.alive if setup in geomeans),
                        key=lambda setup: (len(ratios[setup]), geomeans[setup]))
        dropped = []
        for setup in ranked:
            rivals = [rival for rival in ratios if rival in geomeans and rival != setup
                      and geomeans[rival] > BASELINE_SPEEDUP and (not isinstance(rival, tuple) or rival in state.alive)
                      and sum(unit in ratios[rival] for unit in ratios[setup]) >= MIN_UNITS_FOR_INTERVAL]
            if not rivals:
                continue
            rival = max(rivals, key=lambda key: geomeans[key])
            common = [unit for unit in ratios[setup] if unit in ratios[rival]]
            versus = estimate_ratio([ratios[setup][unit] / ratios[rival][unit] for unit in common], confidence=0.90)
            if versus and versus.high is not None and versus.high < 1 + TIE_MARGIN:  # its high: one-sided 95%
                name = f"{rival[0]} k={rival[1]}" if isinstance(rival, tuple) else f"{rival} (an earlier draft)"
                # both figures over the prompts they share, so that the printed ratio is theirs
                own, theirs = (estimate_ratio([values[unit] for unit in common]).geomean
                               for values in (ratios[setup], ratios[rival]))
                d = ratio_digits(own, versus.geomean, theirs)
                dropped.append(Pruned(*setup, state.units_done, (
                    f"measured {own:.{d}f}x over the {versus.n} prompt(s) it shares with {name} ({theirs:.{d}f}x "
                    f"there), {versus.geomean:.{d}f}x of it prompt by prompt: surely not more "
                    f"than {TIE_MARGIN:.0%} faster than it")))
                state.alive.remove(setup)
        return dropped


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _cannot_beat_by_a_margin(logs: PredictedLogs, best_logs: PredictedLogs, error: float = 0.0) -> bool:
    """Whether a setup surely cannot be more than TIE_MARGIN faster than the predicted best (95%, one-sided):
    the paired per-unit log differences of the predictions, with the timings' variance of the difference
    (paired timing draws) added, as a prediction's interval is (`prediction.combined_interval`). Such a setup
    is at best tied with the predicted best, so measuring it cannot change the choice by more than the
    margin. Not widened for the number of setups: the one test that can cost the choice anything is the
    truly fastest setup's own."""
    differences = [logs.units[u] - best_logs.units[u] for u in logs.units if u in best_logs.units]
    draws = [a - b for a, b in zip(logs.draws, best_logs.draws)]
    repeats = min((r for r in (logs.repeats, best_logs.repeats) if r), default=None)
    mean = _mean(differences) if differences else 0.0
    _, high = combined_interval(mean, differences, draws, repeats, confidence=0.90)  # its high: one-sided 95%
    return high is not None and high * math.exp(error) < 1 + TIE_MARGIN  # `error`: the model's, both setups


def _widen(prediction: Prediction, error: float) -> Prediction:
    """A prediction whose bounds (decode and end to end) also hold the model's own error, `error` on the log scale
    (the end-to-end figure's share of a decode error is smaller: widening it as much is conservative)."""
    if not error:
        return prediction
    if math.isinf(error):
        return dataclasses.replace(prediction, low=0.0 if prediction.low is not None else None,
                                   high=math.inf if prediction.high is not None else None,
                                   e2e_low=0.0 if prediction.e2e_low is not None else None,
                                   e2e_high=math.inf if prediction.e2e_high is not None else None)
    factor = math.exp(error)

    def scaled(value, by):
        return None if value is None else value * by
    return dataclasses.replace(prediction, low=scaled(prediction.low, 1 / factor), high=scaled(prediction.high, factor),
                               e2e_low=scaled(prediction.e2e_low, 1 / factor),
                               e2e_high=scaled(prediction.e2e_high, factor))


def _error_text(errors: dict, method: str) -> str:
    if method not in errors:
        return ""
    bound, k = errors[method]
    return f" (the bounds hold the model's own error, up to {math.exp(bound) - 1:.0%} at k={k} as measured there)"


def _figures(prediction: Prediction, objective: str) -> tuple:
    return ((prediction.decode_speedup, prediction.low, prediction.high) if objective == "decode"
            else (prediction.e2e_speedup, prediction.e2e_low, prediction.e2e_high))


def _digits(prediction: Prediction, objective: str, *others: float) -> int:
    return ratio_digits(*_figures(prediction, objective), *others)


def _predicted_text(prediction: Prediction, objective: str, *others: float) -> str:
    point, low, high = _figures(prediction, objective)
    digits = _digits(prediction, objective, *others)
    return f"{point:.{digits}f}x" + (f" [{low:.{digits}f}, {high:.{digits}f}]" if low is not None else "")
