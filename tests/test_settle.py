"""Settling a verdict the smart sweep's races left open (module `settle`), on the fake engine (noise-free, so
every run of a setup on a prompt gives the same figures)."""

from __future__ import annotations

import json
import math

import fake_engine
from click.testing import CliRunner
from synthetic import make_state

from mlxdraft.analysis import analyse_sweep
from mlxdraft.cli import cli
from mlxdraft.measure import RunSample
from mlxdraft.results import GroupRecord, Results, load_results
from mlxdraft.settle import drop_unpaired_baselines, missed_units, next_catch_up


def install(draft_token_s: float, acceptance: float, verify_growth: float):
    return fake_engine.install(models={
        "big": fake_engine.FakeModel(token_s=0.1, weights_gb=4.0, verify_growth=verify_growth),
        "mid": fake_engine.FakeModel(token_s=draft_token_s, weights_gb=0.5, acceptance=acceptance)})


def sweep_args(tmp_path, out, *extra):
    prompts = tmp_path / "eight.txt"
    prompts.write_text("\n".join(f"prompt number {i} words" for i in range(8)))
    return ["sweep", "--engine", "fake", "--targets", "big", "--drafts", "mid", "-k", "1,2,3,4,6", "--max-tokens",
            "64", "-w", "0", "--prompts", str(prompts), "--objective", "decode", "-o", str(out), *extra]


