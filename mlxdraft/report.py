"""Rendering results as text: the `pair` block, and the sweep report as a table, Markdown, CSV
or JSON (HTML lives in html_report). Verdicts come first; every figure carries its unit and its
n; nothing here measures or stores anything."""

from __future__ import annotations

import csv
import io
import json

from tabulate import tabulate

from .analysis import (
    OBJECTIVE_NAMES,
    TEMPERATURE_NOTE,
    SweepAnalysis,
    SweepCase,
    TargetVerdict,
    analyse_sweep,
    label,
)
from .stats import MIN_UNITS_FOR_INTERVAL, RatioEstimate, Summary


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
    plan, settings = analysis.state["plan"], analysis.settings
    mode = "fixed length, EOS ignored" if settings["fixed_length"] else "natural length, stops at EOS"
    sampling = "greedy" if settings["temp"] == 0 else f"temperature {settings['temp']:g}"
    return (f"k in {plan['num_draft_tokens']}, max {settings['max_tokens']} tokens ({mode}), {settings['runs']} "
            f"pass(es) x {len(plan['prompts'])} prompt(s), warmup {settings['warmup']}, {sampling}, "
            f"seed {settings['seed']}")


def objective_text(analysis: SweepAnalysis) -> str:
    if analysis.objective == "decode":
        return "decode speed (tokens after the first verify round; time to first token left out)"
    plan, settings = analysis.state["plan"], analysis.settings
    return (f"end-to-end time of this workload ({len(plan['prompts'])} prompt(s), up to {settings['max_tokens']} "
            "tokens each, time to first token included)")


