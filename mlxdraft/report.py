"""Rendering results as text: the `pair` block, and the sweep report as a table, Markdown, CSV
or JSON (HTML lives in html_report). Every figure shown carries its unit; nothing here
measures or stores anything."""

from __future__ import annotations

import csv
import io
import json

from tabulate import tabulate

from .analysis import Recommendation, SweepAnalysis, SweepCase, analyse_sweep, label, mlx_lm_commands
from .stats import Comparison, Speedup, Summary


def format_summary(summary: Summary | None, unit: str = "", digits: int = 1, scale: float = 1.0) -> str:
    """'12.3 ± 0.4 tok/s (11.9 … 12.8, n=12)'."""
    if summary is None:
        return "n/a"
    unit = f" {unit}" if unit else ""
    text = (
        f"{summary.mean * scale:.{digits}f} ± {summary.stdev * scale:.{digits}f}{unit} "
        f"({summary.min * scale:.{digits}f} … {summary.max * scale:.{digits}f}, n={summary.n})"
    )
    if summary.outliers:
        text += f", {summary.outliers} outlier{'s' if summary.outliers > 1 else ''}"
    return text


def format_speedup(speedup: Speedup | None, with_ci: bool = True) -> str:
    if speedup is None:
        return "n/a"
    text = f"{speedup.ratio:.2f}x ± {speedup.stdev:.2f}"
    if with_ci and speedup.ci_low is not None:
        text += f" (95% CI {speedup.ci_low:.2f} … {speedup.ci_high:.2f})"
    return text


def format_lossless(comparison: Comparison) -> str:
    lossless = comparison.lossless
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
    return (
        f"{record['name']} ({record.get('model_type')}, {record.get('precision')}, "
        f"{record.get('weights_gb', 0):.2f} GB of weights)"
    )


def render_pair(result) -> str:
    """The compact human block printed by `mlxdraft pair`."""
    comparison = result.comparison()
    settings = result.settings
    mode = "fixed length, EOS ignored" if settings.fixed_length else "natural length, stops at EOS"
    sampling = "greedy" if settings.temp == 0 else f"temperature {settings.temp}"
    histogram = "  ".join(f"{n}:{count}" for n, count in enumerate(comparison.accepted_length_counts))
    rows = [
        ("Target", _model_line(result.target)),
        ("Draft", _model_line(result.draft)),
        (
            "Settings",
            f"k={result.num_draft_tokens} draft tokens, max {settings.max_tokens} tokens ({mode}), "
            f"{settings.runs} pass(es) x {len(result.prompts)} prompt(s), warmup {settings.warmup}, "
            f"{sampling}, seed {settings.seed}",
        ),
        ("Baseline", "decode " + format_summary(comparison.baseline_decode_tps, "tok/s")),
        ("Speculative", "decode " + format_summary(comparison.speculative_decode_tps, "tok/s")),
        ("Speedup", format_speedup(comparison.speedup) + " in decode tok/s vs the baseline"),
        (
            "Acceptance",
            format_summary(comparison.acceptance_rate, "%", scale=100)
            + " of proposed draft tokens accepted",
        ),
        (
            "Draft share",
            format_summary(comparison.draft_token_share, "%", scale=100)
            + " of emitted tokens came from the draft",
        ),
        ("Tokens/round", format_summary(comparison.tokens_per_round, "tokens", digits=2)),
        ("Accepted/round", f"{histogram}   (accepted drafts: number of verify rounds)"),
        (
            "TTFT",
            f"baseline {format_summary(comparison.baseline_ttft_s, 's', digits=3)}; "
            f"speculative {format_summary(comparison.speculative_ttft_s, 's', digits=3)}",
        ),
        (
            "Peak memory",
            f"baseline {format_summary(comparison.baseline_peak_memory_gb, 'GB', digits=2)}; "
            f"speculative {format_summary(comparison.speculative_peak_memory_gb, 'GB', digits=2)}",
        ),
        ("Lossless", format_lossless(comparison)),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"{label.ljust(width)}  {value}" for label, value in rows]
    if comparison.per_category:
        table = [
            (
                category,
                format_speedup(_speedup_from(values["speedup"]), with_ci=False),
                _percent(values["acceptance_rate"]),
            )
            for category, values in comparison.per_category.items()
        ]
        lines += ["", tabulate(table, headers=["category", "speedup", "acceptance"], tablefmt="simple")]
    lines += ["", "Use it with mlx-lm:"] + [
        "  " + cmd for cmd in mlx_lm_commands(result.target, result.draft, result.num_draft_tokens)
    ]
    return "\n".join(lines)


