"""Rendering results for people: the `pair` block, and the sweep report in its formats.
Every figure shown carries its unit; nothing here measures or stores anything."""

from __future__ import annotations

import csv
import html
import io
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from .results import sample_from_dict
from .stats import Comparison, Speedup, Summary, compare, summarize


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


def mlx_lm_commands(target: dict, draft: dict, num_draft_tokens: int) -> list[str]:
    """Commands that use this setup with mlx-lm itself."""
    model = shlex.quote(target.get("repo_id") or target["path"])
    draft_model = shlex.quote(draft.get("repo_id") or draft["path"])
    return [
        f"mlx_lm.generate --model {model} --draft-model {draft_model} "
        f"--num-draft-tokens {num_draft_tokens} --prompt 'Hello'",
        f"mlx_lm.server --model {model} --draft-model {draft_model} --num-draft-tokens {num_draft_tokens}",
    ]


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


@dataclass
class SweepCase:
    """One (target, draft, k) of a sweep, with its statistics when it was measured."""

    target: str
    draft: str | None
    num_draft_tokens: int | None
    status: str  # done, pending, skipped, failed
    reason: str | None
    comparison: Comparison | None


def sweep_cases(state: dict) -> list[SweepCase]:
    settings = state["plan"]["settings"]
    greedy = settings["temp"] == 0
    cases = []
    for record in state["groups"].values():
        samples = [sample_from_dict(s) for s in record["samples"]]
        baseline = [s for s in samples if s.is_baseline]
        if record["draft"] is None:
            cases.append(SweepCase(record["target"], None, None, record["status"], record["reason"], None))
            continue
        for k in state["plan"]["num_draft_tokens"]:
            speculative = [s for s in samples if s.num_draft_tokens == k]
            comparison = None
            if speculative and baseline:
                comparison = compare(baseline, speculative, k, greedy, settings["seed"])
            cases.append(SweepCase(record["target"], record["draft"], k, record["status"], record["reason"],
                                   comparison))
    return cases


def baseline_tps(state: dict) -> dict[str, object]:
    """Target name -> Summary of baseline decode tok/s pooled over all its groups."""
    pooled: dict[str, list[float]] = {}
    for record in state["groups"].values():
        values = pooled.setdefault(record["target"], [])
        values += [s["decode_tps"] for s in record["samples"] if s["num_draft_tokens"] == 0]
    return {target: summarize(values) for target, values in pooled.items()}


def best_cases(cases: list[SweepCase]) -> dict[tuple[str, str], SweepCase]:
    """(target, draft) -> the case with the highest mean speedup."""
    best: dict[tuple[str, str], SweepCase] = {}
    for case in cases:
        if case.draft is None or not case.comparison or not case.comparison.speedup:
            continue
        key = (case.target, case.draft)
        if key not in best or case.comparison.speedup.ratio > best[key].comparison.speedup.ratio:
            best[key] = case
    return best


def label(name: str) -> str:
    """Short display name: model lists' short names and repo ids as they are, folders by name."""
    return Path(name).name if name.startswith(("/", ".", "~")) else name


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


def _matrix(state: dict, metric: str):
    """(headers, rows): drafts as rows, targets as columns, cells at each pair's best k."""
    cases = sweep_cases(state)
    best = best_cases(cases)
    statuses = {(r["target"], r["draft"]): r["status"] for r in state["groups"].values()}
    targets = state["plan"]["targets"]
    drafts = state["plan"]["drafts"]
    baselines = baseline_tps(state)
    headers = ["draft \\ target"] + [label(t) for t in targets]
    rows = [["baseline tok/s"] + [
        f"{baselines[t].mean:.1f} ±{baselines[t].stdev:.1f}" if baselines.get(t) else "n/a" for t in targets
    ]]
    for draft in drafts:
        row = [label(draft)]
        for target in targets:
            status = statuses.get((target, draft))
            row.append("" if status is None else _cell(best.get((target, draft)), status, metric))
        rows.append(row)
    return headers, rows


def recommendations(state: dict) -> list[dict]:
    """Per target: the best measured setup, with the commands that use it in mlx-lm."""
    best = best_cases(sweep_cases(state))
    models = state.get("models", {})
    out = []
    for target in state["plan"]["targets"]:
        candidates = [case for (t, _), case in best.items() if t == target]
        if not candidates:
            out.append({"target": target, "best": None, "text": "no measured draft"})
            continue
        case = max(candidates, key=lambda c: c.comparison.speedup.ratio)
        speedup = case.comparison.speedup
        entry = {"target": target, "draft": case.draft, "num_draft_tokens": case.num_draft_tokens,
                 "speedup": speedup.to_dict(), "lossless": case.comparison.lossless.identical}
        if speedup.ratio <= 1.0:
            entry["text"] = (f"no draft beat the baseline (best: {label(case.draft)} at k={case.num_draft_tokens}, "
                             f"{speedup.ratio:.2f}x); run without speculative decoding")
            entry["commands"] = []
        else:
            entry["text"] = (f"{label(case.draft)} with k={case.num_draft_tokens}: "
                             f"{format_speedup(speedup)} in decode tok/s")
            entry["commands"] = mlx_lm_commands(
                models.get(target, {"path": target}), models.get(case.draft, {"path": case.draft}),
                case.num_draft_tokens)
        out.append(entry)
    return out


