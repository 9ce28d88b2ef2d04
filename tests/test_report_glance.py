"""What a reader sees at a glance, on hand-made results files (no models): each verdict opens with a
plain sentence naming what decided it (time to first token, acceptance, the verify pass's cost, memory),
a setup the smart sweep pruned keeps its measured figures in every format, time to first token is shown
per setup, and no figure that prints as 1.00 stands beside words that claim a difference."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re

import pytest
from synthetic import make_state, sample

from mlxdraft.analysis import analyse_sweep
from mlxdraft.reports import FORMATS, render_pair, render_sweep
from mlxdraft.reports.common import format_cell, plain_sentence

BASELINE_TTFT_S, SPECULATIVE_TTFT_S = 0.6, 2.0


def _one_setup(speedup: float, **kwargs) -> dict:
    """big with one draft (q8) at one k (4), 12 prompts."""
    return make_state({("big", "q8", 4): speedup}, drafts=("q8",), ks=(4,), weights_gb={"q8": 0.15}, **kwargs)


def _set_baseline_ttft(state: dict, ttft_s: float) -> None:
    for group in state["groups"].values():
        for s in group["samples"]:
            if s["num_draft_tokens"] == 0:
                s["wall_s"] += ttft_s - s["ttft_s"]
                s["ttft_s"] = ttft_s


def pruned_only() -> dict:
    """The demo's shape: decode 1.3x faster, the first token 1.4 s later, end to end slower; the smart
    sweep pruned the only setup after 9 of 12 prompts."""
    state = _one_setup(1.3, noise=0.03, spec_ttft_s=SPECULATIVE_TTFT_S)
    _set_baseline_ttft(state, BASELINE_TTFT_S)
    group = state["groups"]["big | q8"]
    group["samples"] = [s for s in group["samples"] if s["prompt_index"] < 9]
    group["pruned"] = [{"method": "mlx-lm", "num_draft_tokens": 4, "after_units": 9,
                        "reason": "its upper bound is below the baseline's"}]
    state["plan"]["strategy"] = "smart"
    return state


def _with_acceptance(state: dict, acceptance: float) -> dict:
    """The same runs, with verify rounds that accept `acceptance` of the draft tokens."""
    for group in state["groups"].values():
        group["samples"] = [s if not s["num_draft_tokens"] else dataclasses.asdict(sample(
            s["num_draft_tokens"], s["prompt_index"], s["pass_index"], s["decode_tps"], ttft_s=s["ttft_s"],
            acceptance=acceptance, peak_memory_gb=s["peak_memory_gb"], category=s["category"]))
            for s in group["samples"]]
    return state


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


# --- every measurement visible -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_file_whose_only_setup_was_pruned_shows_its_measured_speedup_in_every_format(fmt):
    state = pruned_only()
    analysis = analyse_sweep(state)
    [case] = analysis.pruned("big")
    e2e, decode = case.comparison.e2e_speedup, case.comparison.decode_speedup
    assert e2e.high < 1.0 < decode.low  # the inputs: slower end to end, faster decoding
    text = render_sweep(state, fmt)

    if fmt in ("table", "markdown"):
        row = next(line for line in text.splitlines() if re.match(r"\|? ?mlx-lm q8 +\|? ?\d", line))
        assert f"{format_cell(e2e)} k=4 (pruned)" in row  # the end-to-end matrix, first
        assert f"{format_cell(decode)} k=4 (pruned)" in text
        [setups] = [line for line in text.splitlines() if re.match(r"\|? ?big +\|? ?mlx-lm q8 k=4", line)]
        assert "pruned after 9 of 12 prompts" in setups and f"{BASELINE_TTFT_S:.3f} s" in setups
        assert f"{SPECULATIVE_TTFT_S:.3f} s" in setups and format_cell(e2e) in setups and format_cell(decode) in setups
    elif fmt == "csv":
        [row] = _rows(text)
        assert math.isclose(float(row["e2e_speedup"]), e2e.geomean, rel_tol=1e-5)
        assert math.isclose(float(row["decode_speedup"]), decode.geomean, rel_tol=1e-5)
        assert (row["pruned"], row["pruned_after_units"]) == ("true", "9")
        assert row["pruned_reason"] == "its upper bound is below the baseline's"
        assert math.isclose(float(row["baseline_ttft_s"]), BASELINE_TTFT_S)
        assert math.isclose(float(row["speculative_ttft_s"]), SPECULATIVE_TTFT_S)
    elif fmt == "json":
        data = json.loads(text)
        [item] = data["cases"]
        assert math.isclose(item["summary"]["e2e_speedup"]["geomean"], e2e.geomean)
        assert item["pruned"] == {"after_units": 9, "reason": "its upper bound is below the baseline's",
                                  "text": "pruned after 9 of 12 prompts"}
        [verdict] = data["verdicts"]
        assert verdict["explanation"]["cause"] == "ttft"
        assert f"{e2e.geomean:.2f}x [{e2e.low:.2f}, {e2e.high:.2f}], n=9" in verdict["headline"]
    else:
        assert f"{format_cell(e2e)} k=4 (pruned)</td>" in text
        assert 'class="speedup pruned"' in text
        assert "No measured pairs to plot" not in text
        assert "big + mlx-lm q8 k=4 (pruned)" in text  # the chart's point label
        assert f"<td>{BASELINE_TTFT_S:.3f} s</td><td>{SPECULATIVE_TTFT_S:.3f} s</td>" in text


def test_a_pair_report_opens_with_the_plain_sentence_and_shows_its_pruned_setup():
    state = {**pruned_only(), "kind": "pair"}
    text = render_pair(state)
    first = text.splitlines()[0]
    assert first.startswith("Don't use speculative decoding for this workload: the one setup measured was slower "
                            "end to end (the q8 draft with k=4, ")
    assert "the first token came 1.4 s later (2.0 s against 0.60 s for the target alone" in first
    assert "Pruned          pruned after 9 of 12 prompts: its upper bound is below the baseline's" in text


# --- the plain sentence names what decided it --------------------------------------------------------------


def _sentence(state, objective="e2e") -> tuple[str, str]:
    analysis = analyse_sweep(state, objective)
    [verdict] = analysis.verdicts()
    return analysis.explain(verdict).cause, plain_sentence(verdict, analysis)


def test_the_sentence_names_time_to_first_token_when_it_decides():
    state = _one_setup(1.3, noise=0.02, spec_ttft_s=1.5)  # the target alone: 0.5 s
    cause, sentence = _sentence(state)
    assert cause == "ttft"
    assert sentence.startswith("Don't use speculative decoding for this workload: the one setup measured was "
                               "slower end to end (the q8 draft with k=4, 0.")
    assert re.search(r"\. Decoding got 1\.\d\dx faster \[1\.\d\d, 1\.\d\d\], but the first token came 1\.0 s later "
                     r"\(1\.5 s against 0\.50 s for the target alone: the draft's prompt prefill\), which these "
                     r"32-token answers cannot win back\.$", sentence), sentence
    assert f"- big: {sentence}\n    verdict: NO-GAIN: " in render_sweep(state)  # advice first, evidence under it


def test_the_sentence_names_acceptance_when_low_acceptance_makes_decoding_slower():
    state = _with_acceptance(_one_setup(0.7, noise=0.02), 0.25)
    cause, sentence = _sentence(state)
    assert cause == "acceptance"
    assert re.search(r"\. The target accepted only 25% of the proposed draft tokens, so decoding did not speed up "
                     r"\(decoding ran at 0\.\d\dx \[0\.\d\d, 0\.\d\d\]\)\.$", sentence), sentence


def test_the_sentence_names_the_verify_cost_when_acceptance_is_high_and_decoding_still_slower():
    state = _with_acceptance(_one_setup(0.7, noise=0.02), 0.75)
    cause, sentence = _sentence(state)
    assert cause == "verify-cost"
    assert re.search(r"\. The target accepted 75% of the proposed draft tokens, yet decoding ran at 0\.\d\dx "
                     r"\[0\.\d\d, 0\.\d\d\]: ", sentence), sentence
    assert "verifying 5 tokens per round and running the draft cost more time than the accepted tokens save." \
        in sentence


def test_the_sentence_names_the_memory_budget_when_no_draft_fits():
    state = make_state({}, statuses={("big", "small"): "skipped", ("big", "tiny"): "skipped"})
    for group in state["groups"].values():
        group["reason"] = "needs about 30.1 GB (weights 20.0 + 9.0 GB, KV cache 1.10 GB), over the 24.0 GB budget"
    cause, sentence = _sentence(state)
    assert cause == "memory"
    assert sentence == ("Nothing to compare: every draft for this target was skipped because it would not fit the "
                        "24.0 GB memory budget (2 skipped); raise the budget (--memory-gb) or choose smaller drafts.")
    assert f"- big: {sentence}" in render_sweep(state)


def test_the_sentence_says_what_the_memory_budget_left_out_and_what_a_gain_costs_in_memory():
    state = make_state({("big", "small", 4): 1.5}, noise=0.03, weights_gb={"small": 0.5},
                       statuses={("big", "tiny"): "skipped"})
    state["groups"]["big | tiny"]["reason"] = "needs about 30.1 GB, over the 24.0 GB budget (--memory-gb)"
    analysis = analyse_sweep(state)
    [verdict] = analysis.verdicts()
    sentence = plain_sentence(verdict, analysis)
    estimate = verdict.verdict.estimate
    assert verdict.kind == "speculative" and analysis.explain(verdict).cause == "gain"
    assert sentence == (f"Use the small draft with k=4: {estimate.geomean:.2f}x faster end to end "
                        f"[{estimate.low:.2f}, {estimate.high:.2f}], n=12, 0.50 GB more memory; command below. "
                        "1 draft was not measured: it would not fit the 24.0 GB memory budget.")


# --- no rounding that contradicts the words --------------------------------------------------------------


def _slower_by_a_hair() -> dict:
    """One setup, 12 prompts, whose own 95% interval ends at 0.997: surely slower, by less than 0.005."""
    state = _one_setup(1.0)
    deviations = [0.02 if i % 2 else -0.02 for i in range(12)]
    sd = math.sqrt(sum(d * d for d in deviations) / 11)
    mean = math.log(0.997) - 2.200985160082949 * sd / math.sqrt(12)  # t(0.975, 11)
    by_prompt = {}
    for s in state["groups"]["big | q8"]["samples"]:
        if s["num_draft_tokens"] == 0:
            by_prompt[s["prompt_index"]] = s
    for s in state["groups"]["big | q8"]["samples"]:
        if s["num_draft_tokens"]:
            base, ratio = by_prompt[s["prompt_index"]], math.exp(mean + deviations[s["prompt_index"]])
            s["decode_tps"], s["wall_s"] = base["decode_tps"] * ratio, base["wall_s"] / ratio
    return state


PRINTED = [re.compile(pattern) for pattern in (
    r"\[(\d+\.\d+), (\d+\.\d+)\]",  # a matrix cell or a sentence: 0.98x [0.97, 0.99]
    r"CI (\d+\.\d+)–(\d+\.\d+)",  # format_estimate
    r"interval (\d+\.\d+)-(\d+\.\d+)x",  # a verdict's statistical reason
    r"(?<!spans )(\d+\.\d+)x(?: \[| \(95%|,| faster| slower)",  # a ratio beside its interval or a word
)]


@pytest.mark.parametrize("fmt", ["table", "markdown", "html", "pair"])
def test_no_report_prints_an_interval_ending_at_1_00_beside_words_that_claim_a_difference(fmt):
    state = _slower_by_a_hair()
    analysis = analyse_sweep(state)
    [verdict] = analysis.verdicts()
    e2e = verdict.leader.comparison.e2e_speedup
    assert verdict.kind == "no-gain" and 0.995 <= e2e.high < 1.0  # the inputs: surely slower, by a hair
    text = render_pair({**state, "kind": "pair"}) if fmt == "pair" else render_sweep(state, fmt)
    assert "surely slower" in text
    figures = [(match.group(0), value) for pattern in PRINTED for match in pattern.finditer(text)
               for value in match.groups()]
    assert figures and not [shown for shown, value in figures if float(value) == 1.0]
    assert "0.997" in text  # the bound, with the digit that shows it below 1


def test_markdown_verdicts_keep_their_evidence_as_a_nested_list():
    text = render_sweep(pruned_only(), "markdown")
    block = text[text.index("## Verdict per target"):text.index("## End-to-end speedup")].strip().splitlines()
    assert block[2].startswith("- **big**: Don't use speculative decoding")
    assert block[3:] and all(line.startswith("  - ") for line in block[3:]), block


# --- small items: the page's title, the target-alone marker ---------------------------------------------------


def test_the_html_title_says_pair_or_sweep():
    state = pruned_only()
    assert "<title>mlxdraft sweep</title>" in render_sweep(state, "html")
    assert "<title>mlxdraft pair: big</title>" in render_sweep({**state, "kind": "pair"}, "html")


def test_the_chart_puts_the_target_alone_at_1x():
    page = render_sweep(pruned_only(), "html")
    chart = page[page.index('<section id="chart">'):]
    one_y = float(re.search(r'class="one-x" x1="[\d.]+" y1="([\d.]+)"', chart).group(1))
    points = re.search(r'<g class="alone">.*?<polygon points="([^"]+)"', chart).group(1)
    ys = [float(pair.split(",")[1]) for pair in points.split()]
    assert min(ys) < one_y < max(ys)  # the marker straddles the dashed 1x line
