"""What measured samples say: each (target, method, draft, k) compared with the baseline runs
measured beside it (paired by prompt and pass, then averaged per prompt: the prompt is the unit of
replication, `paired_ratios`), and per target a verdict that does not pick noise and says what it is about.

Derived from the raw samples of a results file every time a report is rendered; nothing here is
measured or stored. Statistics themselves live in `stats`, the per-unit pieces the measuring side shares in
`estimates`. What a method is (needs a draft, uses k, fixed k, its summary) and how to run a setup come from the
file (`Results.method_info`, `Results.commands`), never from what is installed: this module imports neither
`methods` nor `engines`, so a file renders wherever mlxdraft does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .estimates import (  # noqa: F401 - unit_of, paired_runs, paired_ratios: analysis' public names too
    as_units,
    check_estimand,
    draft_token_s,
    group_predictions,
    group_setups,
    judge,
    label,
    paired_ratios,
    paired_runs,
    setup_label,
    unit_of,
)
from .measure import MeasureSettings
from .prediction import Prediction
from .results import PlanRecord, Results, setup_key
from .stats import (
    Losslessness,
    RatioEstimate,
    Summary,
    Verdict,
    compare_outputs,
    estimate_ratio,
    find_paired_outliers,
    summarize,
    within_prompt_sd,
)

OBJECTIVES = ("e2e", "decode")
OBJECTIVE_NAMES = {"e2e": "end-to-end speed", "decode": "decode speed"}
TEMPERATURE_NOTE = (
    "at temperature > 0 mlx-lm accepts a draft token only when it equals the target's own, independently "
    "sampled token, so its acceptance falls with temperature whatever the draft; the draft and "
    "draft-adaptive methods use exact speculative sampling, which keeps the target's distribution and "
    "accepts more"
)


@dataclass
class Comparison:
    """Everything derived from the baseline and speculative samples of one (target, draft, k)."""

    num_draft_tokens: int
    units: int  # replication units of the speedups: prompts ("workload"), or paired runs ("suite")
    baseline_decode_tps: Summary | None
    speculative_decode_tps: Summary | None
    baseline_e2e_tps: Summary | None
    speculative_e2e_tps: Summary | None
    decode_speedup: RatioEstimate | None  # geometric mean of paired ratios, 95% t-interval on logs
    e2e_speedup: RatioEstimate | None
    acceptance_rate: Summary | None
    draft_token_share: Summary | None
    tokens_per_round: Summary | None
    accepted_length_counts: list[int]  # complete verify rounds only
    partial_rounds: int  # rounds cut short by max-tokens or EOS, left out of the round statistics
    baseline_ttft_s: Summary | None
    speculative_ttft_s: Summary | None
    speculative_peak_memory_gb: Summary | None
    lossless: Losslessness
    generated_tokens: Summary | None = None  # tokens per answer of the speculative runs
    per_category: dict = field(default_factory=dict)  # category -> {decode/e2e speedup, acceptance}
    runs: int = 0  # paired runs (prompt x pass) behind the speedups
    estimand: str = "workload"  # what the speedups are about (stats.ESTIMANDS)
    # objective -> [(prompt, pass)]: runs whose paired ratio is unlike the other passes of their own prompt
    # (stats.find_paired_outliers: a stall or a cold run, not a different prompt); tok/s are never flagged
    outlier_runs: dict = field(default_factory=dict)
    # objective -> pooled sd of log ratios between passes of a prompt (stats.within_prompt_sd); None with one pass
    pass_log_sd: dict = field(default_factory=dict)
    # objective -> {unit: ratio} the speedups were estimated from (per prompt under "workload"); for the verdict,
    # not part of to_dict
    ratios: dict = field(default_factory=dict, repr=False)

    def speedup(self, objective: str) -> RatioEstimate | None:
        return self.e2e_speedup if objective == "e2e" else self.decode_speedup

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("ratios")
        return data


def compare(baseline_samples, speculative_samples, num_draft_tokens: int, greedy: bool,
            with_categories: bool = True, estimand: str = "workload") -> Comparison:
    """Derive a Comparison from the samples of one draft at one k and its group's baseline."""
    check_estimand(estimand)
    histogram = [0] * (num_draft_tokens + 1)
    for sample in speculative_samples:
        for accepted, count in enumerate(sample.accepted_length_counts[: num_draft_tokens + 1]):
            histogram[accepted] += count
    decode_runs = paired_runs(baseline_samples, speculative_samples, "decode_tps")
    e2e_runs = paired_runs(baseline_samples, speculative_samples, "e2e_tps")
    decode, e2e = (as_units(runs, estimand) for runs in (decode_runs, e2e_runs))
    per_category = {}
    categories = sorted({s.category for s in speculative_samples})
    if with_categories and len(categories) > 1:
        for category in categories:
            sub = compare([s for s in baseline_samples if s.category == category],
                          [s for s in speculative_samples if s.category == category],
                          num_draft_tokens, greedy, with_categories=False, estimand=estimand)
            per_category[category] = {
                "decode_speedup": sub.decode_speedup, "e2e_speedup": sub.e2e_speedup,
                "acceptance_rate": sub.acceptance_rate,
            }
    memory = summarize(s.peak_memory_gb for s in speculative_samples)
    return Comparison(
        num_draft_tokens=num_draft_tokens,
        units=len(e2e),
        baseline_decode_tps=summarize(s.decode_tps for s in baseline_samples),
        speculative_decode_tps=summarize(s.decode_tps for s in speculative_samples),
        baseline_e2e_tps=summarize(s.e2e_tps for s in baseline_samples),
        speculative_e2e_tps=summarize(s.e2e_tps for s in speculative_samples),
        decode_speedup=estimate_ratio(list(decode.values())),
        e2e_speedup=estimate_ratio(list(e2e.values())),
        acceptance_rate=summarize(s.acceptance_rate for s in speculative_samples),
        draft_token_share=summarize(s.draft_token_share for s in speculative_samples),
        tokens_per_round=summarize(s.tokens_per_round for s in speculative_samples),
        accepted_length_counts=histogram,
        partial_rounds=sum(s.partial_rounds for s in speculative_samples),
        baseline_ttft_s=summarize(s.ttft_s for s in baseline_samples),
        speculative_ttft_s=summarize(s.ttft_s for s in speculative_samples),
        speculative_peak_memory_gb=memory,
        lossless=compare_outputs(baseline_samples, speculative_samples, greedy),
        generated_tokens=summarize(s.generated_tokens for s in speculative_samples),
        per_category=per_category,
        runs=len(e2e_runs),
        estimand=estimand,
        outlier_runs={"decode": find_paired_outliers(decode_runs), "e2e": find_paired_outliers(e2e_runs)},
        pass_log_sd={"decode": within_prompt_sd(decode_runs), "e2e": within_prompt_sd(e2e_runs)},
        ratios={"decode": decode, "e2e": e2e},
    )