def verdict_lines(verdict: TargetVerdict, analysis: SweepAnalysis, markdown: bool = False,
                  named: bool = True) -> list[str]:
    """A target's verdict: the setup, its figures, ties, the other objective, the commands."""
    name = f"- {label(verdict.target)}: " if named else ""
    if verdict.verdict is None:
        return [f"{name}not measured"]
    v = verdict.verdict
    lines = [f"{name}{v.verdict.upper()}: {v.reason}"]
    case = verdict.chosen or verdict.leader
    if case is not None:
        comparison = case.comparison
        lines.append(f"    {case.label}: end to end {format_estimate(comparison.e2e_speedup)}; "
                     f"decode {format_estimate(comparison.decode_speedup)} (each on its own, not widened)")
    if v.verdict == "inconclusive" and v.more_units_needed and v.estimate:
        prompts = max(len(analysis.state["plan"]["prompts"]), 1)
        runs = -(-(v.estimate.n + v.more_units_needed) // prompts)
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


def _setup(verdict: TargetVerdict):
    return (verdict.chosen.draft, verdict.chosen.num_draft_tokens) if verdict.chosen else None


def render_pair(state: dict, objective: str = "e2e") -> str:
    """The compact human block printed by `mlxdraft pair` (a results file of one group)."""
    analysis = analyse_sweep(state, objective)
    target = analysis.targets[0]
    models = state.get("models", {})
    verdict = analysis.verdict(target)
    cases = analysis.measured(target)
    if not cases:
        return "No speculative runs were measured."
    case = verdict.chosen or verdict.leader or cases[0]
    c = case.comparison
    baseline = analysis.baselines.get((target, case.draft), {})
    histogram = "  ".join(f"{n}:{count}" for n, count in enumerate(c.accepted_length_counts))
    partial = f"; {c.partial_rounds} partial round(s) cut by max-tokens or EOS left out" if c.partial_rounds else ""
    alone = analysis.alone_peak_memory_gb(target)
    peak = c.speculative_peak_memory_gb
    if alone is not None and peak:
        memory = (f"target alone {alone:.2f} GB; with the draft {peak.max:.2f} GB "
                  f"({peak.max - alone:+.2f} GB for the draft)")
    else:
        memory = f"with the draft {format_summary(peak, 'GB', 2, outliers=False)}"
    rows = [
        ("Target", _model_line(models.get(target, {"name": target}))),
        ("Draft", _model_line(models.get(case.draft, {"name": case.draft}))),
        ("Settings", settings_text(analysis)),
        ("Objective", objective_text(analysis)),
        ("Verdict", "\n".join(line.strip() for line in verdict_lines(verdict, analysis, named=False))),
        ("Shown", f"k={case.num_draft_tokens}"),
        ("Baseline", f"decode {format_summary(baseline.get('decode_tps'), 'tok/s')}; "
                     f"end to end {format_summary(baseline.get('e2e_tps'), 'tok/s')}"),
        ("Speculative", f"decode {format_summary(c.speculative_decode_tps, 'tok/s')}; "
                        f"end to end {format_summary(c.speculative_e2e_tps, 'tok/s')}"),
        ("Speedup", f"end to end {format_estimate(c.e2e_speedup)}; decode {format_estimate(c.decode_speedup)}"),
        ("Acceptance", format_summary(c.acceptance_rate, "%", scale=100) + " of proposed draft tokens accepted"),
        ("Draft share", format_summary(c.draft_token_share, "%", scale=100) + " of emitted tokens came from the draft"),
        ("Tokens/round", format_summary(c.tokens_per_round, "tokens", digits=2) + " per complete verify round"
         + partial),
        ("Accepted/round", f"{histogram}   (accepted drafts: number of complete verify rounds)"),
        ("TTFT", f"baseline {format_summary(c.baseline_ttft_s, 's', digits=3)}; "
                 f"speculative {format_summary(c.speculative_ttft_s, 's', digits=3)}"),
        ("Peak memory", memory),
        ("Lossless", format_lossless(case)),
    ]
    if analysis.settings["temp"] > 0:
        rows.append(("Note", TEMPERATURE_NOTE))
    width = max(len(name) for name, _ in rows)
    lines = []
    for name, value in rows:
        first, *rest = value.split("\n")
        lines.append(f"{name.ljust(width)}  {first}")
        lines += [" " * (width + 2) + line for line in rest]
    if len(cases) > 1:
        table = [(f"k={x.num_draft_tokens}", format_cell(x.comparison.e2e_speedup),
                  format_cell(x.comparison.decode_speedup), _percent(x.comparison.acceptance_rate),
                  _number(x.comparison.tokens_per_round, 2)) for x in cases]
        lines += ["", tabulate(table, headers=["k", "end-to-end speedup", "decode speedup", "acceptance",
                                               "tokens/round"], disable_numparse=True)]
    if c.per_category:
        table = [(category, format_cell(values["e2e_speedup"]), format_cell(values["decode_speedup"]),
                  _percent(values["acceptance_rate"])) for category, values in c.per_category.items()]
        lines += ["", f"Per category (k={case.num_draft_tokens}):",
                  tabulate(table, headers=["category", "end-to-end speedup", "decode speedup", "acceptance"],
                           disable_numparse=True)]
    return "\n".join(lines)


def _percent(summary: Summary | None) -> str:
    return "n/a" if not summary else f"{summary.mean * 100:.0f}%"


def _number(summary: Summary | None, digits: int = 1) -> str:
    return "n/a" if not summary else f"{summary.mean:.{digits}f}"


# ---------------------------------------------------------------------------------------------
# Sweep reports

FORMATS = ("table", "markdown", "csv", "json", "html")
METRICS = ("speedup", "acceptance", "tokens-per-round")
SPEEDUP_TITLES = {"e2e": "End-to-end speedup", "decode": "Decode speedup"}
METRIC_TITLES = {"speedup": "Speedup", "acceptance": "Acceptance rate",
                 "tokens-per-round": "Tokens per complete verify round"}


def _cell(analysis: SweepAnalysis, target: str, draft: str, metric: str, objective: str) -> str:
    status = analysis.statuses.get((target, draft))
    if status is None:
        return ""
    case = analysis.best_k(target, draft, objective)
    if case is None:
        return {"skipped": "skipped", "failed": "failed", "pending": "not run"}.get(status, "n/a")
    comparison = case.comparison
    if metric == "speedup":
        text = f"{format_cell(analysis.best_k_estimate(target, draft, objective))} k={case.num_draft_tokens}"
        return text + (" (output differs)" if comparison.lossless.identical is False else "")
    if metric == "acceptance":
        return f"{_percent(comparison.acceptance_rate)} k={case.num_draft_tokens}"
    return f"{_number(comparison.tokens_per_round, 2)} k={case.num_draft_tokens}"


def matrix(analysis: SweepAnalysis, metric: str, objective: str | None = None) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): drafts as rows, targets as columns, cells at each pair's best k."""
    objective = objective or analysis.objective
    headers = ["draft \\ target"] + [label(t) for t in analysis.targets]
    rows = [[label(draft)] + [_cell(analysis, target, draft, metric, objective) for target in analysis.targets]
            for draft in analysis.drafts]
    return headers, rows


