"""Honest labels (issue #21, item 5, and the report side of items 1 and 4), on hand-made results files: every
verdict says what it is about, advice to decide an open verdict agrees with that (prompts like these, or passes
of these exact prompts) and gives a command that runs, every '±' says it is a standard deviation, outliers are
runs unlike the other passes of their prompt with advice for that cause, cells that carry their own interval say
they are not adjusted for the cells shown, and the speedup model's anchor k is not shown as a prediction."""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import re
import shlex

import fake_engine
import pytest
from click.testing import CliRunner
from synthetic import make_state, sample

from mlxdraft.analysis import analyse_sweep
from mlxdraft.cli import cli
from mlxdraft.reports import render_pair, render_sweep
from mlxdraft.reports.common import UNADJUSTED, evidence_lines, prompts_advice

FORMATS = ("table", "markdown", "html")


def _open_state(**kwargs) -> dict:
    """One setup 1.04x faster in decoding, 8% run noise, 12 prompts in two categories, two passes: an open verdict
    that more prompts (or, about these exact prompts, more passes) would likely decide."""
    return make_state({("big", "small", 4): 1.04}, noise=0.08, drafts=("small",), ks=(4,), seed=1, **kwargs)


def _rendered(state: dict, fmt: str, estimand: str = "workload", objective: str = "decode") -> str:
    if fmt == "pair":
        return render_pair({**state, "kind": "pair"}, objective, estimand)
    return render_sweep(state, fmt, objective=objective, estimand=estimand)


# --- what a verdict is about ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [*FORMATS, "pair", "json"])
@pytest.mark.parametrize("estimand", ["workload", "suite"])
def test_every_verdict_states_its_scope_and_the_header_its_estimand(fmt, estimand):
    state = make_state({("big", "small", 4): 1.5}, noise=0.03, runs=2)
    [verdict] = analyse_sweep(state, "decode", estimand).verdicts()
    scope = verdict.verdict.scope
    workload = "for prompts like these 12 (n = prompts, the median of each prompt's passes)"
    assert scope == (workload if estimand == "workload"
                     else "for these 12 prompts exactly (n = 24 runs, prompt x pass)")
    text = _rendered(state, fmt, estimand)
    if fmt == "json":
        data = json.loads(text)
        assert data["estimand"] == estimand and data["verdicts"][0]["scope"] == scope
        assert data["estimand_label"] == {"workload": "prompts like these", "suite": "these exact prompts"}[estimand]
        return
    assert (html.escape(f"scope: {scope}") if fmt == "html" else f"scope: {scope}") in text
    label = ("Estimand: prompts like these 12 (the default, --estimand workload)" if estimand == "workload"
             else "Estimand: these exact prompts (--estimand suite)")
    assert label in text if fmt != "pair" else label.removeprefix("Estimand: ") in text
    if fmt != "pair":
        about = {"workload": "prompts like these", "suite": "these exact prompts"}[estimand]
        assert f"Verdict per target (objective: decode speed; about {about})" in text


@pytest.mark.parametrize("command", ["report", "pair", "sweep"])
def test_the_estimand_option_is_on_every_command_that_renders_a_verdict(command):
    help_text = CliRunner().invoke(cli, [command, "--help"], terminal_width=200).output
    assert "--estimand [workload|suite]" in help_text and "these exact prompts" in help_text


def test_report_renders_about_these_exact_prompts_when_asked(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(make_state({("big", "small", 4): 1.5}, noise=0.03, runs=2)))
    result = CliRunner().invoke(cli, ["report", str(path), "--format", "json", "--estimand", "suite"])
    assert result.exit_code == 0, result.output
    verdicts = json.loads(result.stdout)["verdicts"]
    assert {(v["estimand"], v["unit"], v["n"]) for v in verdicts} == {("suite", "run", 24)}
    default = json.loads(CliRunner().invoke(cli, ["report", str(path), "--format", "json"]).stdout)["verdicts"]
    assert {(v["estimand"], v["unit"], v["n"]) for v in default} == {("workload", "prompt", 12)}


