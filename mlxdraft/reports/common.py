"""What every report format shares: figures formatted with their units and n, verdict lines,
the matrices (drafts as rows, targets as columns) and the header. Formats import from here."""

from __future__ import annotations

from ..analysis import (
    OBJECTIVE_NAMES,
    TEMPERATURE_NOTE,
    SweepAnalysis,
    SweepCase,
    TargetVerdict,
    label,
    setup_label,
)
from ..stats import MIN_UNITS_FOR_INTERVAL, RatioEstimate, Summary


def format_summary(summary: Summary | None, unit: str = "", digits: int = 1, scale: float = 1.0,
                   outliers: bool = True) -> str:
    """'12.3 ± 0.4 tok/s (11.9 … 12.8, n=12)'; one run is shown as one run, never '± 0.0'."""
    if summary is None:
        return "n/a"
    unit = f" {unit}" if unit else ""
    if summary.n == 1:
        return f"{summary.mean * scale:.{digits}f}{unit} (n=1, one run)"
    text = (
        f"{summary.mean * scale:.{digits}f} ± {summary.stdev * scale:.{digits}f}{unit} "
        f"({summary.min * scale:.{digits}f} … {summary.max * scale:.{digits}f}, n={summary.n})"
    )
    if outliers and summary.outliers:
        text += (f", {summary.outliers} outlier{'s' if summary.outliers > 1 else ''} "
                 "(warm up more or quiet the machine)")
    return text


def format_estimate(estimate: RatioEstimate | None) -> str:
    """'1.42x (95% CI 1.31–1.55, n=12)', or 'n=2, no error bar' below three units."""
    if estimate is None:
        return "n/a"
    if estimate.low is None:
        return f"{estimate.geomean:.2f}x (n={estimate.n}, no error bar)"
    widened = f", widened for {estimate.candidates} setups" if estimate.candidates > 1 else ""
    return (f"{estimate.geomean:.2f}x ({estimate.confidence * 100:g}% CI {estimate.low:.2f}–{estimate.high:.2f}"
            f"{widened}, n={estimate.n})")


def format_prediction(prediction, objective: str = "decode") -> str:
    """'1.52x [1.40, 1.65]' for a speedup model's prediction; 'n/a' without one."""
    if prediction is None:
        return "n/a"
    point, low, high = ((prediction.decode_speedup, prediction.low, prediction.high) if objective == "decode"
                        else (prediction.e2e_speedup, prediction.e2e_low, prediction.e2e_high))
    if point is None:
        return "n/a"
    return f"{point:.2f}x" + (f" [{low:.2f}, {high:.2f}]" if low is not None else f" (n={prediction.units})")


def prediction_matrix(analysis: SweepAnalysis, target: str) -> tuple[list[str], list[list[str]]] | None:
    """Per setup (rows) and k (columns): 'predicted / measured' decode speedup, or None when the
    speedup model made no prediction for this target."""
    cases = [c for c in analysis.cases if c.target == target and c.prediction]
    if not cases:
        return None
    ks = analysis.plan.num_draft_tokens
    rows = []
    for setup in dict.fromkeys(c.setup for c in cases):
        row = [setup_label(*setup)]
        for k in ks:
            case = next((c for c in cases if c.setup == setup and c.num_draft_tokens == k), None)
            measured = case.comparison.decode_speedup if case and case.comparison else None
            row.append(f"{case.prediction.decode_speedup:.2f}x / "
                       + (f"{measured.geomean:.2f}x" if measured else "n/a") if case else "")
        rows.append(row)
    return ["setup \\ k"] + [f"k={k}" for k in ks], rows


def spans_one(estimate: RatioEstimate | None) -> bool:
    return bool(estimate and estimate.low is not None and estimate.low <= 1.0 <= estimate.high)


