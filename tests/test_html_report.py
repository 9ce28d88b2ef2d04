"""The HTML sweep page on hand-made results files with known speedups: verdicts first, marked
inconclusive cells, a readable chart, escaping, and pages for sweeps with problems or no data."""

from __future__ import annotations

import html
import math
from html.parser import HTMLParser

import pytest
from synthetic import make_state

from mlxdraft.analysis import analyse_sweep
from mlxdraft.reports import render_sweep
from mlxdraft.reports.common import format_cell, spans_one
from mlxdraft.reports.html import nice_ticks, render_html


class Page(HTMLParser):
    """Tags, table cells and SVG texts of a page, as a browser would read them."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.cells: list[tuple[str, str]] = []  # (class, text) of every <td>
        self.texts: list[tuple[str, str]] = []  # (class, text) of every SVG <text>
        self.titles: list[str] = []  # SVG <title> tooltips
        self._open: tuple[str, str, list[str]] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag in ("td", "text", "title"):
            self._open = (tag, attrs.get("class") or "", [])

    def handle_data(self, data):
        if self._open:
            self._open[2].append(data)

    def handle_endtag(self, tag):
        if self._open and self._open[0] == tag:
            text = "".join(self._open[2])
            {"td": self.cells, "text": self.texts}.get(tag, self.titles).append(
                text if tag == "title" else (self._open[1], text))
            self._open = None

    def classed(self, tag: str, name: str) -> list[dict]:
        return [attrs for t, attrs in self.tags if t == tag and name in (attrs.get("class") or "").split()]


def section(page: str, section_id: str) -> str:
    start = page.index(f'<section id="{section_id}">')
    return page[start:page.index("</section>", start)]


def test_speculative_page_puts_the_verdict_first_with_its_setup_and_escaped_commands():
    state = make_state({("big", "small", 4): 1.5}, noise=0.05)
    page = render_sweep(state, "html")
    verdict = analyse_sweep(state).verdict("big")
    assert verdict.kind == "speculative" and verdict.chosen.label == "mlx-lm small k=4"

    assert page.startswith("<!DOCTYPE html>")
    assert page.index('<section id="verdicts">') < page.index('<section id="setup">') < page.index("<table")
    verdicts = section(page, "verdicts")
    assert '<div class="verdict verdict-speculative">' in verdicts
    assert '<span class="word">SPECULATIVE</span>' in verdicts
    assert "small k=4" in verdicts and "end to end 1." in verdicts and "decode 1." in verdicts
    assert verdict.commands and "'Hello'" in verdict.commands[0]  # a quote, so escaping shows
    for command in verdict.commands:
        assert f"<pre>{html.escape(command)}</pre>" in verdicts
    assert verdict.commands[0] not in page


def test_inconclusive_cell_is_marked_and_the_legend_explains_the_mark():
    state = make_state({("big", "small", 4): 1.5, ("big", "tiny", 4): 1.01}, noise=0.05)
    analysis = analyse_sweep(state)
    unsure = analysis.best_k_estimate("big", "mlx-lm", "tiny")  # best-k cells: widened for the k values tried
    sure = analysis.best_k_estimate("big", "mlx-lm", "small")
    assert spans_one(unsure) and not spans_one(sure)  # the inputs are what this test is about

    parsed = Page(render_html(analysis))
    classes = {text: cls.split() for cls, text in parsed.cells}
    assert "inconclusive" in classes[f"{format_cell(unsure)} k={4}"]
    assert "inconclusive" not in classes[f"{format_cell(sure)} k={4}"]
    assert parsed.classed("span", "inconclusive"), "the legend shows the mark"
    assert "the 95% interval spans 1.0x" in section(render_html(analysis), "speedups")


def test_no_gain_state_says_no_gain():
    state = make_state({("big", "small", 2): 0.7, ("big", "small", 4): 0.6, ("big", "tiny", 2): 0.8,
                        ("big", "tiny", 4): 0.75}, noise=0.05)
    verdicts = section(render_html(analyse_sweep(state)), "verdicts")
    assert '<div class="verdict verdict-no-gain">' in verdicts
    assert '<span class="word">NO-GAIN</span>' in verdicts
    assert "run the target without speculative decoding" in verdicts
    assert "<pre>" not in verdicts


def _ticks(parsed: Page, axis: str) -> list[float]:
    return [float(text.rstrip("x")) for cls, text in parsed.texts if f"tick-{axis}" in cls.split()]


def test_chart_has_round_ticks_error_bars_both_speedups_and_tooltips():
    state = make_state({("big", "small", 4): 1.5, ("big", "tiny", 2): 1.2}, noise=0.05,
                       weights_gb={"small": 0.5, "tiny": 0.2})
    parsed = Page(section(render_html(analyse_sweep(state)), "chart"))

    for axis in ("x", "y"):
        ticks = _ticks(parsed, axis)
        assert len(ticks) > 2
        steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
        assert len(steps) == 1, f"evenly spaced {axis} ticks: {ticks}"  # round steps: test_nice_ticks_...
    assert min(_ticks(parsed, "x")) <= 1.2 and max(_ticks(parsed, "x")) >= 1.5  # both pairs' peak memory
    assert min(_ticks(parsed, "y")) <= 1.0  # the 1x line is on the chart

    assert len(parsed.classed("line", "error-bar")) == 4  # two pairs x (end to end, decode)
    assert parsed.classed("line", "one-x")[0]["stroke-dasharray"]
    legend = " ".join(text for cls, text in parsed.texts)
    assert "end-to-end speedup" in legend and "decode speedup" in legend
    points = [title for title in parsed.titles if title.startswith("big + mlx-lm small k=4")]
    assert len(points) == 2 and "end-to-end speedup: 1." in points[0] and "peak memory 1.50 GB" in points[0]
    assert "target alone 1.00 GB" in points[0]
    assert any(title.startswith("big alone") for title in parsed.titles)


@pytest.mark.parametrize(("low", "high"), [(0.0, 1.0), (0.83, 1.47), (1.1, 1.1), (12.0, 61.3), (0.997, 1.004)])
def test_nice_ticks_are_round_evenly_spaced_and_cover_the_range(low, high):
    ticks, step = nice_ticks(low, high)
    assert len(ticks) >= 3
    assert ticks[0] <= low and ticks[-1] >= high
    assert all(math.isclose(b - a, step) for a, b in zip(ticks, ticks[1:]))
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
    assert any(math.isclose(mantissa, m) for m in (1, 2, 5))


def test_names_from_the_results_file_appear_only_escaped():
    evil_target, evil_draft = "<script>alert('x')</script>", 'dr"aft<b>'
    state = make_state({(evil_target, evil_draft, 4): 1.5}, noise=0.05, targets=(evil_target,),
                       drafts=(evil_draft, "tiny"), statuses={(evil_target, "tiny"): "failed"})
    state["groups"][f"{evil_target} | tiny"]["reason"] = "<img src=x onerror=alert(1)>"
    _answer(state["groups"][f"{evil_target} | {evil_draft}"]["samples"], 2, ["<img", " src=x>", "</pre>"],
            [[2, 1, 1], [2, 0, 0]])
    state["machine"] = dict(state["machine"], chip="<Chip & 'Co'>")
    page = render_html(analyse_sweep(state))

    parsed = Page(page)
    assert {tag for tag, _ in parsed.tags} <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3",
                                               "section", "div", "span", "p", "ul", "li", "pre", "table", "tr",
                                               "th", "td", "svg", "g", "line", "text", "circle", "polygon",
                                               "mark"}
    for raw in (evil_target, evil_draft, "<img", "<Chip"):
        assert raw not in page
    assert html.escape(evil_target) in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;Chip &amp; &#x27;Co&#x27;&gt;" in page
    assert "http" not in page.lower() and "<script" not in page.lower()


def test_failed_and_skipped_groups_are_listed_with_their_reasons():
    state = make_state({("big", "small", 4): 1.5}, targets=("big", "huge"), noise=0.05,
                       statuses={("big", "tiny"): "failed", ("huge", "small"): "skipped", ("huge", "tiny"): "pending"})
    page = render_html(analyse_sweep(state))
    problems = section(page, "problems")
    assert "<li>big + tiny: failed: failed on purpose</li>" in problems
    assert "<li>huge + small: skipped: skipped on purpose</li>" in problems
    cells = Page(section(page, "speedups")).cells
    assert ("status", "failed") in cells and ("status", "skipped") in cells and ("status", "not run") in cells


@pytest.mark.parametrize("state", [
    make_state({}, statuses={("big", "small"): "pending", ("big", "tiny"): "failed"}),
    make_state({}, drafts=()),
], ids=["nothing-measured", "no-drafts"])
def test_a_sweep_with_nothing_measured_still_renders(state):
    page = render_html(analyse_sweep(state))
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")
    assert '<span class="word">NOT MEASURED</span>' in section(page, "verdicts")
    assert "No measured pairs to plot." in section(page, "chart")
    assert "<svg" not in page


def _answer(samples: list[dict], k: int, texts: list[str], rounds: list[list[int]], prompt_index: int = 0) -> dict:
    """Give the first-pass run of prompt `prompt_index` at `k` these token texts and rounds."""
    run = next(s for s in samples if s["num_draft_tokens"] == k and s["prompt_index"] == prompt_index
               and s["pass_index"] == 0)
    run.update(token_ids=list(range(len(texts))), token_texts=texts, rounds=rounds)
    return run


def test_the_chosen_setup_shows_a_sample_answer_with_its_accepted_draft_tokens_marked():
    state = make_state({("big", "small", 4): 1.5}, noise=0.02)
    samples = state["groups"]["big | small"]["samples"]
    # round 1: two accepted draft tokens, then the target's own; round 2: one and the target's own;
    # round 3, cut short by max-tokens: one draft token only
    _answer(samples, 4, ["A", "<b>", "C", " d", "e", "&f"], [[4, 2, 1], [4, 1, 1], [4, 1, 0]], prompt_index=1)
    _answer(samples, 4, ["later"], [[4, 0, 1]], prompt_index=5)  # of the prompts with token texts, the first shows
    page = render_html(analyse_sweep(state))

    section = page[page.index('<section id="answers">'):]
    section = section[: section.index("</section>")]
    assert "big: mlx-lm small k=4 (chosen setup), prompt 2" in section
    assert "Prompt: prompt 1" in section
    assert ('<pre class="answer"><mark class="accepted">A&lt;b&gt;</mark>C<mark class="accepted"> d</mark>e'
            '<mark class="accepted">&amp;f</mark></pre>') in section


def test_no_recorded_token_texts_means_no_sample_answer_section():
    page = render_html(analyse_sweep(make_state({("big", "small", 4): 1.5}, noise=0.02)))
    assert 'id="answers"' not in page
