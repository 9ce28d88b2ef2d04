"""Per-unit estimates from measured samples: the small, pure pieces that the measuring side (the smart sweep's
race and its settling) and the report side (`analysis`) both decide from, so that a race prunes, settling
catches up and a report judges on exactly the same paired ratios and the same verdict rule.

A unit is one prompt in one pass, every variant measured there back to back (`unit_of`). A setup's speedup is
paired unit by unit with the baseline run measured next to it (`paired_runs`), then averaged per prompt under the
"workload" estimand, the prompt being the unit of replication (`paired_ratios`). `judge` is the verdict rule over
a target's setups, the same one the report prints and settling acts on.

This module imports neither the report side (`analysis`, `reports`) nor `methods` or `engines`: it reads only
samples and the plain records of a results file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from .prediction import Prediction, predict_setups
from .stats import ESTIMANDS, Candidate, Verdict, decide, estimate_ratio, per_prompt

METRIC = {"e2e": "e2e_tps", "decode": "decode_tps"}  # objective -> the sample's figure it compares

Setup = tuple  # (method key, k)


def unit_of(sample) -> tuple[int, int]:
    """The unit of pairing: one prompt in one pass, measured for every variant back to back."""
    return (sample.prompt_index, sample.pass_index)


def check_estimand(estimand: str) -> None:
    if estimand not in ESTIMANDS:
        raise ValueError(f"estimand must be one of {', '.join(ESTIMANDS)}, got {estimand!r}")


def paired_runs(baseline_samples, speculative_samples, metric: str) -> dict[tuple[int, int], float]:
    """Per run (prompt, pass), speculative / baseline of `metric` (decode_tps or e2e_tps), where both exist."""
    reference = {unit_of(s): getattr(s, metric) for s in baseline_samples}
    ratios = {}
    for sample in speculative_samples:
        base, spec = reference.get(unit_of(sample)), getattr(sample, metric)
        if base and spec and base > 0 and spec > 0 and math.isfinite(base) and math.isfinite(spec):
            ratios[unit_of(sample)] = spec / base
    return ratios


def as_units(runs: dict, estimand: str) -> dict:
    """{(prompt, pass): ratio} as the units of `estimand`: per prompt ("workload") or per run ("suite")."""
    return per_prompt(runs) if estimand == "workload" else runs


def paired_ratios(baseline_samples, speculative_samples, metric: str, estimand: str = "workload") -> dict:
    """The ratios every speedup interval and verdict is computed from. Under the "workload" estimand (prompts
    like these, the default): per prompt, the median of its passes' paired ratios (`stats.per_prompt`),
    since the prompt is the unit of replication. Under "suite" (these exact prompts): per run (prompt, pass)."""
    check_estimand(estimand)
    return as_units(paired_runs(baseline_samples, speculative_samples, metric), estimand)


def setup_ratios(samples, setup: Setup, metric: str, estimand: str = "workload") -> dict:
    """`setup`'s (method, k) paired ratios to the baseline runs of the same group's `samples`."""
    baseline = [s for s in samples if s.is_baseline]
    return paired_ratios(baseline, [s for s in samples if (s.method, s.num_draft_tokens) == tuple(setup)],
                         metric, estimand)


def draft_token_s(results, target: str, draft: str | None) -> list[float] | None:
    """The timed cost of one draft token (0 without a draft model; the target's own when it drafts
    for itself), None when it was not timed."""
    if draft is None:
        return [0.0]
    if draft == target:
        return results.models.get(target, {}).get("verify_s", {}).get("1")
    return results.models.get(draft, {}).get("token_s")


def setup_label(method: str, draft: str | None) -> str:
    """'mlx-lm q8-draft', 'prompt-lookup': how a setup is named in reports and progress."""
    return f"{method} {label(draft)}" if draft else method


def label(name: str | None) -> str:
    """Short display name: model lists' short names and repo ids as they are, folders by name."""
    if name is None:
        return "-"
    return Path(name).name if name.startswith(("/", ".", "~")) else name


def draft_size(record: dict) -> float:
    """A draft's weights in GB, the verdict's cost of a setup (unknown: the largest)."""
    size = record.get("weights_gb")
    return size if isinstance(size, (int, float)) else math.inf


@dataclass
class SetupEstimate:
    """One measured (target, method, draft, k) of a results file: its per-unit ratios to the baseline."""

    target: str
    method: str
    draft: str | None
    num_draft_tokens: int
    ratios: dict = field(default_factory=dict)  # objective -> {unit: ratio}
    pruned: bool = False  # the smart sweep's race stopped measuring it

    @property
    def label(self) -> str:
        return f"{setup_label(self.method, self.draft)} k={self.num_draft_tokens}"

    def own(self, objective: str):
        """Its own (not widened) speedup estimate for `objective`, None without ratios."""
        return estimate_ratio(list(self.ratios.get(objective, {}).values()))


def group_setups(results, record) -> list[tuple[str, str | None, int]]:
    """(method, draft, k) measured (or to be measured) in a group, in the order reports list them: the plan's
    methods that run there (those its engine runs; with a draft: those that take one; alone: those that take
    none; a pair runs them all in its one group), then whatever else its samples hold. A method's draft is the
    group's when it takes one."""
    plan, has_draft = results.plan, record.draft is not None
    setups = []
    for key in record.methods if record.methods is not None else plan.methods:  # those its engine runs
        method = results.method_info(key)
        if method["needs_draft"] != has_draft and not (results.kind == "pair" and has_draft):
            continue
        for k in plan.num_draft_tokens if method["uses_k"] else [0]:
            setups.append((key, record.draft if method["needs_draft"] else None, k))
    for sample in record.samples:
        setup = (sample.method, record.draft if results.method_info(sample.method)["needs_draft"] else None,
                 sample.num_draft_tokens)
        if not sample.is_baseline and setup not in setups:
            setups.append(setup)
    return setups