@dataclass
class SweepCase:
    """One (target, method, draft, k) of a results file, with its statistics when it was measured."""

    target: str
    method: str
    draft: str | None
    num_draft_tokens: int | None
    status: str  # done, pending, skipped, failed
    reason: str | None
    comparison: Comparison | None
    ratios: dict = field(default_factory=dict)  # objective -> {unit: ratio} (per prompt: "workload"), for the verdict
    prediction: Prediction | None = None  # the speedup model's, from the runs at the largest k
    pruned: str | None = None  # why the smart sweep stopped measuring it (it is then out of the verdict)
    pruned_after_units: int | None = None  # after how many units (prompt x pass) it was stopped
    engine: str | None = None  # the engine that measured it

    @property
    def setup(self) -> tuple[str, str | None]:
        return (self.method, self.draft)

    @property
    def label(self) -> str:
        return f"{setup_label(self.method, self.draft)} k={self.num_draft_tokens}"


@dataclass
class TargetVerdict:
    """A target's verdict for one objective, with the setup to use and how to run it."""

    target: str
    objective: str
    verdict: Verdict | None  # None when no speculative setup was measured
    chosen: SweepCase | None  # the recommended setup (verdict "speculative" only)
    leader: SweepCase | None  # the setup with the highest geometric mean
    tied: list[SweepCase] = field(default_factory=list)
    other: TargetVerdict | None = None  # the same target judged by the other objective
    commands: list[str] = field(default_factory=list)
    commands_note: str | None = None  # why there are no commands, when the file did not record them

    @property
    def kind(self) -> str:
        return self.verdict.verdict if self.verdict else "not measured"

    def to_dict(self) -> dict:
        case = self.chosen or self.leader
        setup = lambda c: {"method": c.method, "draft": c.draft, "num_draft_tokens": c.num_draft_tokens}  # noqa: E731
        data = {
            "target": self.target,
            "objective": self.objective,
            "verdict": self.kind,
            "reason": self.verdict.reason if self.verdict else "no speculative setup was measured",
            "method": self.chosen.method if self.chosen else None,
            "draft": self.chosen.draft if self.chosen else None,
            "num_draft_tokens": self.chosen.num_draft_tokens if self.chosen else None,
            "leader": setup(self.leader) if self.leader else None,
            "candidates": self.verdict.candidates if self.verdict else 0,
            "n": self.verdict.estimate.n if self.verdict and self.verdict.estimate else 0,
            "more_units_needed": self.verdict.more_units_needed if self.verdict else None,
            "estimand": self.verdict.estimand if self.verdict else None,
            "unit": self.verdict.unit if self.verdict else None,
            "scope": self.verdict.scope if self.verdict else None,
            "rule": self.verdict.rule if self.verdict else None,
            "tied": [setup(c) for c in self.tied],
            "commands": self.commands,
            **({"commands_note": self.commands_note} if self.commands_note else {}),
        }
        if self.verdict and self.verdict.estimate:
            data[f"{self.objective}_speedup"] = self.verdict.estimate.to_dict()
        if case and case.comparison:
            other = "decode" if self.objective == "e2e" else "e2e"
            estimate = case.comparison.speedup(other)
            data[f"{other}_speedup"] = estimate.to_dict() if estimate else None
        if self.other:
            data["other_objective"] = {"objective": self.other.objective, "verdict": self.other.kind,
                                       **(setup(self.other.chosen) if self.other.chosen
                                          else {"method": None, "draft": None, "num_draft_tokens": None})}
        return data