def format_cell(estimate: RatioEstimate | None) -> str:
    """Compact matrix cell: '1.42x [1.31, 1.55]', '?' when the interval spans 1.0."""
    if estimate is None:
        return "n/a"
    if estimate.low is None:
        return f"{estimate.geomean:.2f}x (n={estimate.n})"
    return f"{estimate.geomean:.2f}x [{estimate.low:.2f}, {estimate.high:.2f}]" + (" ?" if spans_one(estimate) else "")


def format_lossless(case: SweepCase) -> str:
    lossless = case.comparison.lossless
    if not lossless.checked:
        return "not checked (sampling with temperature > 0)"
    if lossless.runs_compared == 0:
        return "not checked (no paired runs)"
    if lossless.identical:
        return f"yes: identical token ids in {lossless.runs_compared} of {lossless.runs_compared} runs"
    where = lossless.first_divergence
    return (
        f"NO: {lossless.runs_diverged} of {lossless.runs_compared} runs differ; first at token "
        f"{where['token_index']} of prompt {where['prompt_index'] + 1}, pass {where['pass_index'] + 1}"
    )


def _model_line(record: dict) -> str:
    weights = record.get("weights_gb")
    size = f", {weights:.2f} GB of weights" if isinstance(weights, (int, float)) else ""
    return f"{record.get('name')} ({record.get('model_type')}, {record.get('precision')}{size})"


def settings_text(analysis: SweepAnalysis) -> str:
    plan, settings = analysis.plan, analysis.settings
    mode = "fixed length, EOS ignored" if settings.fixed_length else "natural length, stops at EOS"
    sampling = "greedy" if settings.temp == 0 else f"temperature {settings.temp:g}" + "".join(
        f", {name} {value:g}" for name, value, off in (("top-p", settings.top_p, 1.0), ("top-k", settings.top_k, 0),
                                                      ("min-p", settings.min_p, 0.0)) if value not in (off, 0))
    return (f"methods {', '.join(plan.methods)}, k in {plan.num_draft_tokens}, max {settings.max_tokens} tokens "
            f"({mode}), {settings.runs} pass(es) x {len(plan.prompts)} prompt(s), warmup {settings.warmup}, "
            f"{sampling}, seed {settings.seed}")


def objective_text(analysis: SweepAnalysis) -> str:
    if analysis.objective == "decode":
        return "decode speed (tokens after the first verify round; time to first token left out)"
    plan, settings = analysis.plan, analysis.settings
    return (f"end-to-end time of this workload ({len(plan.prompts)} prompt(s), up to {settings.max_tokens} "
            "tokens each, time to first token included)")