def fit_group_predictions(results, record) -> dict[tuple[str, str | None, int], Prediction]:
    """The speedup model's predictions for every k of each fixed-k setup of a group, {(method, draft, k):
    Prediction}: fitted to its runs at the largest k among the plan's passes (catch-up runs left out) and the timed
    forward passes stored with the models; none when either is missing. The sweep fits them once, when the group
    is measured, and stores them (`GroupRecord.predictions`)."""
    verify = results.models.get(record.target, {}).get("verify_s")
    in_plan = [s for s in record.samples if s.pass_index < results.plan.settings.runs]
    if not verify or not any(s.is_baseline for s in in_plan):
        return {}
    setups = group_setups(results, record)
    predictions = {}
    for draft in dict.fromkeys(d for _, d, _ in setups):
        token_s = draft_token_s(results, record.target, draft)
        fixed = [m for m, d, _ in setups if d == draft and results.method_info(m)["fixed_k"]]
        if token_s is None or not fixed:
            continue
        fitted = predict_setups(in_plan, verify, token_s, max(results.plan.num_draft_tokens), dict.fromkeys(fixed))
        predictions.update({(method, draft, k): prediction for (method, k), prediction in fitted.items()})
    return predictions


def stored_predictions(predictions: dict) -> list[dict] | None:
    """`fit_group_predictions`' result as a results file keeps it; None (fit again when reading) when a figure is
    not finite, which JSON cannot hold."""
    stored = [{"method": method, "draft": draft, **prediction.to_dict()}
              for (method, draft, _), prediction in predictions.items()]
    finite = all(math.isfinite(v) for p in stored for v in p.values() if isinstance(v, float))
    return stored if finite else None


def group_predictions(results, record) -> dict[tuple[str, str | None, int], Prediction]:
    """A group's predictions as the sweep stored them when it measured the group, else (a file from before they
    were stored, or a group still being measured) fitted now, the same way."""
    if record.predictions is None:
        return fit_group_predictions(results, record)
    names = {f.name for f in fields(Prediction)}
    return {(p["method"], p["draft"], p["k"]): Prediction(**{k: v for k, v in p.items() if k in names})
            for p in record.predictions}


def target_estimates(results, target: str, objective: str,
                     estimand: str = "workload") -> tuple[list[SetupEstimate], int]:
    """Every setup of `target` measured next to a baseline (its groups in file order), with its ratios for
    `objective`, and how many setups the target's races compared (measured or pruned): what `judge` needs."""
    check_estimand(estimand)
    estimates, compared = [], 0
    for record in results.groups.values():
        if record.target != target:
            continue
        baseline = [s for s in record.samples if s.is_baseline]
        measured = {(s.method, s.num_draft_tokens) for s in record.samples if not s.is_baseline}
        pruned = {(p["method"], p["num_draft_tokens"]) for p in record.pruned}
        compared += len((measured if baseline else set()) | pruned)
        if not baseline:
            continue
        for method, draft, k in group_setups(results, record):
            if (method, k) in measured:
                ratios = setup_ratios(record.samples, (method, k), METRIC[objective], estimand)
                estimates.append(SetupEstimate(target, method, draft, k, {objective: ratios}, (method, k) in pruned))
    return estimates, compared


@dataclass
class Judgement:
    """A target's verdict for one objective over its setups (duck-typed: anything with `ratios`, `draft`,
    `num_draft_tokens` and `label`): the statistical verdict and the setups it names."""

    verdict: Verdict | None  # None when no setup has a ratio
    chosen: object | None = None
    leader: object | None = None
    tied: list = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.verdict.verdict if self.verdict else "not measured"


def judge(competing: list, pruned: list, objective: str, models: dict, estimand: str = "workload",
          compared: int = 0, describe: Callable[[object], str] | None = None) -> Judgement:
    """The verdict over a target's `competing` setups (those its races kept), or, when none has a ratio, over the
    `pruned` ones (a smart sweep that dropped every setup as slower than the baseline: judge what it measured).
    Each setup's cost is (its draft's size, k): among tied setups the cheaper is chosen. The interval is widened
    for `compared` setups (a smart sweep's pruned ones were compared too)."""
    cases = [c for c in competing if c.ratios.get(objective)]
    if not cases:
        cases = [c for c in pruned if c.ratios.get(objective)]
    if not cases:
        return Judgement(None)
    candidates = [Candidate(key=index, ratios=case.ratios[objective],
                            cost=(draft_size(models.get(case.draft, {})) if case.draft else 0.0,
                                  case.num_draft_tokens))
                  for index, case in enumerate(cases)]
    result = decide(candidates, describe=lambda index: (describe or (lambda c: c.label))(cases[index]),
                    estimand=estimand, compared=compared)
    if result is None:
        return Judgement(None)
    pick = lambda key: cases[key] if key is not None else None  # noqa: E731
    return Judgement(result, pick(result.chosen), pick(result.leader), [cases[key] for key in result.tied])


def judge_target(results, target: str, objective: str, estimand: str = "workload") -> tuple[Judgement, list]:
    """`judge` straight from a results file's samples, without a report's analysis: the judgement and the
    competing setups (measured, not pruned, with a ratio)."""
    estimates, compared = target_estimates(results, target, objective, estimand)
    competing = [e for e in estimates if not e.pruned]
    judgement = judge(competing, [e for e in estimates if e.pruned], objective, results.models, estimand, compared)
    return judgement, [e for e in competing if e.ratios.get(objective)]