def _problems(state: dict) -> list[str]:
    return [f"{label(r['target'])} + {label(r['draft']) if r['draft'] else '(baseline)'}: "
            f"{r['status']}: {r['reason']}"
            for r in state["groups"].values() if r["status"] in ("skipped", "failed")]


def _header_lines(state: dict) -> list[str]:
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
    if fmt not in FORMATS:
        raise ValueError(fmt)
    if fmt == "json":
        return json.dumps(_sweep_json(state), indent=2)
    if fmt == "csv":
        return _sweep_csv(state)
    if fmt == "html":
        return render_html(state)
    headers, rows = _matrix(state, metric)
    tablefmt = "github" if fmt == "markdown" else "simple"
    title = {"speedup": "Speedup", "acceptance": "Acceptance rate",
             "tokens-per-round": "Tokens per verify round"}[metric]
    lines = []
    if fmt == "markdown":
        lines += ["# mlxdraft sweep", ""] + [f"- {line}" for line in _header_lines(state)] + ["", f"## {title}", ""]
    else:
        lines += _header_lines(state) + ["", f"{title} (rows: drafts, columns: targets)"]
    lines.append(tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True))
    problems = _problems(state)
    if problems:
        lines += ["", "## Skipped or failed" if fmt == "markdown" else "Skipped or failed:"]
        lines += [f"- {p}" for p in problems]
    lines += ["", "## Best setup per target" if fmt == "markdown" else "Best setup per target:"]
    for rec in recommendations(state):
        lines.append(f"- {label(rec['target'])}: {rec['text']}")
        for command in rec.get("commands", []):
            lines.append(f"    {command}" if fmt != "markdown" else f"  `{command}`")
    return "\n".join(lines)


def _case_dict(case: SweepCase) -> dict:
    return {"target": case.target, "draft": case.draft, "num_draft_tokens": case.num_draft_tokens,
            "status": case.status, "reason": case.reason,
            "summary": case.comparison.to_dict() if case.comparison else None}


def _sweep_json(state: dict) -> dict:
    return {
        "schema_version": state["schema_version"],
        "machine": state.get("machine"),
        "versions": state.get("versions"),
        "plan": state["plan"],
        "baseline_decode_tps": {t: s.to_dict() if s else None for t, s in baseline_tps(state).items()},
        "cases": [_case_dict(c) for c in sweep_cases(state)],
        "recommendations": recommendations(state),
    }


CSV_COLUMNS = [
    "target", "draft", "num_draft_tokens", "status", "reason", "baseline_tps_mean", "baseline_tps_stdev",
    "speculative_tps_mean", "speculative_tps_stdev", "speedup", "speedup_stdev", "speedup_ci_low",
    "speedup_ci_high", "acceptance_rate", "draft_token_share", "tokens_per_round", "lossless",
    "speculative_peak_memory_gb", "runs",
]


