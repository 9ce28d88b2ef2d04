"""The sweep report as one self-contained HTML page: verdicts first, then how it was measured,
speedup heatmaps, the baselines, acceptance and tokens-per-round matrices, a speedup-versus-memory
chart in inline SVG, and what was skipped or failed. No scripts and no external resources; every
string that comes from a results file is escaped. Figures and wording come from `reports.common`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from ..accepted import MARK_CLASS, first_marked_sample, html_marked
from ..analysis import OBJECTIVE_NAMES, SweepAnalysis, SweepCase, TargetVerdict, label, setup_label
from ..crossengine import CROSS_HEADERS, cross_engine, cross_rows, cross_title
from ..errors import InvalidInputError
from ..stats import RatioEstimate
from .common import (
    CAUGHT_UP_TITLE,
    DEFINITIONS,
    METRIC_TITLES,
    PRUNED_MARK,
    PRUNED_TITLE,
    SETUPS_TITLE,
    SPEEDUP_TITLES,
    UNADJUSTED,
    baseline_matrix,
    caught_up_lines,
    cross_lines,
    evidence_lines,
    format_cell,
    format_estimate,
    header_lines,
    matrix,
    plain_sentence,
    problem_lines,
    pruned_lines,
    pruned_text,
    report_title,
    setup_headers,
    setup_rows,
    spans_one,
    verdict_reason,
    verdict_title,
)

STYLE = """
body{font-family:system-ui,-apple-system,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}
h1{margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}h3{margin:1.2em 0 .4em}
table{border-collapse:collapse;margin:.4em 0}
td,th{border:1px solid #ccc;padding:5px 9px;text-align:right;white-space:nowrap}
th{background:#f6f6f6;text-align:left}
td.status{color:#777;font-style:italic;text-align:center;background:#fafafa}
td.inconclusive,.swatch.inconclusive{outline:2px dashed #777;outline-offset:-4px;
 background-image:repeating-linear-gradient(45deg,rgba(0,0,0,.09) 0 3px,transparent 3px 8px)}
.legend{font-size:.9em;color:#444}
.swatch{display:inline-block;padding:2px 8px;border:1px solid #ccc;margin-right:.3em}
.verdict{border-left:6px solid #999;background:#f8f8f8;padding:.6em 1em;margin:.8em 0}
.verdict h3{margin:0 0 .3em}
.verdict .word{font-size:.8em;padding:2px 8px;border-radius:3px;color:#fff;background:#777;margin-left:.5em}
.verdict-speculative{border-color:#2e7d32}.verdict-speculative .word{background:#2e7d32}
.verdict-no-gain{border-color:#c62828}.verdict-no-gain .word{background:#c62828}
.verdict-inconclusive{border-color:#b26a00}.verdict-inconclusive .word{background:#b26a00}
.verdict ul{margin:.3em 0;padding-left:1.2em}
pre{background:#eee;padding:6px 8px;white-space:pre-wrap;margin:.3em 0}
.verdict .headline{font-size:1.1em;font-weight:600}
td.pruned{font-style:italic}
mark.accepted{background:#c8efc4;color:inherit;border-radius:2px}
pre.answer{background:#f7f7f7;border:1px solid #ddd}.term{font-weight:600}
svg text{font-size:12px;fill:#333}svg .tick{fill:#555}svg .point-label{font-size:11px}
"""

STATUS_TEXT = {"skipped": "skipped", "failed": "failed", "pending": "not run"}
GREEN, RED, WHITE = (99, 190, 123), (248, 105, 107), (255, 255, 255)
SATURATION = 2.0  # a speedup of 2x (or 1/2x) gets the full colour


def render_html(analysis: SweepAnalysis, metric: str = "speedup") -> str:
    """One self-contained page for a sweep, verdicts first."""
    sections = [
        _verdict_section(analysis),
        _cross_engine_section(analysis),
        _setup_section(analysis),
        _speedup_section(analysis),
        _text_section(SETUPS_TITLE, setup_headers(analysis), setup_rows(analysis), row_names=False)
        if setup_rows(analysis) else "",
        _text_section("Baseline tok/s measured beside each pair (decode / end to end)", *baseline_matrix(analysis)),
        *(_text_section(f"{METRIC_TITLES[metric]} at each pair's best k", *matrix(analysis, metric))
          for metric in ("acceptance", "tokens-per-round")),
        _chart_section(analysis),
        _answers_section(analysis),
        _pruned_section(analysis),
        _list_section("caught-up", CAUGHT_UP_TITLE, caught_up_lines(analysis)),
        _problem_section(analysis),
        _definitions_section(),
    ]
    title = escape(report_title(analysis))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{title}</title><style>{STYLE}</style></head>\n<body>\n<h1>{title}</h1>\n"
            + "\n".join(section for section in sections if section) + "\n</body></html>\n")


# --- sample answers -----------------------------------------------------------------------------


def _answers_section(analysis: SweepAnalysis) -> str:
    """Per target, one answer of the chosen setup (else of the fastest measured one) with the draft
    tokens the target accepted highlighted, from the token texts recorded while measuring."""
    blocks = []
    for verdict in analysis.verdicts():
        case = verdict.chosen or verdict.leader
        if case is None:
            continue
        try:
            picked = first_marked_sample(_case_samples(analysis, case))
        except InvalidInputError:  # token texts that do not match the tokens: show nothing rather than wrong marks
            picked = None
        if picked is None:
            continue
        sample, parts = picked
        role = "chosen setup" if verdict.chosen else "fastest setup measured"
        prompts = analysis.plan.prompts
        prompt = prompts[sample.prompt_index]["text"] if sample.prompt_index < len(prompts) else None
        figures = [f"{sample.generated_tokens} tokens"]
        if sample.acceptance_rate is not None:
            figures.append(f"acceptance {sample.acceptance_rate * 100:.0f}% ({sample.accepted_draft_tokens} of "
                           f"{sample.proposed_draft_tokens} proposed draft tokens)")
        if sample.draft_token_share is not None:
            figures.append(f"{sample.draft_token_share * 100:.0f}% of the tokens from the draft")
        blocks.append("".join([
            f"<h3>{escape(label(verdict.target))}: {escape(case.label)} ({role}), prompt "
            f"{sample.prompt_index + 1}</h3>",
            f"<p>Prompt: {escape(prompt)}</p>" if prompt else "",
            f'<pre class="answer">{html_marked(parts)}</pre>',
            f"<p>{escape('; '.join(figures))} (this one answer, pass {sample.pass_index + 1})</p>",
        ]))
    if not blocks:
        return ""
    return ('<section id="answers">\n<h2>Sample answers: the accepted draft tokens</h2>\n'
            f'<p>Highlighted: <mark class="{MARK_CLASS}">tokens the draft proposed and the target accepted</mark>; '
            "the rest the target produced itself.</p>\n" + "\n".join(blocks) + "\n</section>")


def _case_samples(analysis: SweepAnalysis, case: SweepCase) -> list:
    """The speculative runs of one (target, method, draft, k)."""
    return [sample for group in analysis.results.groups.values()
            if group.target == case.target and (group.draft == case.draft or analysis.results.kind == "pair")
            for sample in group.samples
            if sample.method == case.method and sample.num_draft_tokens == case.num_draft_tokens]


# --- verdicts and settings ----------------------------------------------------------------------


def _verdict_section(analysis: SweepAnalysis) -> str:
    title = verdict_title(analysis)
    blocks = [_verdict_block(verdict, analysis) for verdict in analysis.verdicts()]
    return f'<section id="verdicts">\n<h2>{escape(title)}</h2>\n' + "\n".join(blocks) + "\n</section>"


def _verdict_block(verdict: TargetVerdict, analysis: SweepAnalysis) -> str:
    """The verdict word styled by kind, the plain sentence, then the evidence of `evidence_lines`: the
    statistical reason, the figures and notes; the commands."""
    reason = verdict_reason(verdict, analysis)
    details = evidence_lines(verdict, analysis)[1 if verdict.verdict else 0:]
    kind = verdict.kind.replace(" ", "-")
    return "".join([
        f'<div class="verdict verdict-{escape(kind)}">',
        f'<h3>{escape(label(verdict.target))}<span class="word">{escape(verdict.kind.upper())}</span></h3>',
        f'<p class="headline">{escape(plain_sentence(verdict, analysis))}</p>',
        f'<p class="reason">{escape(reason)}</p>',
        "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in details) + "</ul>" if details else "",
        "".join(f"<pre>{escape(command)}</pre>" for command in verdict.commands),
        f'<p class="reason">{escape(verdict.commands_note)}</p>' if verdict.commands_note else "",
        "</div>",
    ])


def _cross_engine_section(analysis: SweepAnalysis) -> str:
    """Engines side by side (module `crossengine`), for a file that measured several; else nothing."""
    cross = cross_engine(analysis)
    if cross is None:
        return ""
    cells = [[f"<td>{escape(cell)}</td>" for cell in row] for row in cross_rows(cross)]
    items = "".join(f"<li>{escape(line)}</li>" for line in cross_lines(analysis, cross))
    return (f'<section id="engines">\n<h2>{escape(cross_title(cross))}</h2>\n{_table(CROSS_HEADERS, cells)}\n'
            f"<ul>{items}</ul>\n</section>")


def _setup_section(analysis: SweepAnalysis) -> str:
    items = "".join(f"<li>{escape(line)}</li>" for line in header_lines(analysis))
    return f'<section id="setup">\n<h2>How this was measured</h2>\n<ul>{items}</ul>\n</section>'


# --- tables --------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """A table from escaped header texts and rows of ready-made cell HTML."""
    head = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr>"
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _text_section(title: str, headers: list[str], rows: list[list[str]], row_names: bool = True) -> str:
    """A text matrix from `reports.common` (first column: row names, unless `row_names` is False)."""
    first = 1 if row_names else 0
    cells = [[f"<th>{escape(row[0])}</th>"] * first + [f"<td>{escape(cell)}</td>" for cell in row[first:]]
             for row in rows]
    return f"<section>\n<h2>{escape(title)}</h2>\n{_table(headers, cells)}\n</section>"


def _grid(analysis: SweepAnalysis, cell: Callable[[str, str, str | None], str]) -> str:
    """Setups (method and draft) as rows, targets as columns; `cell(target, method, draft)` gives
    each cell's HTML."""
    headers = ["setup \\ target"] + [label(target) for target in analysis.targets]
    rows = [[f"<th>{escape(setup_label(method, draft))}</th>"] + [cell(target, method, draft)
                                                                 for target in analysis.targets]
            for method, draft in analysis.setups()]
    return _table(headers, rows)


# --- speedup heatmaps -------------------------------------------------------------------------------


def _speedup_section(analysis: SweepAnalysis) -> str:
    objective = analysis.objective
    other = "decode" if objective == "e2e" else "e2e"
    parts = ['<section id="speedups">', "<h2>Speedups (rows: setups, columns: targets)</h2>", _heatmap_legend()]
    for shown in (objective, other):
        parts += [f"<h3>{escape(SPEEDUP_TITLES[shown])} at each pair's best k</h3>", _heatmap(analysis, shown)]
    for k in analysis.plan.num_draft_tokens:
        parts += [f"<h3>{escape(SPEEDUP_TITLES[objective])} at k = {k}</h3>", _heatmap(analysis, objective, k)]
    return "\n".join(parts + ["</section>"])


def _heatmap_legend() -> str:
    scale = "".join(f'<span class="swatch" style="background-color:{_colour(ratio)}">{ratio:g}x</span>'
                    for ratio in (0.5, 0.75, 1.0, 1.5, 2.0))
    return (f'<p class="legend">{scale} Colour: geometric-mean speedup, red below 1x, white at 1x, green above '
            f"(saturating at {1 / SATURATION:g}x and {SATURATION:g}x). Brackets: 95% interval, "
            f"{UNADJUSTED} (at a pair's best k, widened for that setup's k values only): with many cells shown, "
            "some exclude 1.0x by chance; only the verdicts are adjusted for every setup compared.</p>"
            '<p class="legend"><span class="swatch inconclusive">1.02x [0.97, 1.08] ?</span> '
            "Hatched with a dashed border and '?': inconclusive, the 95% interval spans 1.0x, so the setup may "
            "be no faster (or slower) than the baseline. Hover a cell for its full figures.</p>")


def _heatmap(analysis: SweepAnalysis, objective: str, k: int | None = None) -> str:
    """`objective`'s speedups coloured by value: at one k, or (k None) at each pair's best k."""
    return _grid(analysis, lambda target, method, draft: _speedup_cell(analysis, target, method, draft, objective, k))


def _speedup_cell(analysis: SweepAnalysis, target: str, method: str, draft: str | None, objective: str,
                  k: int | None) -> str:
    status = analysis.status(target, method, draft)
    if status is None:
        return "<td></td>"
    case = analysis.best_k(target, method, draft, objective) if k is None else _case_at(analysis, target, method,
                                                                                        draft, k)
    if case is None:
        estimate = None
    elif k is None:  # the best of the k values: its interval is widened for them
        estimate = analysis.best_k_estimate(target, method, draft, objective)
    else:
        estimate = case.comparison.speedup(objective)
    if estimate is None:
        reason = _reason(analysis, target, draft)
        tooltip = f' title="{escape(reason)}"' if reason else ""
        return f'<td class="status"{tooltip}>{escape(STATUS_TEXT.get(status, "n/a"))}</td>'
    text = format_cell(estimate) + (f" k={case.num_draft_tokens}" if k is None else "")
    if case.comparison.lossless.identical is False:
        text += " (output differs)"
    tooltip = format_estimate(estimate)
    if case.pruned:
        text += PRUNED_MARK
        tooltip += f"; {pruned_text(case, analysis)}: {case.pruned}"
    classes = "speedup" + (" inconclusive" if spans_one(estimate) else "") + (" pruned" if case.pruned else "")
    return (f'<td class="{classes}" style="background-color:{_colour(estimate.geomean)}" '
            f'title="{escape(tooltip)}">{escape(text)}</td>')


def _case_at(analysis: SweepAnalysis, target: str, method: str, draft: str | None, k: int) -> SweepCase | None:
    """The setup at one k, measured (pruned or not)."""
    return next((case for case in analysis.cases if case.target == target and case.comparison
                 and case.setup == (method, draft) and case.num_draft_tokens == k), None)


def _reason(analysis: SweepAnalysis, target: str, draft: str | None) -> str | None:
    return next((case.reason for case in analysis.cases if case.target == target and case.draft == draft), None)


def _colour(ratio: float) -> str:
    """Red below 1x, white at 1x, green above, on a log scale saturating at 1/SATURATION and SATURATION."""
    t = max(-1.0, min(1.0, math.log(ratio) / math.log(SATURATION))) if ratio > 0 else -1.0
    end = GREEN if t >= 0 else RED
    r, g, b = (round(w + (e - w) * abs(t)) for w, e in zip(WHITE, end))
    return f"rgb({r},{g},{b})"


# --- speedup versus memory chart ---------------------------------------------------------------------

WIDTH, HEIGHT = 900, 440
LEFT, TOP, RIGHT, BOTTOM = 70, 20, 650, 380  # plot area; the legend sits right of it
SERIES = (  # objective, legend text, colour, marker
    ("e2e", "end-to-end speedup", "#1f5fa8", "circle"),
    ("decode", "decode speedup", "#d9730d", "diamond"),
)
DODGE = 5  # px: the two markers of a pair sit either side of its memory figure


@dataclass
class ChartPoint:
    """One measured pair at its best k."""

    name: str
    target: str  # display name
    peak_memory_gb: float  # highest peak of the speculative runs
    alone_peak_memory_gb: float | None  # the target with no draft loaded
    speedups: dict  # objective -> RatioEstimate | None


@dataclass
class Axis:
    """Linear map from data values to pixels over round tick values."""

    ticks: list[float]
    step: float
    start_px: float  # pixel of ticks[0]
    end_px: float  # pixel of ticks[-1]

    def px(self, value: float) -> float:
        low, high = self.ticks[0], self.ticks[-1]
        return self.start_px + (value - low) / (high - low) * (self.end_px - self.start_px)

    def text(self, value: float) -> str:
        return f"{value:.{max(0, -math.floor(math.log10(self.step) + 1e-9))}f}"


def nice_ticks(low: float, high: float, count: int = 5) -> tuple[list[float], float]:
    """Round tick values (steps of 1, 2 or 5 x 10^n) covering [low, high]: at least three of them."""
    if high - low < 1e-9:
        pad = max(abs(low) * 0.1, 0.1)
        low, high = low - pad, high + pad
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)], step


def _chart_points(analysis: SweepAnalysis) -> list[ChartPoint]:
    points = []
    for target in analysis.targets:
        for method, draft in analysis.setups():
            case = analysis.best_k(target, method, draft)
            memory = case.comparison.speculative_peak_memory_gb if case else None
            if memory:
                points.append(ChartPoint(
                    name=f"{label(target)} + {case.label}" + (PRUNED_MARK if case.pruned else ""),
                    target=label(target),
                    peak_memory_gb=memory.max, alone_peak_memory_gb=analysis.alone_peak_memory_gb(target),
                    speedups={objective: case.comparison.speedup(objective) for objective, *_ in SERIES}))
    return points


def _chart_section(analysis: SweepAnalysis) -> str:
    title = (f"<h2>Speedup versus peak memory (each pair at its best k by "
             f"{escape(OBJECTIVE_NAMES[analysis.objective])})</h2>")
    points = _chart_points(analysis)
    if not points:
        return f'<section id="chart">\n{title}\n<p>No measured pairs to plot.</p>\n</section>'
    return f'<section id="chart">\n{title}\n{_chart_svg(points)}\n</section>'


def _chart_svg(points: list[ChartPoint]) -> str:
    alone = {p.target: p.alone_peak_memory_gb for p in points if p.alone_peak_memory_gb is not None}
    memories = [p.peak_memory_gb for p in points] + list(alone.values())
    estimates = [e for p in points for e in p.speedups.values() if e]
    ratios = [1.0] + [v for e in estimates for v in (e.geomean, e.low, e.high) if v is not None]
    x = Axis(*nice_ticks(*_padded(memories)), LEFT, RIGHT)
    y = Axis(*nice_ticks(*_padded(ratios)), BOTTOM, TOP)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
             'aria-label="speedup against peak memory" style="max-width:100%;height:auto">',
             _chart_axes(x, y), _chart_alone_marks(x, y, alone)]
    parts += [_chart_point(point, x, y) for point in points]
    parts += [_chart_legend(), "</svg>"]
    return "\n".join(part for part in parts if part)


def _padded(values: list[float], share: float = 0.05) -> tuple[float, float]:
    """The range of `values` widened by `share` each side (never below 0), so no marker sits on a frame edge."""
    low, high = min(values), max(values)
    pad = (high - low) * share
    return max(low - pad, 0.0), high + pad


def _chart_axes(x: Axis, y: Axis) -> str:
    """Gridlines, tick labels, axis lines and titles, and the dashed 1x line."""
    parts = []
    for value in x.ticks:
        px = x.px(value)
        parts.append(f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{BOTTOM}" stroke="#e6e6e6"/>'
                     f'<text class="tick tick-x" x="{px:.1f}" y="{BOTTOM + 18}" text-anchor="middle">'
                     f"{x.text(value)}</text>")
    for value in y.ticks:
        py = y.px(value)
        parts.append(f'<line x1="{LEFT}" y1="{py:.1f}" x2="{RIGHT}" y2="{py:.1f}" stroke="#e6e6e6"/>'
                     f'<text class="tick tick-y" x="{LEFT - 8}" y="{py + 4:.1f}" text-anchor="end">'
                     f"{y.text(value)}x</text>")
    one = y.px(1.0)
    middle_x, middle_y = (LEFT + RIGHT) / 2, (TOP + BOTTOM) / 2
    parts += [
        f'<line x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}" stroke="#333"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}" stroke="#333"/>',
        f'<line class="one-x" x1="{LEFT}" y1="{one:.1f}" x2="{RIGHT}" y2="{one:.1f}" stroke="#555" '
        'stroke-dasharray="6 4"/>',
        f'<text x="{middle_x}" y="{HEIGHT - 22}" text-anchor="middle">peak memory with the draft loaded (GB)</text>',
        f'<text x="18" y="{middle_y}" transform="rotate(-90 18 {middle_y})" text-anchor="middle">'
        "speedup over the baseline (x)</text>",
    ]
    return "\n".join(parts)


def _chart_alone_marks(x: Axis, y: Axis, alone: dict[str, float]) -> str:
    """A grey triangle on the 1x line (the target alone is its own baseline) at each target's peak memory
    with no draft loaded; targets with the same figure share one, and labels that would collide are stacked."""
    by_memory: dict[float, list[str]] = {}
    for name, gb in alone.items():
        by_memory.setdefault(round(gb, 2), []).append(name)
    marks, previous_px, row = [], -math.inf, 0
    for gb, names in sorted(by_memory.items()):
        px = x.px(gb)
        row = row + 1 if px - previous_px < 90 else 0
        previous_px = px
        text = f"{', '.join(names)} alone"
        py = y.px(1.0)
        marks.append(f'<g class="alone"><title>{escape(text)} (no draft): 1x at {gb:.2f} GB</title>'
                     f'<polygon points="{px - 6:.1f},{py + 5:.1f} {px + 6:.1f},{py + 5:.1f} {px:.1f},{py - 5:.1f}" '
                     'fill="#888"/>'
                     f'<text class="point-label" x="{px + 8:.1f}" y="{py + 16 + 14 * row:.1f}">'
                     f"{escape(text)}</text></g>")
    return "\n".join(marks)


def _chart_point(point: ChartPoint, x: Axis, y: Axis) -> str:
    """Both speedups of one pair: error bar and marker each, with a tooltip, and the pair's name."""
    parts = []
    for offset, (objective, _, colour, shape) in zip((-DODGE, DODGE), SERIES):
        estimate = point.speedups.get(objective)
        if estimate is None:
            continue
        px, py = x.px(point.peak_memory_gb) + offset, y.px(estimate.geomean)
        parts.append(f'<g class="point point-{objective}"><title>{escape(_tooltip(point))}</title>'
                     f"{_error_bar(estimate, px, y, colour)}{_marker(shape, px, py, colour, spans_one(estimate))}</g>")
    top = max((e.geomean for e in point.speedups.values() if e), default=1.0)
    px, py = x.px(point.peak_memory_gb), y.px(top)
    anchor, dx = ("end", -DODGE - 8) if px > RIGHT - 140 else ("start", DODGE + 8)
    parts.append(f'<text class="point-label" x="{px + dx:.1f}" y="{py - 6:.1f}" text-anchor="{anchor}">'
                 f"{escape(point.name)}</text>")
    return "\n".join(parts)


def _tooltip(point: ChartPoint) -> str:
    memory = f"peak memory {point.peak_memory_gb:.2f} GB"
    if point.alone_peak_memory_gb is not None:
        memory += (f" (target alone {point.alone_peak_memory_gb:.2f} GB, draft adds "
                   f"{point.peak_memory_gb - point.alone_peak_memory_gb:+.2f} GB)")
    figures = [f"{title}: {format_estimate(point.speedups.get(objective))}" for objective, title, *_ in SERIES]
    return "\n".join([point.name, *figures, memory])


def _error_bar(estimate: RatioEstimate, px: float, y: Axis, colour: str) -> str:
    if estimate.low is None:
        return ""
    low, high = y.px(estimate.low), y.px(estimate.high)
    return (f'<line class="error-bar" x1="{px:.1f}" y1="{low:.1f}" x2="{px:.1f}" y2="{high:.1f}" '
            f'stroke="{colour}" stroke-width="1.5"/>'
            + "".join(f'<line x1="{px - 3:.1f}" y1="{end:.1f}" x2="{px + 3:.1f}" y2="{end:.1f}" '
                      f'stroke="{colour}" stroke-width="1.5"/>' for end in (low, high)))


def _marker(shape: str, px: float, py: float, colour: str, hollow: bool = False) -> str:
    """A filled marker, or a hollow one when its interval spans 1x."""
    paint = f'fill="{"#fff" if hollow else colour}" stroke="{colour}" stroke-width="2"'
    if shape == "circle":
        return f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5" {paint}/>'
    return (f'<polygon points="{px:.1f},{py - 6:.1f} {px + 6:.1f},{py:.1f} {px:.1f},{py + 6:.1f} '
            f'{px - 6:.1f},{py:.1f}" {paint}/>')


def _chart_legend() -> str:
    left, top = RIGHT + 25, TOP + 10
    rows = [(_marker(shape, left + 8, 0, colour), title) for _, title, colour, shape in SERIES]
    rows += [(_marker("circle", left + 8, 0, "#555", hollow=True), "hollow: interval spans 1x"),
             (f'<line x1="{left + 8}" y1="-7" x2="{left + 8}" y2="7" stroke="#555" stroke-width="1.5"/>',
              "95% interval"),
             (f'<line x1="{left}" y1="0" x2="{left + 16}" y2="0" stroke="#555" stroke-dasharray="6 4"/>',
              "1x: as fast as the baseline"),
             (f'<polygon points="{left + 2},5 {left + 14},5 {left + 8},-5" fill="#888"/>',
              "target alone (no draft), at 1x")]
    return '<g class="legend">' + "".join(
        f'<g transform="translate(0 {top + 22 * row})">{mark}<text x="{left + 24}" y="4">{escape(text)}</text></g>'
        for row, (mark, text) in enumerate(rows)) + "</g>"


# --- problems -------------------------------------------------------------------------------------


def _pruned_section(analysis: SweepAnalysis) -> str:
    return _list_section("pruned", PRUNED_TITLE, pruned_lines(analysis))


def _problem_section(analysis: SweepAnalysis) -> str:
    return _list_section("problems", "Skipped or failed", problem_lines(analysis))


def _definitions_section() -> str:
    items = "".join(f'<li><span class="term">{escape(term)}</span>: {escape(text)}</li>' for term, text in DEFINITIONS)
    return f'<section id="definitions">\n<h2>Definitions</h2>\n<ul>{items}</ul>\n</section>'


def _list_section(section_id: str, title: str, lines: list[str]) -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return f'<section id="{section_id}">\n<h2>{escape(title)}</h2>\n<ul>{items}</ul>\n</section>'