# --- advice that agrees with the estimand -------------------------------------------------------------------


def test_an_open_verdict_about_prompts_like_these_asks_for_prompts_by_category_not_passes():
    state = _open_state(runs=2)
    analysis = analyse_sweep(state, "decode")
    [verdict] = analysis.verdicts()
    added = analysis.prompts_to_add(verdict)
    assert verdict.kind == "inconclusive" and set(added) == {"cat0", "cat1"}
    more = sum(added.values())
    advice = prompts_advice(verdict, analysis)
    assert advice == (f"to decide it, measure again on a prompts file (JSONL with 'prompt' and 'category') holding "
                      f"these 12 prompts and about {more} more like them (cat0 {added['cat0']}, cat1 "
                      f"{added['cat1']}), into a new file with --prompts FILE")  # no command recorded in the file
    for fmt in (*FORMATS, "pair"):
        text = _rendered(state, fmt)
        assert "-r " not in text.replace("-r 2", "") and "(-r)" not in text and "more passes (" not in text
    table = render_sweep(state, objective="decode")
    assert f"    {advice}\n" in table
    [verdict] = json.loads(render_sweep(state, "json", objective="decode"))["verdicts"]
    assert verdict["advice"] == advice
    assert f"about {more} more prompts like these would likely decide it (below)." in table


def test_an_open_verdict_about_these_exact_prompts_asks_for_passes():
    state = _open_state(runs=2)
    analysis = analyse_sweep(state, "decode", "suite")
    [verdict] = analysis.verdicts()
    assert verdict.kind == "inconclusive" and verdict.verdict.more_units_needed
    text = render_sweep(state, objective="decode", estimand="suite")
    assert re.search(r"\n    to decide it, measure again with -r \d+ \(into a new file\)\n", text), text
    assert re.search(r"; measure again with -r \d+ to decide\.", text)
    assert "prompts file" not in text


def test_the_prompts_advice_gives_a_command_that_runs(tmp_path):
    fake_engine.install()
    out = tmp_path / "s.json"
    command = ["mlxdraft", "sweep", "--engine", "fake", "--targets", "big", "--drafts", "small", "-k", "2",
               "--max-tokens", "8", "-w", "0", "--prompt", "Hello there", "-r", "2", "--force", "-o", str(out)]
    state = {**_open_state(runs=2), "command": command}
    analysis = analyse_sweep(state, "decode")
    [verdict] = analysis.verdicts()
    advice = prompts_advice(verdict, analysis)
    printed = advice.split("into a new file: ", 1)[1]
    prompts, more = tmp_path / "s-prompts.jsonl", tmp_path / "s-more-prompts.json"
    assert printed == shlex.join([*command[:14], "-r", "2", "--prompts", str(prompts), "-o", str(more)])
    prompts.write_text("".join(json.dumps({"prompt": f"prompt {i}", "category": f"cat{i % 2}"}) + "\n"
                               for i in range(4)))
    result = CliRunner().invoke(cli, shlex.split(printed)[1:])
    assert result.exit_code == 0, result.output
    assert len(json.loads(more.read_text())["plan"]["prompts"]) == 4


def test_a_sweep_left_unfinished_gives_only_the_advice_to_finish_it():
    state = _open_state(runs=2)
    group = state["groups"]["big | small"]
    group["samples"] = group["samples"][:-2]  # the last prompt's second pass is missing
    group["status"] = "pending"
    for fmt in (*FORMATS, "pair"):
        text = _rendered(state, fmt)
        assert "unfinished:" in text
        assert "prompts file" not in text and "more prompts like these" not in text and "-r " not in text
    sentence = render_sweep(state, objective="decode").split("\n- big: ", 1)[1].splitlines()[0]
    assert sentence.endswith("the measurement stopped early: finish it first (below).")
    [verdict] = json.loads(render_sweep(state, "json", objective="decode"))["verdicts"]
    assert verdict["advice"].startswith("unfinished: 1 pair(s) still pending, 46 of their 48 runs measured; continue")


