"""The sweep report as one self-contained HTML page: speedup heatmaps per k, acceptance and
tokens-per-round matrices, and a speedup-versus-memory chart in inline SVG. No scripts, no
external resources; every name is escaped."""

from __future__ import annotations

import html

from .analysis import SweepAnalysis, label
from .report import METRIC_TITLES, header_lines, matrix, problem_lines, recommendation_text

STYLE = ("body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}.muted{color:#888}"
         "pre{background:#f4f4f4;padding:4px;white-space:pre-wrap}")


def _color(ratio: float) -> str:
    """Red below 1x, white at 1x, green above; saturating at 0.5x and 2x."""
    if ratio >= 1:
        t = min((ratio - 1) / 1.0, 1.0)
        return f"rgb({int(255 - 155 * t)},{int(255 - 35 * t)},{int(255 - 155 * t)})"
    t = min((1 - ratio) / 0.5, 1.0)
    return f"rgb(255,{int(255 - 155 * t)},{int(255 - 155 * t)})"


def _heatmap(analysis: SweepAnalysis, k: int | None) -> str:
    """Speedups coloured by value: at one k, or (k None) at each pair's best k."""
    targets, drafts = analysis.targets, analysis.drafts
    by_pair = {}
    for case in analysis.cases:
        if case.draft and case.comparison and case.comparison.speedup and (k is None or case.num_draft_tokens == k):
            by_pair[(case.target, case.draft)] = case
    if k is None:
        by_pair = analysis.best
    statuses = analysis.statuses
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


def _table(headers: list[str], rows: list[list[str]]) -> str:
    esc = html.escape
    lines = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>"]
    for row in rows:
        lines.append(f"<tr><th>{esc(row[0])}</th>" + "".join(f"<td>{esc(c)}</td>" for c in row[1:]) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _memory_chart(analysis: SweepAnalysis) -> str:
    """Inline SVG: each pair at its best k, speedup against peak memory."""
    points = []
    for (target, draft), case in analysis.best.items():
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


def render_html(analysis: SweepAnalysis) -> str:
    """One self-contained page: no scripts, no external resources, every name escaped."""
    esc = html.escape
    sections = ["<h2>Best k per pair</h2>", _heatmap(analysis, None)]
    for k in analysis.state["plan"]["num_draft_tokens"]:
        sections += [f"<h2>k = {k} draft tokens</h2>", _heatmap(analysis, k)]
    for metric in ("acceptance", "tokens-per-round"):
        headers, rows = matrix(analysis, metric)
        sections += [f"<h2>{METRIC_TITLES[metric]} (at each pair's best k)</h2>", _table(headers, rows)]
    sections += ["<h2>Speedup versus peak memory (best k per pair)</h2>", _memory_chart(analysis)]
    problems = problem_lines(analysis)
    if problems:
        sections += ["<h2>Skipped or failed</h2><ul>"] + [f"<li>{esc(p)}</li>" for p in problems] + ["</ul>"]
    sections.append("<h2>Best setup per target</h2><ul>")
    for recommendation in analysis.recommendations():
        commands = "".join(f"<pre>{esc(c)}</pre>" for c in recommendation.commands)
        sections.append(f"<li>{esc(label(recommendation.target))}: {esc(recommendation_text(recommendation))}"
                        f"{commands}</li>")
    sections.append("</ul>")
    header = "".join(f"<p>{esc(line)}</p>" for line in header_lines(analysis.state))
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>mlxdraft sweep</title>"
            f"<style>{STYLE}</style></head><body><h1>mlxdraft sweep</h1>{header}\n"
            + "\n".join(sections) + "\n</body></html>\n")