def verdict(path) -> dict:
    result = CliRunner().invoke(cli, ["report", str(path), "--format", "json", "--objective", "decode"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["verdicts"][0]


def verdict_of_the_races_alone(path) -> str:
    results = load_results(path)
    for record in results.groups.values():
        record.samples = [s for s in record.samples if s.pass_index < results.plan.settings.runs]
    return analyse_sweep(results, "decode").verdict("big").kind


def catch_up_runs(path) -> list[tuple]:
    group = next(iter(load_results(path).groups.values()))
    return [(s.prompt_index, s.pass_index, s.method, s.num_draft_tokens) for s in group.samples if s.pass_index >= 1]


def smart_sweep_its_races_left_open(tmp_path, **engine):
    """A smart sweep on the fake engine whose races alone leave the verdict open: its file and CLI result."""
    install(**engine)
    out = tmp_path / "smart.json"
    result = CliRunner().invoke(cli, sweep_args(tmp_path, out))
    assert result.exit_code == 0, result.output
    assert verdict_of_the_races_alone(out) == "inconclusive"
    return out, result


def catch_up_units(path) -> dict:
    """{(prompt, pass): sorted setups} of the catch-up units; each holds exactly one baseline run."""
    units: dict = {}
    for prompt, pass_index, method, k in catch_up_runs(path):
        units.setdefault((prompt, pass_index), []).append((method, k))
    return {unit: sorted(setups) for unit, setups in units.items()}


def test_a_leader_admitted_after_the_probe_is_measured_on_the_prompts_it_missed(tmp_path):
    # k=1 wins by about 10%; the race admits it after the 3-prompt probe (k=6 surely slower) as the model's check,
    # and the other k after the check: measured on 5 and 2 prompts, too few to decide
    out, result = smart_sweep_its_races_left_open(tmp_path, draft_token_s=0.02, acceptance=0.4, verify_growth=0.1)
    # one unit at a time, judged again after each, the leader with its group's other late setups
    units = catch_up_units(out)
    assert units and all(setups.count(("baseline", 0)) == 1 and len(setups) > 1 for setups in units.values())
    assert all(pass_index == 1 for _, pass_index in units)
    settled = verdict(out)
    assert (settled["verdict"], settled["num_draft_tokens"]) == ("speculative", 1)
    assert "settling big: the decode verdict is open (mlx-lm mid k=1 leads at " in result.stderr
    assert result.stderr.count("settling big") == len(units)
    runs = sum(1 for _, _, method, k in catch_up_runs(out) if (method, k) == ("mlx-lm", 1))
    for fmt, expected in (("table", f"- big + mlx-lm mid k=1: {runs} catch-up run(s), each next to a baseline run "
                                    "of its own"),
                          ("html", '<section id="caught-up">')):
        report = CliRunner().invoke(cli, ["report", str(out), "--format", fmt])
        assert report.exit_code == 0 and expected in report.stdout, report.output
    exhaustive = tmp_path / "all.json"
    assert CliRunner().invoke(cli, sweep_args(tmp_path, exhaustive, "--strategy", "exhaustive")).exit_code == 0
    assert (verdict(exhaustive)["verdict"], verdict(exhaustive)["num_draft_tokens"]) == ("speculative", 1)
    assert catch_up_runs(exhaustive) == []  # nothing of an exhaustive sweep is left open by a race


def test_no_gain_is_settled_by_measuring_the_setups_that_could_still_win(tmp_path):
    # an expensive draft: every k is a little slower than the baseline, k=1 too close to tell on its 4 units
    out, result = smart_sweep_its_races_left_open(tmp_path, draft_token_s=0.09, acceptance=0.9, verify_growth=0.05)
    settling = result.stderr[result.stderr.index("settling big"):]
    assert settling.count("settling big") == 3 and settling.count("loading draft mid") == 1  # loaded once
    # judged again after each catch-up unit (k=1, the model's check, and k=2, admitted after it, could still win):
    # decided after 3 of the 6 units k=2 missed, so the others are never run
    units = catch_up_units(out)
    assert len(units) == 3 and all(setups.count(("baseline", 0)) == 1 for setups in units.values())
    assert {k for setups in units.values() for _, k in setups} == {0, 1, 2}
    assert verdict(out)["verdict"] == "no-gain"


def test_a_sweep_stopped_while_settling_resumes_to_the_same_runs(tmp_path, monkeypatch):
    install(draft_token_s=0.02, acceptance=0.4, verify_growth=0.1)
    assert CliRunner().invoke(cli, sweep_args(tmp_path, tmp_path / "whole.json")).exit_code == 0
    whole = next(iter(load_results(tmp_path / "whole.json").groups.values())).samples
    raced = sum(1 for s in whole if s.pass_index == 0)
    engine = install(draft_token_s=0.02, acceptance=0.4, verify_growth=0.1)
    original, calls = engine.generate, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1 + raced + 2:  # the memory probe, the races, then the first catch-up unit's k=1 run
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "generate", interrupted)
    out = tmp_path / "cut.json"
    assert CliRunner().invoke(cli, sweep_args(tmp_path, out)).exit_code == 130
    cut = next(iter(load_results(out).groups.values())).samples
    assert cut[-1].pass_index == 1  # saved, the rest of its catch-up unit not yet measured (dropped on resume)
    monkeypatch.setattr(engine, "generate", original)
    resumed = CliRunner().invoke(cli, sweep_args(tmp_path, out, "--resume"))
    assert resumed.exit_code == 0, resumed.output
    samples = next(iter(load_results(out).groups.values())).samples
    assert [(s.prompt_index, s.pass_index, s.method, s.num_draft_tokens, s.decode_tps) for s in samples] == [
        (s.prompt_index, s.pass_index, s.method, s.num_draft_tokens, s.decode_tps) for s in whole]


def sample(prompt_index: int, pass_index: int, method: str = "mlx-lm", k: int = 2) -> RunSample:
    return RunSample(num_draft_tokens=k if method != "baseline" else 0, prompt_index=prompt_index, category="c",
                     pass_index=pass_index, prompt_tokens=5, generated_tokens=8, ttft_s=0.1, prefill_tps=50.0,
                     decode_tokens=7, decode_s=0.7, decode_tps=10.0, wall_s=0.8, peak_memory_gb=1.0,
                     finish_reason="length", token_ids=[1] * 8, method=method)


def test_missed_units_are_the_plan_units_measured_without_the_setup_nor_its_catch_up():
    record = GroupRecord("big", "mid", samples=[
        sample(0, 0, "baseline"), sample(1, 0, "baseline"), sample(1, 0),
        sample(2, 0, "baseline"), sample(2, 0),
        sample(0, 1, "baseline"), sample(0, 1, "baseline"), sample(0, 1),  # pass 1 is a catch-up pass of 1
    ])
    assert missed_units(record, ("mlx-lm", 2), passes=1) == []
    assert missed_units(record, ("mlx-lm", 3), passes=1) == [(0, 0), (1, 0), (2, 0)]
    record.samples.append(sample(3, 1, "baseline"))  # stopped before its setup ran
    assert drop_unpaired_baselines(record, passes=1) == 1
    assert [(s.prompt_index, s.pass_index) for s in record.samples][-1] == (0, 1)
    assert drop_unpaired_baselines(record, passes=1) == 0  # a plan unit's baseline is never dropped
    # the order within a unit is random: a catch-up unit cut before its baseline ran leaves a setup's run unpaired
    record.samples.append(sample(3, 1))
    assert drop_unpaired_baselines(record, passes=1) == 1
    assert [(s.prompt_index, s.pass_index) for s in record.samples][-1] == (0, 1)


def late_tied_state(late_ratio: float, runs: int = 1) -> Results:
    """One group, 8 prompts in `runs` passes: k=6 (the probe's setup) on all of them, a wide 1.19x; k=2 admitted
    after the probe, on prompts 5-8 only, `late_ratio` +-10%: behind the leader, tied with it."""
    state = make_state({}, drafts=("small",), ks=(2, 6), prompts=8, runs=runs)
    record = state["groups"]["big | small"]
    baseline = {s["prompt_index"]: s["decode_tps"] for s in record["samples"] if s["num_draft_tokens"] == 0}
    kept = []
    for s in record["samples"]:
        p, k = s["prompt_index"], s["num_draft_tokens"]
        if k == 6:
            s["decode_tps"] = baseline[p] * (1.5 if p % 2 else 0.95)
        elif k == 2:
            if p < 4:
                continue
            s["decode_tps"] = baseline[p] * late_ratio * math.exp(0.1 if p % 2 else -0.1)
        kept.append(s)
    record["samples"] = kept
    return Results.from_dict(state)


def test_a_late_setup_tied_with_an_undecided_leader_is_caught_up_when_it_would_show_the_gain():
    results = late_tied_state(1.15)
    verdict = analyse_sweep(results, "decode").verdict("big", "decode", _with_other=False)
    assert verdict.kind == "inconclusive" and verdict.leader.num_draft_tokens == 6  # measured everywhere
    assert [c.num_draft_tokens for c in verdict.tied] == [2]
    catch_up = next_catch_up(results, "big", "decode")
    assert catch_up.runs == [((0, 1), [("mlx-lm", 2)])]
    assert "(tied with the leader, and as measured so far they would show a gain on every unit)" in catch_up.reason
    # one that would stay undecided on every unit is not worth the runs
    assert next_catch_up(late_tied_state(1.04), "big", "decode") is None


def test_a_late_setup_is_caught_up_only_when_the_prompts_it_missed_would_decide_it():
    # two passes: k=2 missed 8 units but only 4 prompts, and passes of a prompt add nothing about prompts like
    # it; at 1.10x +-10% it would need 11 prompts to show the gain, so it is not worth the runs (counting runs,
    # 4 + 8 missed units, it was)
    assert next_catch_up(late_tied_state(1.10, runs=2), "big", "decode") is None
    assert next_catch_up(late_tied_state(1.15, runs=2), "big", "decode").runs == [((0, 2), [("mlx-lm", 2)])]


def test_a_leader_with_a_run_of_every_prompt_is_not_caught_up_on_passes():
    # two passes; k=2 (late in pass 0, on every prompt in pass 1) leads, undecided: it misses 4 units but no prompt
    state = make_state({}, drafts=("small",), ks=(2, 6), prompts=8, runs=2)
    record = state["groups"]["big | small"]
    baseline = {(s["prompt_index"], s["pass_index"]): s["decode_tps"] for s in record["samples"]
                if s["num_draft_tokens"] == 0}
    kept = []
    for s in record["samples"]:
        unit, k = (s["prompt_index"], s["pass_index"]), s["num_draft_tokens"]
        if k == 6:
            s["decode_tps"] = baseline[unit] * 0.95 * math.exp(0.2 if unit[0] % 3 else -0.2)
        elif k == 2:
            if unit[1] == 0 and unit[0] < 4:
                continue
            s["decode_tps"] = baseline[unit] * 1.04 * math.exp(0.3 if unit[0] % 2 else -0.3)
        kept.append(s)
    record["samples"] = kept
    results = Results.from_dict(state)
    verdict = analyse_sweep(results, "decode").verdict("big", "decode", _with_other=False)
    assert verdict.kind == "inconclusive" and verdict.leader.num_draft_tokens == 2 and verdict.verdict.estimate.n == 8
    assert missed_units(results.groups["big | small"], ("mlx-lm", 2), passes=2) == [(0, 0), (1, 0), (2, 0), (3, 0)]
    assert next_catch_up(results, "big", "decode") is None