# --- '±' is a standard deviation, and says so ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", [*FORMATS, "pair"])
def test_every_plus_minus_says_it_is_a_standard_deviation(fmt):
    state = make_state({("big", "small", 4): 1.5}, noise=0.05, runs=3)
    state["plan"]["targets"].append("solo")  # a target measured alone shows its baseline as mean ± sd
    state["models"]["solo"] = dict(state["models"]["big"], name="solo")
    state["groups"]["solo | -"] = {"target": "solo", "draft": None, "status": "done", "reason": None, "samples": [
        s for s in state["groups"]["big | small"]["samples"] if s["num_draft_tokens"] == 0]}
    text = _rendered(state, fmt) if fmt != "pair" else render_pair({**make_state(
        {("big", "small", 4): 1.5}, noise=0.05, runs=3, drafts=("small",), ks=(4,)), "kind": "pair"})
    signs = [text[i:i + 30] for i in [m.start() for m in re.finditer("±", text)]]
    assert signs, "the report shows some mean ± sd"
    unlabelled = [s for s in signs if not re.match(r"± [\d.]+%? sd", s) and "± x sd" not in s]
    assert not unlabelled, unlabelled
    if fmt == "pair":
        assert re.search(r"\nBaseline        decode [\d.]+ tok/s ± [\d.]+ sd \([\d.]+ … [\d.]+, n=36 runs\)", text)


# --- outliers: runs unlike the other passes of their prompt --------------------------------------------------


def _stalled(state: dict, prompt: int, pass_index: int) -> dict:
    """The speculative run of one prompt and pass, its decode 2.5 times as slow (a stall)."""
    for group in state["groups"].values():
        for s in group["samples"]:
            if s["num_draft_tokens"] and (s["prompt_index"], s["pass_index"]) == (prompt, pass_index):
                s["decode_s"] *= 2.5
                s["decode_tps"] /= 2.5
                s["wall_s"] = s["ttft_s"] + s["decode_s"]
    return state


def test_a_stalled_run_is_flagged_with_advice_for_a_stall_and_a_different_prompt_is_not():
    clean = make_state({("big", "small", 4): 1.3}, noise=0.01, drafts=("small",), ks=(4,), runs=3)
    for fmt in (*FORMATS, "pair"):
        assert "outlier" not in _rendered(clean, fmt).replace("- outlier: a run", "").replace(
            '"term">outlier<', "")  # prompts gain differently (make_state), no run stalls: nothing flagged
    state = _stalled(make_state({("big", "small", 4): 1.3}, noise=0.01, drafts=("small",), ks=(4,), runs=3), 5, 1)
    line = ("outlier: prompt 6, pass 2: a run unlike the other passes of its prompt (its end-to-end and decode "
            "speedups; a stall?): warm up more (-w) or quiet the machine")
    for fmt in (*FORMATS, "pair"):
        assert line in _rendered(state, fmt)
    [row] = csv.DictReader(io.StringIO(render_sweep(state, "csv")))
    assert (row["e2e_outlier_runs"], row["decode_outlier_runs"]) == ("6:2", "6:2")


def test_with_two_passes_either_run_may_be_the_odd_one():
    state = _stalled(make_state({("big", "small", 4): 1.3}, noise=0.01, drafts=("small",), ks=(4,), runs=2), 5, 1)
    analysis = analyse_sweep(state)
    [verdict] = analysis.verdicts()
    [line] = [line for line in evidence_lines(verdict, analysis) if line.startswith("outlier: ")]
    assert "(with two passes, either may be the odd one): warm up more (-w) or quiet the machine" in line