LOW_ACCEPTANCE = 0.5
"""Below this acceptance rate a setup that did not speed decoding up is said to lose on acceptance (the
draft guesses too few of the target's tokens); at or above it, on the cost of the verify pass and the draft."""


@dataclass
class Explanation:
    """Why a target's verdict came out as it did, from the measured components of the setup it names.

    cause: "gain" (a setup is faster), "ttft" (decoding got faster but the later first token lost it
    end to end), "acceptance" (too few draft tokens accepted for decoding to speed up), "verify-cost"
    (enough accepted, yet verifying k + 1 tokens and running the draft cost more than they save),
    "memory" (nothing measured: every draft was skipped for the memory budget), "noise" (no clear
    difference yet), "too-few" (too few runs for an interval), "not-measured"."""

    cause: str
    case: SweepCase | None  # the setup the verdict names: the chosen one, else the leader
    memory_skipped: list = field(default_factory=list)  # GroupRecords skipped for the memory budget
    memory_budget_gb: float | None = None
    decode_speedup: RatioEstimate | None = None  # the setup's own (not widened)
    e2e_speedup: RatioEstimate | None = None
    baseline_ttft_s: float | None = None  # means over runs
    speculative_ttft_s: float | None = None
    acceptance_rate: float | None = None
    answer_tokens: float | None = None  # mean tokens per answer
    added_memory_gb: float | None = None  # the setup's peak minus the target-alone peak

    @property
    def ttft_delay_s(self) -> float | None:
        if self.baseline_ttft_s is None or self.speculative_ttft_s is None:
            return None
        return self.speculative_ttft_s - self.baseline_ttft_s

    def to_dict(self) -> dict:
        return {"cause": self.cause, "baseline_ttft_s": self.baseline_ttft_s,
                "speculative_ttft_s": self.speculative_ttft_s, "ttft_delay_s": self.ttft_delay_s,
                "acceptance_rate": self.acceptance_rate, "answer_tokens": self.answer_tokens,
                "added_memory_gb": self.added_memory_gb, "memory_budget_gb": self.memory_budget_gb,
                "memory_skipped": [r.draft for r in self.memory_skipped]}