def _speedup_from(data: dict | None) -> Speedup | None:
    return Speedup(**data) if data else None


def _percent(data: dict | None) -> str:
    return "n/a" if not data else f"{data['mean'] * 100:.0f}% ± {data['stdev'] * 100:.0f}"


# ---------------------------------------------------------------------------------------------
# Sweep reports

FORMATS = ("table", "markdown", "csv", "json", "html")
METRICS = ("speedup", "acceptance", "tokens-per-round")
METRIC_TITLES = {"speedup": "Speedup", "acceptance": "Acceptance rate",
                 "tokens-per-round": "Tokens per verify round"}


def _cell(case: SweepCase | None, record_status: str | None, metric: str) -> str:
    if case is None:
        return {"skipped": "skipped", "failed": "failed", "pending": "not run"}.get(record_status or "", "")
    comparison = case.comparison
    if metric == "speedup":
        text = f"{comparison.speedup.ratio:.2f}x ±{comparison.speedup.stdev:.2f} k={case.num_draft_tokens}"
        return text + (" (output differs)" if comparison.lossless.identical is False else "")
    if metric == "acceptance":
        value = comparison.acceptance_rate
        return "n/a" if value is None else f"{value.mean * 100:.0f}% k={case.num_draft_tokens}"
    value = comparison.tokens_per_round
    return "n/a" if value is None else f"{value.mean:.2f} k={case.num_draft_tokens}"


def matrix(analysis: SweepAnalysis, metric: str) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): drafts as rows, targets as columns, cells at each pair's best k; the first
    row is each target's baseline tok/s."""
    baselines = analysis.baselines
    headers = ["draft \\ target"] + [label(t) for t in analysis.targets]
    rows = [["baseline tok/s"] + [
        f"{baselines[t].mean:.1f} ±{baselines[t].stdev:.1f}" if baselines.get(t) else "n/a"
        for t in analysis.targets
    ]]
    for draft in analysis.drafts:
        row = [label(draft)]
        for target in analysis.targets:
            status = analysis.statuses.get((target, draft))
            row.append("" if status is None else _cell(analysis.best.get((target, draft)), status, metric))
        rows.append(row)
    return headers, rows


def problem_lines(analysis: SweepAnalysis) -> list[str]:
    return [f"{label(r['target'])} + {label(r['draft']) if r['draft'] else '(baseline)'}: "
            f"{r['status']}: {r['reason']}" for r in analysis.problems()]


def recommendation_text(recommendation: Recommendation) -> str:
    case = recommendation.case
    if case is None:
        return "no measured draft"
    speedup = case.comparison.speedup
    if not recommendation.beats_baseline:
        return (f"no draft beat the baseline (best: {label(case.draft)} at k={case.num_draft_tokens}, "
                f"{speedup.ratio:.2f}x); run without speculative decoding")
    return f"{label(case.draft)} with k={case.num_draft_tokens}: {format_speedup(speedup)} in decode tok/s"


def header_lines(state: dict) -> list[str]:
    plan = state["plan"]
    settings = plan["settings"]
    machine = state.get("machine", {})
    versions = state.get("versions", {})
    return [
        f"Machine: {machine.get('chip')}, {machine.get('memory_gb') or 0:.0f} GB RAM, {machine.get('os')}; "
        f"mlx {versions.get('mlx')}, mlx-lm {versions.get('mlx-lm')}, mlxdraft {versions.get('mlxdraft')}",
        f"Settings: k in {plan['num_draft_tokens']}, max {settings['max_tokens']} tokens "
        f"({'fixed length' if settings['fixed_length'] else 'natural'}), {settings['runs']} pass(es) x "
        f"{len(plan['prompts'])} prompt(s), warmup {settings['warmup']}, temp {settings['temp']}, "
        f"memory budget {plan['memory_budget_gb']:.1f} GB",
        "Speedup = speculative / baseline mean decode tok/s (± σ, relative errors in quadrature), "
        "at each pair's best k; '(output differs)' marks greedy output that was not identical.",
    ]