def test_the_pair_shows_how_well_passes_agree():
    state = {**make_state({("big", "small", 4): 1.3}, noise=0.01, drafts=("small",), ks=(4,), runs=3), "kind": "pair"}
    [passes] = [line for line in render_pair(state).splitlines() if line.startswith("Passes")]
    assert re.fullmatch(r"Passes +end to end ± \d\.\d% sd, decode ± \d\.\d% sd between the passes of a prompt "
                        r"\(a run's speedup\)", passes), passes
    one_pass = {**make_state({("big", "small", 4): 1.3}, noise=0.01, drafts=("small",), ks=(4,)), "kind": "pair"}
    assert "\nPasses" not in render_pair(one_pass)


# --- cells on their own --------------------------------------------------------------------------------------


def test_cells_with_their_own_intervals_say_once_that_they_are_not_adjusted():
    state = make_state({("big", "small", 4): 1.5}, noise=0.05)
    for fmt in ("table", "markdown"):
        text = render_sweep(state, fmt)
        titles = [line for line in text.splitlines() if "not adjusted for the cells shown" in line
                  and "Speedup = " not in line]  # the header says it of every interval but the verdicts' too
        assert len(titles) == 3, titles  # the two best-k matrices and the table of every setup, each once
        assert not any("[" in line for line in titles)  # in titles, never in a cell
    page = render_sweep(state, "html")
    speedups = page[page.index('<section id="speedups">'):page.index("</section>", page.index('id="speedups"'))]
    assert speedups.count(UNADJUSTED) == 1  # the legend, once for every heatmap (per k too)
    pair = render_pair({**state, "kind": "pair"})
    assert f"Every setup measured (speedups {UNADJUSTED}):" in pair and f"; {UNADJUSTED}):" in pair
    header = next(csv.reader(io.StringIO(render_sweep(state, "csv"))))
    assert "e2e_speedup_low_unadjusted" in header and "decode_speedup_high_unadjusted" in header
    assert not [name for name in header if name.endswith(("_low", "_high"))]
    assert {"estimand", "n", "prompts", "runs"} <= set(header) and "units" not in header


def test_the_csv_counts_prompts_and_runs_apart_and_n_by_the_estimand():
    state = make_state({("big", "small", 4): 1.5}, noise=0.05, runs=2, drafts=("small",), ks=(4,))
    [row] = csv.DictReader(io.StringIO(render_sweep(state, "csv")))
    assert (row["estimand"], row["n"], row["prompts"], row["runs"]) == ("workload", "12", "12", "24")
    [row] = csv.DictReader(io.StringIO(render_sweep(state, "csv", estimand="suite")))
    assert (row["estimand"], row["n"], row["prompts"], row["runs"]) == ("suite", "24", "12", "24")


# --- the speedup model's anchor ----------------------------------------------------------------------------


def _with_timings(state: dict) -> dict:
    """Forward-pass timings for the target and a draft time per token, so that the speedup model predicts."""
    state["models"]["big"]["verify_s"] = {str(n): [0.08 + 0.004 * n] for n in range(1, 10)}
    for draft in state["plan"]["drafts"]:
        state["models"][draft]["token_s"] = [0.004]
    for group in state["groups"].values():  # rounds need per-position counts: rebuild them at acceptance 0.75
        group["samples"] = [s if not s["num_draft_tokens"] else dataclasses.asdict(sample(
            s["num_draft_tokens"], s["prompt_index"], s["pass_index"], s["decode_tps"], ttft_s=s["ttft_s"],
            acceptance=0.75, peak_memory_gb=s["peak_memory_gb"], category=s["category"]))
            for s in group["samples"]]
    return state


