"""What measured samples say: each (target, draft, k) compared with the baseline runs measured
beside it (paired by prompt and pass), and per target a verdict that does not pick noise.

Derived from the raw samples of a results file every time a report is rendered; nothing here is
measured or stored. Statistics themselves live in `stats`.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .results import sample_from_dict
from .stats import (
    Candidate,
    Losslessness,
    RatioEstimate,
    Summary,
    Verdict,
    compare_outputs,
    decide,
    estimate_ratio,
    summarize,
)

OBJECTIVES = ("e2e", "decode")
OBJECTIVE_NAMES = {"e2e": "end-to-end speed", "decode": "decode speed"}
TEMPERATURE_NOTE = (
    "at temperature > 0 mlx-lm accepts a draft token only when it equals the target's own, independently "
    "sampled token, so acceptance falls with temperature whatever the draft"
)


def unit_of(sample) -> tuple[int, int]:
    """The unit of pairing: one prompt in one pass, measured for every variant back to back."""
    return (sample.prompt_index, sample.pass_index)


def paired_ratios(baseline_samples, speculative_samples, metric: str) -> dict[tuple[int, int], float]:
    """Per unit, speculative / baseline of `metric` (decode_tps or e2e_tps), where both exist."""
    reference = {unit_of(s): getattr(s, metric) for s in baseline_samples}
    ratios = {}
    for sample in speculative_samples:
        base, spec = reference.get(unit_of(sample)), getattr(sample, metric)
        if base and spec and base > 0 and spec > 0 and math.isfinite(base) and math.isfinite(spec):
            ratios[unit_of(sample)] = spec / base
    return ratios


@dataclass
class Comparison:
    """Everything derived from the baseline and speculative samples of one (target, draft, k)."""

    num_draft_tokens: int
    units: int  # paired units (prompt x pass)
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
    per_category: dict = field(default_factory=dict)  # category -> {decode/e2e speedup, acceptance}

    def speedup(self, objective: str) -> RatioEstimate | None:
        return self.e2e_speedup if objective == "e2e" else self.decode_speedup

    def to_dict(self) -> dict:
        return asdict(self)


def compare(baseline_samples, speculative_samples, num_draft_tokens: int, greedy: bool,
            with_categories: bool = True) -> Comparison:
    """Derive a Comparison from the samples of one draft at one k and its group's baseline."""
    histogram = [0] * (num_draft_tokens + 1)
    for sample in speculative_samples:
        for accepted, count in enumerate(sample.accepted_length_counts[: num_draft_tokens + 1]):
            histogram[accepted] += count
    decode = paired_ratios(baseline_samples, speculative_samples, "decode_tps")
    e2e = paired_ratios(baseline_samples, speculative_samples, "e2e_tps")
    per_category = {}
    categories = sorted({s.category for s in speculative_samples})
    if with_categories and len(categories) > 1:
        for category in categories:
            sub = compare([s for s in baseline_samples if s.category == category],
                          [s for s in speculative_samples if s.category == category],
                          num_draft_tokens, greedy, with_categories=False)
            per_category[category] = {
                "decode_speedup": sub.decode_speedup, "e2e_speedup": sub.e2e_speedup,
                "acceptance_rate": sub.acceptance_rate,
            }
    memory = summarize(s.peak_memory_gb for s in speculative_samples)
    if memory:
        memory.outliers = 0  # memory is not timing noise: never flagged
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
        per_category=per_category,
    )