def _sweep_csv(state: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for case in sweep_cases(state):
        c = case.comparison
        mean = lambda s: "" if s is None else f"{s.mean:.6g}"  # noqa: E731
        stdev = lambda s: "" if s is None else f"{s.stdev:.6g}"  # noqa: E731
        sp = c.speedup if c else None
        writer.writerow([
            case.target, case.draft or "", case.num_draft_tokens or "", case.status, case.reason or "",
            mean(c and c.baseline_decode_tps), stdev(c and c.baseline_decode_tps),
            mean(c and c.speculative_decode_tps), stdev(c and c.speculative_decode_tps),
            f"{sp.ratio:.6g}" if sp else "", f"{sp.stdev:.6g}" if sp else "",
            f"{sp.ci_low:.6g}" if sp and sp.ci_low is not None else "",
            f"{sp.ci_high:.6g}" if sp and sp.ci_high is not None else "",
            mean(c and c.acceptance_rate), mean(c and c.draft_token_share), mean(c and c.tokens_per_round),
            "" if not c or c.lossless.identical is None else str(c.lossless.identical).lower(),
            mean(c and c.speculative_peak_memory_gb),
            c.speculative_decode_tps.n if c and c.speculative_decode_tps else 0,
        ])
    return buffer.getvalue()


def _color(ratio: float) -> str:
    """Red below 1x, white at 1x, green above; saturating at 0.5x and 2x."""
    if ratio >= 1:
        t = min((ratio - 1) / 1.0, 1.0)
        return f"rgb({int(255 - 155 * t)},{int(255 - 35 * t)},{int(255 - 155 * t)})"
    t = min((1 - ratio) / 0.5, 1.0)
    return f"rgb(255,{int(255 - 155 * t)},{int(255 - 155 * t)})"


def _html_heatmap(state: dict, k: int | None, cases: list[SweepCase]) -> str:
    targets, drafts = state["plan"]["targets"], state["plan"]["drafts"]
    by_pair = {}
    for case in cases:
        if case.draft and case.comparison and case.comparison.speedup and (k is None or case.num_draft_tokens == k):
            by_pair[(case.target, case.draft)] = case
    if k is None:
        by_pair = best_cases(cases)
    statuses = {(r["target"], r["draft"]): r["status"] for r in state["groups"].values()}
    esc = html.escape
    out = ["<table><tr><th>draft \\ target</th>" + "".join(f"<th>{esc(label(t))}</th>" for t in targets) + "</tr>"]
    for draft in drafts:
        cells = []
        for target in targets:
            case = by_pair.get((target, draft))
            if case:
                sp = case.comparison.speedup
                text = f"{sp.ratio:.2f}x ±{sp.stdev:.2f}" + (f" k={case.num_draft_tokens}" if k is None else "")
                cells.append(f'<td style="background:{_color(sp.ratio)}">{esc(text)}</td>')
            else:
                cells.append(f"<td class=muted>{esc(statuses.get((target, draft)) or '')}</td>")
        out.append(f"<tr><th>{esc(label(draft))}</th>{''.join(cells)}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    esc = html.escape
    lines = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>"]
    for row in rows:
        lines.append(f"<tr><th>{esc(row[0])}</th>" + "".join(f"<td>{esc(c)}</td>" for c in row[1:]) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _html_memory_chart(state: dict, cases: list[SweepCase]) -> str:
    points = []
    for (target, draft), case in best_cases(cases).items():
        memory = case.comparison.speculative_peak_memory_gb
        if memory:
            points.append((memory.mean, case.comparison.speedup.ratio, f"{label(draft)} → {label(target)}"
                           f" k={case.num_draft_tokens}"))
    if not points:
        return "<p>No measured pairs.</p>"
    width, height, pad, right = 820, 380, 56, 200  # room on the right for point labels
    max_x = max(p[0] for p in points) * 1.1 or 1
    max_y = max(max(p[1] for p in points) * 1.1, 1.2)
    sx = lambda x: pad + x / max_x * (width - pad - right)  # noqa: E731
    sy = lambda y: height - pad - y / max_y * (height - 2 * pad)  # noqa: E731
    esc = html.escape
    axis_end = width - right
    parts = [f'<svg width="{width}" height="{height}" role="img">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{axis_end}" y2="{height - pad}" stroke="#333"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#333"/>',
             f'<line x1="{pad}" y1="{sy(1):.1f}" x2="{axis_end}" y2="{sy(1):.1f}" stroke="#999" '
             'stroke-dasharray="4"/>',
             f'<text x="{(pad + axis_end) / 2}" y="{height - 12}" text-anchor="middle">peak memory (GB)</text>',
             f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" '
             'text-anchor="middle">speedup (x)</text>',
             f'<text x="{pad - 6}" y="{sy(1) + 4:.1f}" text-anchor="end">1x</text>',
             f'<text x="{pad - 6}" y="{sy(0) + 4:.1f}" text-anchor="end">0x</text>',
             f'<text x="{pad}" y="{height - pad + 16}" text-anchor="middle">0</text>',
             f'<text x="{axis_end}" y="{height - pad + 16}" text-anchor="end">{max_x:.3g}</text>']
    for x, y, name in points:
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="{_color(y)}" stroke="#333">'
                     f"<title>{esc(name)}: {y:.2f}x at {x:.2f} GB</title></circle>")
        parts.append(f'<text x="{sx(x) + 7:.1f}" y="{sy(y) - 7:.1f}" font-size="11">{esc(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def render_html(state: dict) -> str:
    """One self-contained page: no scripts, no external resources, every name escaped."""
    esc = html.escape
    cases = sweep_cases(state)
    sections = ["<h2>Best k per pair</h2>", _html_heatmap(state, None, cases)]
    for k in state["plan"]["num_draft_tokens"]:
        sections += [f"<h2>k = {k} draft tokens</h2>", _html_heatmap(state, k, cases)]
    for metric, title in (("acceptance", "Acceptance rate"), ("tokens-per-round", "Tokens per verify round")):
        headers, rows = _matrix(state, metric)
        sections += [f"<h2>{title} (at each pair's best k)</h2>", _html_table(headers, rows)]
    sections += ["<h2>Speedup versus peak memory (best k per pair)</h2>", _html_memory_chart(state, cases)]
    problems = _problems(state)
    if problems:
        sections += ["<h2>Skipped or failed</h2><ul>"] + [f"<li>{esc(p)}</li>" for p in problems] + ["</ul>"]
    sections.append("<h2>Best setup per target</h2><ul>")
    for rec in recommendations(state):
        commands = "".join(f"<pre>{esc(c)}</pre>" for c in rec.get("commands", []))
        sections.append(f"<li>{esc(label(rec['target']))}: {esc(rec['text'])}{commands}</li>")
    sections.append("</ul>")
    header = "".join(f"<p>{esc(line)}</p>" for line in _header_lines(state))
    style = ("body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}.muted{color:#888}"
             "pre{background:#f4f4f4;padding:4px;white-space:pre-wrap}")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>mlxdraft sweep</title>"
            f"<style>{style}</style></head><body><h1>mlxdraft sweep</h1>{header}\n"
            + "\n".join(sections) + "\n</body></html>\n")
