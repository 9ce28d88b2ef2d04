"""Verdicts and reports on hand-made results with known answers (no models, no timing noise),
through the same analysis and rendering functions the CLI uses."""

import json
import math
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from synthetic import make_state

from mlxdraft.analysis import analyse_sweep
from mlxdraft.cli import cli
from mlxdraft.reports import render_pair, render_sweep
from mlxdraft.results import load_results

DATA = Path(__file__).parent / "data"
KS = (1, 2, 3, 4, 6, 8)
DRAFTS = ("d1", "d2", "d3")


def verdict_of(state, objective="e2e"):
    [verdict] = analyse_sweep(state, objective).verdicts()
    return verdict


def test_clear_winner_is_speculative_with_commands():
    state = make_state({("big", "small", 4): 1.5}, noise=0.03)
    verdict = verdict_of(state, "decode")
    assert verdict.kind == "speculative"
    assert (verdict.chosen.draft, verdict.chosen.num_draft_tokens) == ("small", 4)
    assert verdict.verdict.estimate.low > 1.0 and verdict.verdict.estimate.candidates == 4
    assert verdict.commands[0].startswith("mlx_lm.generate --model /models/big --draft-model /models/small "
                                          "--num-draft-tokens 4")


def test_everything_slower_is_no_gain():
    state = make_state({(t, d, k): 0.6 for t in ["big"] for d in ["small", "tiny"] for k in (2, 4)}, noise=0.03)
    verdict = verdict_of(state)
    assert verdict.kind == "no-gain" and verdict.chosen is None and verdict.commands == []
    assert "run the target without speculative decoding" in render_sweep(state)


def test_a_tie_not_shown_equivalent_keeps_the_fastest():
    speedups = {("big", "small", 4): 1.52, ("big", "tiny", 4): 1.50}
    state = make_state(speedups, noise=0.05, weights_gb={"small": 0.5, "tiny": 0.1}, seed=1)
    verdict = verdict_of(state, "decode")
    assert verdict.kind == "speculative"
    assert verdict.leader.draft == "small" and [c.draft for c in verdict.tied] == ["tiny"]
    assert verdict.chosen.draft == "small" and verdict.verdict.rule == "fastest"  # tied, but not shown within 3%
    assert "the fastest setup (no cheaper setup is shown within 3% of it)" in verdict.verdict.reason
    text = render_sweep(state, objective="decode")
    # said by the rule that chose: the fastest was, so nothing says the cheapest was
    assert "    not shown different from the fastest (and not shown within 3% of it): mlx-lm tiny k=4\n" in text
    assert "cheapest" not in text and "statistically tied" not in text


def test_a_cheaper_draft_shown_within_three_percent_of_the_fastest_is_chosen():
    speedups = {("big", "small", 4): 1.52, ("big", "tiny", 4): 1.50}
    state = make_state(speedups, noise=0.005, weights_gb={"small": 0.5, "tiny": 0.1}, seed=1)
    verdict = verdict_of(state, "decode")
    assert verdict.kind == "speculative" and verdict.leader.draft == "small"
    assert verdict.chosen.draft == "tiny" and verdict.verdict.rule == "equivalent"
    assert "the cheapest setup within 3% of the fastest, mlx-lm small k=4 at 1.52x (equivalence test" in (
        verdict.verdict.reason)
    text = render_sweep(state, objective="decode")
    assert "    chosen: the cheapest within 3% of the fastest (equivalence test)\n" in text
    assert "not shown within 3%" not in text


def test_decode_gain_lost_end_to_end_is_said_in_one_line():
    # decode 1.3x faster, but the speculative first token takes 1 s more than the baseline's 0.5 s
    state = make_state({("big", "small", 4): 1.3}, noise=0.02, spec_ttft_s=1.5)
    text = render_sweep(state)
    e2e = verdict_of(state)
    assert e2e.kind == "no-gain"
    assert "    by decode speed alone: speculative, mlx-lm small k=4 (" in text


def test_one_and_two_units_have_no_error_bar():
    state = make_state({("big", "small", 4): 1.5}, prompts=2, drafts=("small",), ks=(4,))
    text = render_pair({**state, "kind": "pair"})
    [speedup] = [line for line in text.splitlines() if line.startswith("Speedup")]
    assert speedup == ("Speedup         end to end 1.40x (n=2 prompts, no error bar); "
                       "decode 1.50x (n=2 prompts, no error bar)")
    assert "INCONCLUSIVE: n=2 prompts: too few for an interval" in text