@dataclass
class SweepCase:
    """One (target, draft, k) of a results file, with its statistics when it was measured."""

    target: str
    draft: str | None
    num_draft_tokens: int | None
    status: str  # done, pending, skipped, failed
    reason: str | None
    comparison: Comparison | None
    ratios: dict = field(default_factory=dict)  # objective -> {unit: ratio}, for the verdict

    @property
    def label(self) -> str:
        return f"{label(self.draft)} k={self.num_draft_tokens}"


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

    @property
    def kind(self) -> str:
        return self.verdict.verdict if self.verdict else "not measured"

    def to_dict(self) -> dict:
        case = self.chosen or self.leader
        data = {
            "target": self.target,
            "objective": self.objective,
            "verdict": self.kind,
            "reason": self.verdict.reason if self.verdict else "no speculative setup was measured",
            "draft": self.chosen.draft if self.chosen else None,
            "num_draft_tokens": self.chosen.num_draft_tokens if self.chosen else None,
            "leader": {"draft": self.leader.draft, "num_draft_tokens": self.leader.num_draft_tokens}
            if self.leader else None,
            "candidates": self.verdict.candidates if self.verdict else 0,
            "n": self.verdict.estimate.n if self.verdict and self.verdict.estimate else 0,
            "more_units_needed": self.verdict.more_units_needed if self.verdict else None,
            "tied": [{"draft": c.draft, "num_draft_tokens": c.num_draft_tokens} for c in self.tied],
            "commands": self.commands,
        }
        if self.verdict and self.verdict.estimate:
            data[f"{self.objective}_speedup"] = self.verdict.estimate.to_dict()
        if case and case.comparison:
            other = "decode" if self.objective == "e2e" else "e2e"
            estimate = case.comparison.speedup(other)
            data[f"{other}_speedup"] = estimate.to_dict() if estimate else None
        if self.other:
            data["other_objective"] = {"objective": self.other.objective, "verdict": self.other.kind,
                                       "draft": self.other.chosen.draft if self.other.chosen else None,
                                       "num_draft_tokens": self.other.chosen.num_draft_tokens
                                       if self.other.chosen else None}
        return data


@dataclass
class SweepAnalysis:
    state: dict
    cases: list[SweepCase]
    statuses: dict[tuple[str, str | None], str]
    baselines: dict[tuple[str, str | None], dict]  # (target, draft) -> {decode_tps, e2e_tps} Summaries
    objective: str = "e2e"

    @property
    def targets(self) -> list[str]:
        return self.state["plan"]["targets"]

    @property
    def drafts(self) -> list[str]:
        return self.state["plan"]["drafts"]

    @property
    def settings(self) -> dict:
        return self.state["plan"]["settings"]

    def problems(self) -> list[dict]:
        return [r for r in self.state["groups"].values() if r["status"] in ("skipped", "failed")]

    def measured(self, target: str | None = None) -> list[SweepCase]:
        return [c for c in self.cases if c.comparison and c.draft and (target is None or c.target == target)]

    def best_k(self, target: str, draft: str, objective: str | None = None) -> SweepCase | None:
        """The k with the highest geometric-mean speedup for this pair (for display only: the
        verdict accounts for the choice among candidates)."""
        objective = objective or self.objective
        cases = [c for c in self.measured(target) if c.draft == draft and c.comparison.speedup(objective)]
        return max(cases, key=lambda c: c.comparison.speedup(objective).geomean, default=None)

    def best_k_estimate(self, target: str, draft: str, objective: str | None = None) -> RatioEstimate | None:
        """The best k's speedup with its interval widened for the k values of this pair, since it
        was chosen as the best of them."""
        objective = objective or self.objective
        case = self.best_k(target, draft, objective)
        if case is None:
            return None
        tried = sum(1 for c in self.measured(target) if c.draft == draft and c.ratios.get(objective))
        return estimate_ratio(list(case.ratios[objective].values()), candidates=max(tried, 1))

    def alone_peak_memory_gb(self, target: str) -> float | None:
        """Peak memory of the target's baseline with no draft loaded (measured once per load)."""
        return self.state.get("models", {}).get(target, {}).get("alone_peak_memory_gb")

    def draft_cost_gb(self, target: str, draft: str) -> float | None:
        """Peak memory the draft adds: speculative peak minus the target-alone peak."""
        alone = self.alone_peak_memory_gb(target)
        peaks = [c.comparison.speculative_peak_memory_gb.max for c in self.measured(target)
                 if c.draft == draft and c.comparison.speculative_peak_memory_gb]
        return max(peaks) - alone if alone is not None and peaks else None

    def verdict(self, target: str, objective: str | None = None, _with_other: bool = True) -> TargetVerdict:
        objective = objective or self.objective
        cases = [c for c in self.measured(target) if c.ratios.get(objective)]
        models = self.state.get("models", {})
        candidates = [Candidate(key=index, ratios=case.ratios[objective],
                                cost=(_draft_size(models.get(case.draft, {})), case.num_draft_tokens))
                      for index, case in enumerate(cases)]
        result = decide(candidates, describe=lambda index: cases[index].label) if candidates else None
        pick = lambda key: cases[key] if key is not None else None  # noqa: E731
        verdict = TargetVerdict(target, objective, result,
                                chosen=pick(result.chosen) if result else None,
                                leader=pick(result.leader) if result else None,
                                tied=[cases[key] for key in result.tied] if result else [])
        if verdict.chosen:
            verdict.commands = mlx_lm_commands(models.get(target, {"path": target}),
                                               models.get(verdict.chosen.draft, {"path": verdict.chosen.draft}),
                                               verdict.chosen.num_draft_tokens, self.settings)
        if _with_other:
            verdict.other = self.verdict(target, "decode" if objective == "e2e" else "e2e", _with_other=False)
        return verdict

    def verdicts(self) -> list[TargetVerdict]:
        return [self.verdict(target) for target in self.targets]