def render_sweep(state: dict, fmt: str = "table", metric: str = "speedup") -> str:
    """A sweep results file rendered in one of FORMATS; statistics are derived here, once."""
    if fmt not in FORMATS:
        raise ValueError(fmt)
    analysis = analyse_sweep(state)
    if fmt == "json":
        return json.dumps(_sweep_json(analysis), indent=2)
    if fmt == "csv":
        return _sweep_csv(analysis)
    if fmt == "html":
        from .html_report import render_html

        return render_html(analysis)
    headers, rows = matrix(analysis, metric)
    markdown = fmt == "markdown"
    title = METRIC_TITLES[metric]
    if markdown:
        lines = ["# mlxdraft sweep", ""] + [f"- {line}" for line in header_lines(state)] + ["", f"## {title}", ""]
    else:
        lines = header_lines(state) + ["", f"{title} (rows: drafts, columns: targets)"]
    lines.append(tabulate(rows, headers=headers, tablefmt="github" if markdown else "simple",
                          disable_numparse=True))
    problems = problem_lines(analysis)
    if problems:
        lines += ["", "## Skipped or failed" if markdown else "Skipped or failed:"]
        lines += [f"- {p}" for p in problems]
    lines += ["", "## Best setup per target" if markdown else "Best setup per target:"]
    for recommendation in analysis.recommendations():
        lines.append(f"- {label(recommendation.target)}: {recommendation_text(recommendation)}")
        for command in recommendation.commands:
            lines.append(f"  `{command}`" if markdown else f"    {command}")
    return "\n".join(lines)


def _sweep_json(analysis: SweepAnalysis) -> dict:
    state = analysis.state
    return {
        "schema_version": state["schema_version"],
        "machine": state.get("machine"),
        "versions": state.get("versions"),
        "plan": state["plan"],
        "baseline_decode_tps": {t: s.to_dict() if s else None for t, s in analysis.baselines.items()},
        "cases": [
            {"target": c.target, "draft": c.draft, "num_draft_tokens": c.num_draft_tokens, "status": c.status,
             "reason": c.reason, "summary": c.comparison.to_dict() if c.comparison else None}
            for c in analysis.cases
        ],
        "recommendations": [r.to_dict() for r in analysis.recommendations()],
    }


CSV_COLUMNS = [
    "target", "draft", "num_draft_tokens", "status", "reason", "baseline_tps_mean", "baseline_tps_stdev",
    "speculative_tps_mean", "speculative_tps_stdev", "speedup", "speedup_stdev", "speedup_ci_low",
    "speedup_ci_high", "acceptance_rate", "draft_token_share", "tokens_per_round", "lossless",
    "speculative_peak_memory_gb", "runs",
]


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _sweep_csv(analysis: SweepAnalysis) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for case in analysis.cases:
        c = case.comparison
        mean = lambda s: _number(s.mean if s else None)
        stdev = lambda s: _number(s.stdev if s else None)
        speedup = c.speedup if c else None
        writer.writerow([
            case.target, case.draft or "", case.num_draft_tokens or "", case.status, case.reason or "",
            mean(c and c.baseline_decode_tps), stdev(c and c.baseline_decode_tps),
            mean(c and c.speculative_decode_tps), stdev(c and c.speculative_decode_tps),
            _number(speedup and speedup.ratio), _number(speedup and speedup.stdev),
            _number(speedup and speedup.ci_low), _number(speedup and speedup.ci_high),
            mean(c and c.acceptance_rate), mean(c and c.draft_token_share), mean(c and c.tokens_per_round),
            "" if not c or c.lossless.identical is None else str(c.lossless.identical).lower(),
            mean(c and c.speculative_peak_memory_gb),
            c.speculative_decode_tps.n if c and c.speculative_decode_tps else 0,
        ])
    return buffer.getvalue()