def test_the_anchor_k_is_marked_as_the_measurement_not_a_prediction():
    state = _with_timings(make_state({("big", "small", 2): 1.2, ("big", "small", 4): 1.4}, noise=0.02,
                                     drafts=("small",)))
    analysis = analyse_sweep(state)
    assert all(c.prediction for c in analysis.cases), "the inputs: the model predicts every k"
    table = render_sweep(state)
    [header] = [line for line in table.splitlines() if line.startswith("setup \\ k")]
    assert "k=4 (anchor: measured)" in header and "k=2 (anchor" not in header
    [row] = [line for line in table.splitlines() if line.startswith("mlx-lm small ") and "anchor /" in line]
    assert re.search(r"\d\.\d\dx / \d\.\d\dx +anchor / \d\.\d\dx$", row), row
    [verdict] = analysis.verdicts()
    assert verdict.chosen.num_draft_tokens == 4
    assert ("    speedup model: k=4 (anchor: measured): the model is fitted to these runs, so its figure here is the "
            "measurement, not a check of it\n") in table
    pair = render_pair({**state, "kind": "pair"})
    assert "\nPredicted       k=4 (anchor: measured): the speedup model is fitted to these runs" in pair
    assert re.search(r"mlx-lm small k=4 .* anchor \(measured\) ", pair)
    rows = {row["num_draft_tokens"]: row for row in csv.DictReader(io.StringIO(render_sweep(state, "csv")))}
    assert (rows["2"]["predicted_is_anchor"], rows["4"]["predicted_is_anchor"]) == ("false", "true")
    cases = json.loads(render_sweep(state, "json"))["cases"]
    assert [(c["num_draft_tokens"], c["prediction_is_anchor"]) for c in cases] == [(2, False), (4, True)]


def test_a_prediction_below_the_anchor_names_the_anchor_it_comes_from():
    state = _with_timings(make_state({("big", "small", 2): 1.4, ("big", "small", 4): 1.1}, noise=0.02,
                                     drafts=("small",)))
    [verdict] = analyse_sweep(state).verdicts()
    assert verdict.chosen.num_draft_tokens == 2
    assert re.search(r"\n    speedup model: decode \d\.\d\dx \[\d\.\d\d, \d\.\d\d\], end to end \d\.\d\dx \[\d\.\d\d, "
                     r"\d\.\d\d\] predicted from the runs at k=4 \(anchor: measured\) and the timed forward passes\n",
                     render_sweep(state))


@pytest.mark.parametrize("command", ["sweep", "pair"])
def test_pair_and_sweep_render_about_these_exact_prompts_when_asked(tmp_path, command):
    fake_engine.install()
    models = ["--targets", "big", "--drafts", "small"] if command == "sweep" else ["big", "small"]
    args = [command, *models, "--engine", "fake", "-k", "2", "--max-tokens", "8", "-w", "0", "--prompt", "Hello",
            "-r", "3", "-o", str(tmp_path / "r.json"), "--estimand", "suite"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "scope: for this prompt exactly (n = 3 runs, prompt x pass)" in result.stdout
    assert "these exact prompts (--estimand suite)" in result.stdout


def test_reports_show_the_run_order_and_its_check():
    """A file measured in a random order shows the order-effect check (a cold first run comes back below 1.00x);
    a file from before says its order was fixed and cannot be checked."""
    import random as _random

    from mlxdraft.reports.common import order_text

    old = analyse_sweep(make_state({("big", "small", 4): 1.3}, noise=0.02))
    assert order_text(old).startswith("fixed within each prompt")
    state = make_state({("big", "small", 4): 1.3}, noise=0.02, seed=3)
    state["plan"]["order"] = "random"
    rng = _random.Random(5)
    for group in state["groups"].values():
        units: dict = {}
        for run in group["samples"]:
            units.setdefault((run["prompt_index"], run["pass_index"]), []).append(run)
        for runs in units.values():
            rng.shuffle(runs)
            for position, run in enumerate(runs):
                run["position"] = position
                if position == 0:  # a cold first run: 10% slower end to end
                    run["wall_s"] *= 1.1
    text = order_text(analyse_sweep(state))
    assert text.startswith("random within each prompt (seeded, recorded per run)")
    ratio = float(text.split("against the later ones: ")[1].split("x")[0])
    assert 0.85 < ratio < 0.95
    for fmt in ("table", "markdown", "html"):
        assert "first run of a prompt against the later ones" in render_sweep(state, fmt)