def test_temperature_note_and_commands_carry_temp():
    state = make_state({("big", "small", 4): 1.5}, noise=0.02, temp=0.7)
    text = render_sweep(state, objective="decode")
    assert "accepts a draft token only when it equals the target's own, independently sampled token" in text
    assert "--num-draft-tokens 4 --temp 0.7 --prompt 'Hello'" in text


def test_baseline_shown_belongs_to_its_pair():
    state = make_state({}, noise=0.0, baseline_tps=10.0)
    for sample in state["groups"]["big | tiny"]["samples"]:
        sample["decode_tps"] *= 2  # the tiny pair's runs (baseline too) were twice as fast
    analysis = analyse_sweep(state)
    assert analysis.baselines[("big", "tiny")]["decode_tps"].mean == pytest.approx(
        2 * analysis.baselines[("big", "small")]["decode_tps"].mean)


@pytest.mark.slow
def test_simulated_null_sweeps_rarely_say_speculative():
    """Every setup truly 1.00, 10% run noise, 6 k x 3 drafts, 12 prompts: at most 5% 'speculative'."""
    rng = random.Random(7)
    trials, false = 100, 0
    for _ in range(trials):
        state = make_state({}, drafts=DRAFTS, ks=KS, noise=0.1, seed=rng.randrange(10**9))
        false += verdict_of(state, "decode").kind == "speculative"
    assert false / trials <= 0.05


@pytest.mark.slow
def test_simulated_true_gain_is_found():
    rng = random.Random(8)
    trials, found = 40, 0
    for _ in range(trials):
        state = make_state({("big", "d2", 4): 1.3}, drafts=DRAFTS, ks=KS, noise=0.1, seed=rng.randrange(10**9))
        verdict = verdict_of(state, "decode")
        found += verdict.kind == "speculative" and verdict.chosen.draft == "d2"
    assert found / trials >= 0.8


@pytest.mark.parametrize("name", ["pair-v1.json", "sweep-v1.json"])
@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json", "html"])
def test_schema_1_files_still_render(name, fmt):
    result = CliRunner().invoke(cli, ["report", str(DATA / name), "--format", fmt])
    assert result.exit_code == 0, result.output
    if fmt == "json":
        data = json.loads(result.stdout)
        [verdict] = data["verdicts"]
        # one prompt in three passes: about prompts like it (the default) there is no interval
        assert verdict["n"] == 1 and verdict["verdict"] == "inconclusive" and verdict["unit"] == "prompt"
        assert verdict["e2e_speedup"]["low"] is None
        assert verdict["scope"] == "for prompts like this one (n = prompts, the median of each prompt's passes)"


@pytest.mark.parametrize("name", ["pair-v1.json", "sweep-v1.json"])
def test_schema_1_files_judged_on_their_exact_prompts_use_the_passes(name):
    [verdict] = analyse_sweep(load_results(DATA / name), "e2e", estimand="suite").verdicts()
    estimate = verdict.verdict.estimate
    assert estimate.n == 3 and estimate.low is not None  # recomputed from the raw samples, per run
    assert verdict.verdict.scope == "for this prompt exactly (n = 3 runs, prompt x pass)"


def test_a_pair_cut_short_after_a_lucky_run_cannot_lead():
    state = make_state({("big", "small", 2): 1.5, ("big", "tiny", 2): 1.1}, noise=0.03)
    group = state["groups"]["big | tiny"]
    group["samples"] = group["samples"][:2]  # baseline and k=2 of the first prompt only
    group["samples"][1]["decode_tps"] *= 3  # one lucky run
    group["status"] = "failed"
    verdict = verdict_of(state, "decode")
    assert verdict.kind == "speculative" and verdict.chosen.draft == "small"


def test_no_gain_needs_every_setup_below_the_baseline():
    from mlxdraft.stats import Candidate, decide

    rng = random.Random(1)
    tight = {unit: 0.95 * (2.718 ** rng.gauss(0, 0.01)) for unit in range(12)}
    noisy = {unit: 0.85 * (2.718 ** rng.gauss(0, 0.4)) for unit in range(12)}
    verdict = decide([Candidate("tight", tight), Candidate("noisy", noisy)])
    assert verdict.verdict == "inconclusive"  # the noisy one may still beat the baseline