def _cause(verdict: TargetVerdict, e: Explanation) -> str:
    if verdict.verdict is None:
        return "memory" if e.memory_skipped else "not-measured"
    if verdict.kind == "speculative":
        return "gain"
    if verdict.verdict.estimate is None or verdict.verdict.estimate.low is None:
        return "too-few"
    decode, e2e = e.decode_speedup, e.e2e_speedup
    if (verdict.objective == "e2e" and decode and e2e and decode.geomean > 1.0 > e2e.geomean
            and (e.ttft_delay_s or 0.0) > 0.0):
        return "ttft"
    if decode and decode.geomean <= 1.0 and e.acceptance_rate is not None:
        return "acceptance" if e.acceptance_rate < LOW_ACCEPTANCE else "verify-cost"
    return "noise"


@dataclass
class SweepAnalysis:
    results: Results
    cases: list[SweepCase]
    statuses: dict[tuple[str, str | None], str]  # (target, draft) -> the group's status
    baselines: dict[tuple[str, str | None], dict]  # (target, draft) -> {decode_tps, e2e_tps} Summaries
    objective: str = "e2e"
    estimand: str = "workload"  # stats.ESTIMANDS: prompts like these (the default), or these exact prompts

    @property
    def plan(self) -> PlanRecord:
        return self.results.plan

    @property
    def targets(self) -> list[str]:
        return self.plan.targets

    @property
    def drafts(self) -> list[str]:
        return self.plan.drafts

    @property
    def engines(self) -> list[str]:
        """Every engine the file measured, side by side (one for most files)."""
        return list(self.plan.engines or [self.plan.engine])

    @property
    def several_engines(self) -> bool:
        return len(self.engines) > 1

    def engine_of(self, target: str) -> str:
        """The engine that measured a target: its groups' (or its model record's), else the plan's."""
        record = next((r for r in self.results.groups.values() if r.target == target and r.engine), None)
        return (record.engine if record else None) or self.results.models.get(target, {}).get("engine") \
            or self.plan.engine

    @property
    def settings(self) -> MeasureSettings:
        return self.plan.settings

    def setups(self) -> list[tuple[str, str | None]]:
        """(method, draft) of every row of a matrix, in the plan's order: each method that takes a
        draft with every draft, and each method that takes none on its own."""
        rows = []
        for key in self.plan.methods:
            if self.results.method_info(key)["needs_draft"]:
                rows += [(key, draft) for draft in self.drafts]
            else:
                rows.append((key, None))
        if self.several_engines:  # only the setups some group measures: an engine's method with its own drafts
            runs = {(key, r.draft if r.draft else None) for r in self.results.groups.values()
                    for key in (r.methods if r.methods is not None else self.plan.methods)}
            rows = [row for row in rows if row in runs]
        seen = set(rows)
        rows += [c.setup for c in self.cases if c.method != "baseline" and c.setup not in seen
                 and not seen.add(c.setup)]  # setups measured beyond the plan's (pair: all methods)
        return rows

    def problems(self) -> list:
        return [r for r in self.results.groups.values() if r.status in ("skipped", "failed")]

    def measured(self, target: str | None = None) -> list[SweepCase]:
        """Cases with statistics that compete: measured, and not pruned by a smart sweep's race."""
        return [c for c in self.cases if c.comparison and not c.pruned and (target is None or c.target == target)]

    def pruned(self, target: str | None = None) -> list[SweepCase]:
        return [c for c in self.cases if c.pruned and (target is None or c.target == target)]

    def status(self, target: str, method: str, draft: str | None) -> str | None:
        """The status of the group a setup is measured in."""
        if draft is None and self.results.method_info(method)["needs_draft"]:
            return None
        return self.statuses.get((target, draft)) or (
            self.statuses.get((target, self.plan.drafts[0])) if self.results.kind == "pair" and self.drafts else None)

    def shown(self, target: str, method: str, draft: str | None, objective: str | None = None) -> list[SweepCase]:
        """The k values of a setup that a best-k figure is chosen from: those that compete, or, when
        the smart sweep pruned every one of them, the pruned ones (measured all the same, and shown
        marked as pruned)."""
        objective = objective or self.objective
        cases = [c for c in self.measured(target) if c.setup == (method, draft) and c.comparison.speedup(objective)]
        return cases or [c for c in self.pruned(target)
                         if c.setup == (method, draft) and c.comparison and c.comparison.speedup(objective)]

    def best_k(self, target: str, method: str, draft: str | None, objective: str | None = None) -> SweepCase | None:
        """The k with the highest geometric-mean speedup for this setup (for display only: the
        verdict accounts for the choice among candidates); a pruned one only when all are."""
        objective = objective or self.objective
        return max(self.shown(target, method, draft, objective),
                   key=lambda c: c.comparison.speedup(objective).geomean, default=None)

    def best_k_estimate(self, target: str, method: str, draft: str | None,
                        objective: str | None = None) -> RatioEstimate | None:
        """The best k's speedup with its interval widened for the k values of this setup, since it
        was chosen as the best of them."""
        objective = objective or self.objective
        case = self.best_k(target, method, draft, objective)
        if case is None:
            return None
        tried = sum(1 for c in self.shown(target, method, draft, objective) if c.ratios.get(objective))
        return estimate_ratio(list(case.ratios[objective].values()), candidates=max(tried, 1))

    def alone_peak_memory_gb(self, target: str) -> float | None:
        """Peak memory of the target's baseline with no draft loaded (measured once per load)."""
        return self.results.models.get(target, {}).get("alone_peak_memory_gb")

    def added_memory_gb(self, case: SweepCase) -> float | None:
        """Peak memory one setup adds to the target alone: its speculative runs' peak minus the
        target-alone peak."""
        alone = self.alone_peak_memory_gb(case.target)
        peak = case.comparison.speculative_peak_memory_gb if case.comparison else None
        return peak.max - alone if alone is not None and peak else None

    def memory_skipped(self, target: str) -> list:
        """The target's groups skipped because they would not fit the memory budget."""
        return [r for r in self.results.groups.values()
                if r.target == target and r.status == "skipped" and "budget" in (r.reason or "")]

    def explain(self, verdict: TargetVerdict) -> Explanation:
        """What decided a verdict, read off the measured components of the setup it names."""
        case = verdict.chosen or verdict.leader
        c = case.comparison if case else None
        mean = lambda summary: summary.mean if summary else None  # noqa: E731
        explanation = Explanation(
            cause="not-measured", case=case, memory_skipped=self.memory_skipped(verdict.target),
            memory_budget_gb=self.plan.memory_budget_gb,
            decode_speedup=c.decode_speedup if c else None, e2e_speedup=c.e2e_speedup if c else None,
            baseline_ttft_s=mean(c.baseline_ttft_s) if c else None,
            speculative_ttft_s=mean(c.speculative_ttft_s) if c else None,
            acceptance_rate=mean(c.acceptance_rate) if c else None,
            answer_tokens=mean(c.generated_tokens) if c else None,
            added_memory_gb=self.added_memory_gb(case) if case else None)
        explanation.cause = _cause(verdict, explanation)
        return explanation

    def verdict(self, target: str, objective: str | None = None, _with_other: bool = True) -> TargetVerdict:
        objective = objective or self.objective
        # a smart sweep that dropped every setup as slower than the baseline: `judge` judges what it measured
        # widened for every setup compared, as an exhaustive sweep's: a smart sweep's pruned setups were compared too
        compared = sum(1 for c in self.cases if c.target == target and c.method != "baseline"
                       and (c.comparison or c.pruned))
        pruned = [c for c in self.pruned(target) if c.comparison]
        judged = judge(self.measured(target), pruned, objective, self.results.models, self.estimand, compared)
        verdict = TargetVerdict(target, objective, judged.verdict, judged.chosen, judged.leader, judged.tied)
        if verdict.chosen:
            verdict.commands = self.commands(verdict.chosen)
            if not verdict.commands and not self.results.commands_recorded:
                verdict.commands_note = self.commands_note(verdict.chosen)
        if _with_other:
            verdict.other = self.verdict(target, "decode" if objective == "e2e" else "e2e", _with_other=False)
        return verdict

    def commands(self, case: SweepCase) -> list[str]:
        """How to run a setup outside mlxdraft, by the engine that measured it, as the results file recorded it."""
        return list(self.results.commands.get(setup_key(case.target, case.draft, case.method,
                                                        case.num_draft_tokens), []))

    def commands_note(self, case: SweepCase) -> str:
        """Why a setup shows no commands: its file was made before results recorded them, by an engine that is
        not installed here."""
        return (f"the commands that run it were not recorded in this results file (schema "
                f"{self.results.read_version}) and its engine, {case.engine or self.plan.engine}, is not installed "
                "here to write them")

    def prompts_to_add(self, verdict: TargetVerdict) -> dict[str, int]:
        """An inconclusive verdict about prompts like these: category -> prompts to add (`prompts_to_add`)."""
        v = verdict.verdict
        if v is None or v.verdict != "inconclusive" or v.estimand != "workload" or not v.more_units_needed:
            return {}
        return prompts_to_add(v.more_units_needed, [p.get("category", "custom") for p in self.plan.prompts])

    def verdicts(self) -> list[TargetVerdict]:
        return [self.verdict(target) for target in self.targets]