def baseline_matrix(analysis: SweepAnalysis) -> tuple[list[str], list[list[str]]]:
    """Each pair's own baseline (decode / end-to-end tok/s), in the cell of that pair."""
    headers = ["draft \\ target"] + [label(t) for t in analysis.targets]
    rows = []
    for draft in analysis.drafts:
        row = [label(draft)]
        for target in analysis.targets:
            figures = analysis.baselines.get((target, draft))
            decode, e2e = (figures or {}).get("decode_tps"), (figures or {}).get("e2e_tps")
            row.append(f"{decode.mean:.1f} / {e2e.mean:.1f}" if decode and e2e else "")
        rows.append(row)
    return headers, rows


def problem_lines(analysis: SweepAnalysis) -> list[str]:
    return [f"{label(r['target'])} + {label(r['draft']) if r['draft'] else '(baseline)'}: "
            f"{r['status']}: {r['reason']}" for r in analysis.problems()]


def header_lines(analysis: SweepAnalysis) -> list[str]:
    state = analysis.state
    machine = state.get("machine", {})
    versions = state.get("versions", {})
    lines = [
        f"Machine: {machine.get('chip')}, {machine.get('memory_gb') or 0:.0f} GB RAM, {machine.get('os')}; "
        f"mlx {versions.get('mlx')}, mlx-lm {versions.get('mlx-lm')}, mlxdraft {versions.get('mlxdraft')}",
        f"Settings: {settings_text(analysis)}, memory budget {state['plan'].get('memory_budget_gb', 0):.1f} GB",
        f"Objective: {objective_text(analysis)}",
        "Speedup = geometric mean over prompts of speculative / baseline speed, each prompt measured back to "
        f"back; [95% interval]; '?' marks an interval that spans 1.0; no interval below {MIN_UNITS_FOR_INTERVAL} "
        "runs. At a pair's best k the interval is widened for the k values tried, and a verdict's for every "
        "setup compared, so choosing the best does not overstate it.",
    ]
    if analysis.settings["temp"] > 0:
        lines.append(f"Note: {TEMPERATURE_NOTE}.")
    return lines