def _draft_size(record: dict) -> float:
    size = record.get("weights_gb")
    return size if isinstance(size, (int, float)) else math.inf


def analyse_sweep(state: dict, objective: str = "e2e") -> SweepAnalysis:
    greedy = state["plan"]["settings"]["temp"] == 0
    cases, baselines = [], {}
    for record in state["groups"].values():
        samples = [sample_from_dict(s) for s in record["samples"]]
        baseline = [s for s in samples if s.is_baseline]
        baselines[(record["target"], record["draft"])] = {
            "decode_tps": summarize(s.decode_tps for s in baseline),
            "e2e_tps": summarize(s.e2e_tps for s in baseline),
        }
        if record["draft"] is None:
            cases.append(SweepCase(record["target"], None, None, record["status"], record["reason"], None))
            continue
        for k in state["plan"]["num_draft_tokens"]:
            speculative = [s for s in samples if s.num_draft_tokens == k]
            case = SweepCase(record["target"], record["draft"], k, record["status"], record["reason"], None)
            if speculative and baseline:
                case.comparison = compare(baseline, speculative, k, greedy)
                case.ratios = {"decode": paired_ratios(baseline, speculative, "decode_tps"),
                               "e2e": paired_ratios(baseline, speculative, "e2e_tps")}
            cases.append(case)
    return SweepAnalysis(
        state=state,
        cases=cases,
        statuses={(r["target"], r["draft"]): r["status"] for r in state["groups"].values()},
        baselines=baselines,
        objective=objective,
    )


def label(name: str | None) -> str:
    """Short display name: model lists' short names and repo ids as they are, folders by name."""
    if name is None:
        return "-"
    return Path(name).name if name.startswith(("/", ".", "~")) else name


def mlx_lm_commands(target: dict, draft: dict, num_draft_tokens: int, settings: dict | None = None) -> list[str]:
    """Commands that use this setup with mlx-lm itself (model records: repo id, else local path),
    with the sampling settings it was measured with."""
    model = shlex.quote(target.get("repo_id") or target["path"])
    draft_model = shlex.quote(draft.get("repo_id") or draft["path"])
    temp = (settings or {}).get("temp") or 0
    sampling = f" --temp {temp:g}" if temp else ""
    return [
        f"mlx_lm.generate --model {model} --draft-model {draft_model} "
        f"--num-draft-tokens {num_draft_tokens}{sampling} --prompt 'Hello'",
        f"mlx_lm.server --model {model} --draft-model {draft_model} --num-draft-tokens {num_draft_tokens}{sampling}",
    ]