def verdict_lines(verdict: TargetVerdict, analysis: SweepAnalysis, markdown: bool = False,
                  named: bool = True) -> list[str]:
    """A target's verdict: the setup, its figures, ties, the other objective, the commands."""
    name = f"- {label(verdict.target)}: " if named else ""
    unfinished = unfinished_line(analysis, verdict.target)
    if verdict.verdict is None:
        alone = analysis.baselines.get((verdict.target, None))
        if alone and alone["decode_tps"]:
            return [f"{name}measured alone, for its baseline (no draft other than itself and no larger than it): "
                    f"decode {format_summary(alone['decode_tps'], 'tok/s')}; end to end "
                    f"{format_summary(alone['e2e_tps'], 'tok/s')}"] + ([unfinished] if unfinished else [])
        return [f"{name}not measured"] + ([unfinished] if unfinished else [])
    v = verdict.verdict
    lines = [f"{name}{v.verdict.upper()}: {v.reason}"]
    if unfinished:
        lines.append(unfinished)
    case = verdict.chosen or verdict.leader
    if case is not None:
        comparison = case.comparison
        lines.append(f"    {case.label}: end to end {format_estimate(comparison.e2e_speedup)}; "
                     f"decode {format_estimate(comparison.decode_speedup)} (each on its own, not widened)")
        if case.prediction:
            lines.append(f"    speedup model: decode {format_prediction(case.prediction)}, end to end "
                         f"{format_prediction(case.prediction, 'e2e')} predicted from the runs at "
                         f"k={max(analysis.plan.num_draft_tokens)} and the timed forward passes")
    if v.verdict == "inconclusive" and v.more_units_needed and v.estimate and not unfinished:
        prompts = max(len(analysis.plan.prompts), 1)
        runs = max(-(-(v.estimate.n + v.more_units_needed) // prompts), analysis.settings.runs + 1)
        lines.append(f"    to decide it, measure again with -r {runs} (into a new file)")
    if verdict.tied:
        lines.append("    statistically tied with the fastest: " + ", ".join(c.label for c in verdict.tied)
                     + ("; the cheapest was chosen" if verdict.chosen else ""))
    other = verdict.other
    if other and other.verdict and (other.kind != verdict.kind or _setup(other) != _setup(verdict)):
        lines.append(f"    by {OBJECTIVE_NAMES[other.objective]} alone: {other.kind}"
                     + (f", {other.chosen.label}" if other.chosen else "")
                     + f" ({other.verdict.reason})")
    if v.verdict == "no-gain":
        lines.append("    run the target without speculative decoding")
    for command in verdict.commands:
        lines.append(f"    `{command}`" if markdown else f"    {command}")
    return lines


def unfinished_line(analysis: SweepAnalysis, target: str) -> str | None:
    """A warning when the target's measurement is not complete (pending pairs, runs missing)."""
    groups = [g for g in analysis.results.groups.values() if g.target == target and g.status == "pending"]
    if not groups:
        return None
    done = sum(len(g.samples) for g in groups)
    planned = sum(analysis.settings.runs * len(analysis.plan.prompts) * (1 + len(_setups_in(analysis, g)))
                  for g in groups)
    return (f"    unfinished: {len(groups)} pair(s) still pending, {done} of their {planned} runs measured; "
            "continue with --resume (pair: measure again) before trusting this")


def _setups_in(analysis: SweepAnalysis, group) -> list[SweepCase]:
    return [c for c in analysis.cases if c.target == group.target and c.method != "baseline"
            and (c.draft == group.draft or (c.draft is None and analysis.results.kind == "pair"))]


def _setup(verdict: TargetVerdict):
    return (verdict.chosen.method, verdict.chosen.draft, verdict.chosen.num_draft_tokens) if verdict.chosen else None


def _percent(summary: Summary | None) -> str:
    return "n/a" if not summary else f"{summary.mean * 100:.0f}%"


def _number(summary: Summary | None, digits: int = 1) -> str:
    return "n/a" if not summary else f"{summary.mean:.{digits}f}"


METRICS = ("speedup", "acceptance", "tokens-per-round")
SPEEDUP_TITLES = {"e2e": "End-to-end speedup", "decode": "Decode speedup"}
METRIC_TITLES = {"speedup": "Speedup", "acceptance": "Acceptance rate",
                 "tokens-per-round": "Tokens per complete verify round"}


def _cell(analysis: SweepAnalysis, target: str, method: str, draft: str | None, metric: str, objective: str) -> str:
    status = analysis.status(target, method, draft)
    if status is None:
        return ""
    case = analysis.best_k(target, method, draft, objective)
    if case is None and any(c.setup == (method, draft) for c in analysis.pruned(target)):
        return "pruned"
    if case is None:
        return {"skipped": "skipped", "failed": "failed", "pending": "not run"}.get(status, "n/a")
    comparison = case.comparison
    if metric == "speedup":
        text = f"{format_cell(analysis.best_k_estimate(target, method, draft, objective))} k={case.num_draft_tokens}"
        return text + (" (output differs)" if comparison.lossless.identical is False else "")
    if metric == "acceptance":
        return f"{_percent(comparison.acceptance_rate)} k={case.num_draft_tokens}"
    return f"{_number(comparison.tokens_per_round, 2)} k={case.num_draft_tokens}"


def matrix(analysis: SweepAnalysis, metric: str, objective: str | None = None) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): setups (method and draft) as rows, targets as columns, cells at each
    setup's best k."""
    objective = objective or analysis.objective
    headers = ["setup \\ target"] + [label(t) for t in analysis.targets]
    rows = [[setup_label(method, draft)] + [_cell(analysis, target, method, draft, metric, objective)
                                            for target in analysis.targets]
            for method, draft in analysis.setups()]
    return headers, rows


def baseline_matrix(analysis: SweepAnalysis) -> tuple[list[str], list[list[str]]]:
    """Each pair's own baseline (decode / end-to-end tok/s), in the cell of that pair; a target
    measured alone in a row of its own."""
    headers = ["draft \\ target"] + [label(t) for t in analysis.targets]
    rows = []
    alone = [None] if any(draft is None for _, draft in analysis.baselines) else []
    for draft in analysis.drafts + alone:
        row = [label(draft) if draft else "(target alone)"]
        for target in analysis.targets:
            figures = analysis.baselines.get((target, draft))
            decode, e2e = (figures or {}).get("decode_tps"), (figures or {}).get("e2e_tps")
            row.append(f"{decode.mean:.1f} / {e2e.mean:.1f}" if decode and e2e else "")
        rows.append(row)
    return headers, rows


PRUNED_TITLE = "Pruned by the smart sweep (left out of the verdicts, unless a target has nothing else)"


def pruned_lines(analysis: SweepAnalysis) -> list[str]:
    """The setups a smart sweep stopped measuring, and why (they take no part in the verdicts)."""
    return [f"{label(c.target)} + {c.label}: {c.pruned}" for c in analysis.pruned()]


CAUGHT_UP_TITLE = "Settled by the smart sweep (measured again on the prompts they missed after the race's probe)"


def caught_up_lines(analysis: SweepAnalysis) -> list[str]:
    """The setups a smart sweep measured in a catch-up pass (module `settle`), and on how many prompts."""
    passes = analysis.settings.runs
    lines = []
    for record in analysis.results.groups.values():
        counts: dict[tuple[str, int], int] = {}
        for sample in record.samples:
            if sample.pass_index >= passes and not sample.is_baseline:
                key = (sample.method, sample.num_draft_tokens)
                counts[key] = counts.get(key, 0) + 1
        for (method, k), count in counts.items():
            lines.append(f"{label(record.target)} + {setup_label(method, record.draft)} k={k}: {count} catch-up "
                         f"run(s), each next to a baseline run of its own")
    return lines


def problem_lines(analysis: SweepAnalysis) -> list[str]:
    return [f"{label(r.target)} + {label(r.draft) if r.draft else '(target alone)'}: {r.status}: {r.reason}"
            for r in analysis.problems()]


def header_lines(analysis: SweepAnalysis) -> list[str]:
    results = analysis.results
    machine, versions = results.machine, results.versions
    lines = [
        f"Machine: {machine.get('chip')}, {machine.get('memory_gb') or 0:.0f} GB RAM, {machine.get('os')}; "
        f"mlx {versions.get('mlx')}, mlx-lm {versions.get('mlx-lm')}, mlxdraft {versions.get('mlxdraft')}",
        f"Settings: {settings_text(analysis)}, memory budget {results.plan.memory_budget_gb or 0:.1f} GB, "
        f"engine {results.plan.engine}",
        f"Objective: {objective_text(analysis)}",
        "Speedup = geometric mean over prompts of speculative / baseline speed, each prompt measured back to "
        f"back; [95% interval]; '?' marks an interval that spans 1.0; no interval below {MIN_UNITS_FOR_INTERVAL} "
        "runs. At a pair's best k the interval is widened for the k values tried, and a verdict's for every "
        "setup compared, so choosing the best does not overstate it.",
    ]
    if analysis.settings.temp > 0:
        lines.append(f"Note: {TEMPERATURE_NOTE}.")
    return lines