def prompts_to_add(more: int, categories: list) -> dict[str, int]:
    """Where `more` extra prompts should come from to decide an inconclusive verdict about prompts like these: spread
    over the suite's categories in proportion to its prompts in each (largest remainders, ties to the category
    listed first), so that the added prompts are like the suite's. Empty when `more` is not positive."""
    counts: dict[str, int] = {}
    for category in categories:
        counts[category] = counts.get(category, 0) + 1
    total = sum(counts.values())
    if more <= 0 or not total:
        return {}
    shares = {category: more * count / total for category, count in counts.items()}
    result = {category: math.floor(share) for category, share in shares.items()}
    order = sorted(counts, key=lambda c: -(shares[c] - result[c]))  # stable: the first listed wins a tie
    for category in order[: more - sum(result.values())]:
        result[category] += 1
    return {category: n for category, n in result.items() if n}


def analyse_sweep(results: Results | dict, objective: str = "e2e", estimand: str = "workload") -> SweepAnalysis:
    """Every case's statistics and the verdicts' inputs. `results` may also be a results file's
    parsed JSON (as `json.load` gives it). `estimand` (stats.ESTIMANDS): "workload" judges prompts like these
    (the prompt is the unit, the median of its passes), "suite" these exact prompts (the run is the unit)."""
    check_estimand(estimand)
    if isinstance(results, dict):
        results = Results.from_dict(results)
    greedy = results.settings.temp == 0
    cases, baselines = [], {}
    for record in results.groups.values():
        samples = record.samples
        baseline = [s for s in samples if s.is_baseline]
        baselines[(record.target, record.draft)] = {
            "decode_tps": summarize(s.decode_tps for s in baseline),
            "e2e_tps": summarize(s.e2e_tps for s in baseline),
        }
        setups = group_setups(results, record)
        engine = record.engine or results.plan.engine
        if not setups:
            cases.append(SweepCase(record.target, "baseline", None, None, record.status, record.reason, None,
                                   engine=engine))
        group_cases = []
        for method, draft, k in setups:
            speculative = [s for s in samples if s.method == method and s.num_draft_tokens == k]
            case = SweepCase(record.target, method, draft, k, record.status, record.reason, None, engine=engine)
            if speculative and baseline:
                case.comparison = compare(baseline, speculative, k, greedy, estimand=estimand)
                case.ratios = case.comparison.ratios
            group_cases.append(case)
        for pruned in record.pruned:
            for case in group_cases:
                if (case.method, case.num_draft_tokens) == (pruned["method"], pruned["num_draft_tokens"]):
                    case.pruned, case.pruned_after_units = pruned["reason"], pruned["after_units"]
        _predict(results, record, group_cases)
        cases += group_cases
    return SweepAnalysis(
        results=results,
        cases=cases,
        statuses={(r.target, r.draft): r.status for r in results.groups.values()},
        baselines=baselines,
        objective=objective,
        estimand=estimand,
    )


def _predict(results: Results, record, cases: list[SweepCase]) -> None:
    """The speedup model's prediction for every k of each fixed-k setup (`estimates.group_predictions`): as the
    sweep stored them when the group was measured, else (files before they were stored) fitted here."""
    predictions = group_predictions(results, record)
    for case in cases:
        case.prediction = predictions.get((case.method, case.draft, case.num_draft_tokens))