def render_sweep(state: dict, fmt: str = "table", metric: str = "speedup", objective: str = "e2e") -> str:
    """A results file rendered in one of FORMATS; statistics are derived here, once."""
    if fmt not in FORMATS:
        raise ValueError(fmt)
    analysis = analyse_sweep(state, objective)
    if fmt == "json":
        return json.dumps(_sweep_json(analysis), indent=2, allow_nan=False)
    if fmt == "csv":
        return _sweep_csv(analysis)
    if fmt == "html":
        from .html_report import render_html

        return render_html(analysis)
    markdown = fmt == "markdown"
    table_format = "github" if markdown else "simple"
    section = (lambda title: ["", f"## {title}", ""]) if markdown else (lambda title: ["", f"{title}:"])
    lines = (["# mlxdraft sweep", ""] + [f"- {line}" for line in header_lines(analysis)]) if markdown \
        else header_lines(analysis)
    lines += section(f"Verdict per target (objective: {OBJECTIVE_NAMES[analysis.objective]})")
    for verdict in analysis.verdicts():
        lines += verdict_lines(verdict, analysis, markdown)
    if metric == "speedup":
        other = "decode" if analysis.objective == "e2e" else "e2e"
        tables = [(f"{SPEEDUP_TITLES[analysis.objective]} at each pair's best k "
                   "(rows: drafts, columns: targets)", matrix(analysis, metric)),
                  (f"{SPEEDUP_TITLES[other]} at each pair's best k",
                   matrix(analysis, metric, other)),
                  ("Baseline tok/s measured beside each pair (decode / end to end)", baseline_matrix(analysis))]
    else:
        tables = [(f"{METRIC_TITLES[metric]} at each pair's best k (rows: drafts, columns: targets)",
                   matrix(analysis, metric))]
    for title, (headers, rows) in tables:
        lines += section(title)
        lines.append(tabulate(rows, headers=headers, tablefmt=table_format, disable_numparse=True))
    problems = problem_lines(analysis)
    if problems:
        lines += section("Skipped or failed")
        lines += [f"- {p}" for p in problems]
    return "\n".join(lines)


def _sweep_json(analysis: SweepAnalysis) -> dict:
    state = analysis.state
    return {
        "schema_version": state["schema_version"],
        "kind": "report",  # a rendering, not measurements: `report -o` may replace it
        "results_kind": state.get("kind"),
        "machine": state.get("machine"),
        "versions": state.get("versions"),
        "plan": state["plan"],
        "models": state.get("models", {}),
        "objective": analysis.objective,
        "verdicts": [v.to_dict() for v in analysis.verdicts()],
        "baselines": [{"target": t, "draft": d, "decode_tps": b["decode_tps"].to_dict() if b["decode_tps"] else None,
                       "e2e_tps": b["e2e_tps"].to_dict() if b["e2e_tps"] else None,
                       "target_alone_peak_memory_gb": analysis.alone_peak_memory_gb(t)}
                      for (t, d), b in analysis.baselines.items()],
        "cases": [
            {"target": c.target, "draft": c.draft, "num_draft_tokens": c.num_draft_tokens, "status": c.status,
             "reason": c.reason, "summary": c.comparison.to_dict() if c.comparison else None}
            for c in analysis.cases
        ],
    }


CSV_COLUMNS = [
    "target", "draft", "num_draft_tokens", "status", "reason", "units",
    "e2e_speedup", "e2e_speedup_low", "e2e_speedup_high",
    "decode_speedup", "decode_speedup_low", "decode_speedup_high",
    "baseline_decode_tps", "speculative_decode_tps", "baseline_e2e_tps", "speculative_e2e_tps",
    "acceptance_rate", "draft_token_share", "tokens_per_round", "partial_rounds", "lossless",
    "target_alone_peak_memory_gb", "speculative_peak_memory_gb",
]


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _sweep_csv(analysis: SweepAnalysis) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for case in analysis.cases:
        c = case.comparison
        mean = lambda s: _fmt(s.mean if s else None)  # noqa: E731
        estimate = lambda e: [_fmt(e.geomean), _fmt(e.low), _fmt(e.high)] if e else ["", "", ""]  # noqa: E731
        writer.writerow([
            case.target, case.draft or "", case.num_draft_tokens or "", case.status, case.reason or "",
            c.units if c else 0,
            *estimate(c and c.e2e_speedup), *estimate(c and c.decode_speedup),
            mean(c and c.baseline_decode_tps), mean(c and c.speculative_decode_tps),
            mean(c and c.baseline_e2e_tps), mean(c and c.speculative_e2e_tps),
            mean(c and c.acceptance_rate), mean(c and c.draft_token_share), mean(c and c.tokens_per_round),
            c.partial_rounds if c else "",
            "" if not c or c.lossless.identical is None else str(c.lossless.identical).lower(),
            _fmt(analysis.alone_peak_memory_gb(case.target)),
            _fmt(c.speculative_peak_memory_gb.max if c and c.speculative_peak_memory_gb else None),
        ])
    return buffer.getvalue()