def test_unfinished_measurements_are_flagged_and_not_called_no_gain():
    state = make_state({("big", "small", 2): 0.8, ("big", "small", 4): 0.8, ("big", "tiny", 2): 1.5}, noise=0.02)
    group = state["groups"]["big | tiny"]
    group["samples"] = group["samples"][:6]  # two prompts of twelve
    group["status"] = "pending"
    text = render_sweep(state, objective="decode")
    assert "unfinished: 1 pair(s) still pending, 6 of their 36 runs measured; continue with --resume" in text
    verdict = verdict_of(state, "decode")
    assert verdict.kind == "inconclusive" and "has too few runs to judge" in verdict.verdict.reason


def test_a_target_measured_alone_shows_its_baseline():
    state = make_state({}, noise=0.02)
    state["plan"]["targets"].append("solo")
    state["models"]["solo"] = dict(state["models"]["big"], name="solo")
    samples = [s for s in state["groups"]["big | small"]["samples"] if s["num_draft_tokens"] == 0]
    state["groups"]["solo | -"] = {"target": "solo", "draft": None, "status": "done", "reason": None,
                                   "samples": samples}
    text = render_sweep(state)
    assert ("- solo: measured alone, for its baseline (no draft other than itself and no larger than it): "
            "decode ") in text
    assert "(target alone)" in text


def test_a_long_clean_prompt_is_no_outlier_and_a_stalled_run_is_one():
    from synthetic import sample

    from mlxdraft.analysis import compare

    rng = random.Random(4)
    baseline, speculative = [], []
    for pass_index in range(3):
        for prompt in range(12):
            ttft = 2.5 if prompt == 0 else 0.5  # a long prompt: its prefill makes it ~25% slower end to end
            baseline.append(sample(0, prompt, pass_index, 10.0 * math.exp(rng.gauss(0, 0.01)), ttft_s=ttft))
            speculative.append(sample(4, prompt, pass_index, 13.0 * math.exp(rng.gauss(0, 0.01)), ttft_s=ttft,
                                      acceptance=0.25 if prompt == 0 else 0.75))  # and a prompt drafts badly
    assert baseline[0].e2e_tps < 0.8 * baseline[1].e2e_tps
    clean = compare(baseline, speculative, 4, greedy=True)
    assert clean.acceptance_rate.min == 0.25
    assert clean.outlier_runs == {"decode": [], "e2e": []}
    assert (clean.units, clean.runs, clean.e2e_speedup.n) == (12, 36, 12)  # the prompt is the unit
    assert 0.005 < clean.pass_log_sd["decode"] < 0.03  # the passes of a prompt agree (1% noise a run)
    stalled = speculative[12 + 5]  # prompt index 5, pass index 1: its decode took 2.5 times as long
    stalled.decode_s *= 2.5
    stalled.decode_tps /= 2.5
    stalled.wall_s = stalled.ttft_s + stalled.decode_s
    assert compare(baseline, speculative, 4, greedy=True).outlier_runs == {"decode": [(5, 1)], "e2e": [(5, 1)]}


def test_prompts_to_add_are_spread_over_the_suites_categories():
    from mlxdraft.analysis import prompts_to_add

    suite = ["code"] * 6 + ["chat"] * 3 + ["math"] * 3
    assert prompts_to_add(8, suite) == {"code": 4, "chat": 2, "math": 2}
    assert prompts_to_add(5, suite) == {"code": 3, "chat": 1, "math": 1}  # 2.5, 1.25, 1.25: code's remainder
    assert prompts_to_add(1, suite) == {"code": 1}
    assert prompts_to_add(0, suite) == {} and prompts_to_add(3, []) == {}


def test_an_open_verdict_about_prompts_like_these_asks_for_prompts_by_category():
    state = make_state({("big", "small", 4): 1.06}, noise=0.08, drafts=("small",), ks=(4,), seed=3)
    analysis = analyse_sweep(state, "decode")
    [verdict] = [analysis.verdict("big", "decode")]
    assert verdict.kind == "inconclusive" and verdict.verdict.more_units_needed
    added = analysis.prompts_to_add(verdict)
    assert sum(added.values()) == verdict.verdict.more_units_needed and set(added) == {"cat0", "cat1"}
    assert "more prompts like these (spread over the suite's categories)" in verdict.verdict.reason
