"""The order of runs within a unit (module `order`): seeded random permutations, recorded on every run, replayed
on --resume; files from before (no positions) still load and resume; the order-effect check; the race's probe
drawn stratified by category."""

from __future__ import annotations

import json
import random

import fake_engine
from click.testing import CliRunner
from synthetic import sample

from mlxdraft.cli import cli
from mlxdraft.measure import MeasureSettings
from mlxdraft.memory import MemoryBudget
from mlxdraft.order import order_effect, unit_order
from mlxdraft.prompts import Prompt
from mlxdraft.results import load_results
from mlxdraft.sweep import ModelChoice, SweepPlan

VARIANTS = [("baseline", 0), ("mlx-lm", 2), ("mlx-lm", 4)]


def test_each_unit_gets_its_own_seeded_permutation():
    orders = [tuple(unit_order(0, "big | small", (prompt, 0), VARIANTS)) for prompt in range(60)]
    assert orders == [tuple(unit_order(0, "big | small", (prompt, 0), VARIANTS)) for prompt in range(60)]
    assert all(sorted(order) == sorted(VARIANTS) for order in orders)
    assert len(set(orders)) == 6  # every permutation of three occurs
    firsts = [order[0] for order in orders]
    assert 10 <= firsts.count(("baseline", 0)) <= 30  # about a third of the units start with the baseline
    assert unit_order(1, "big | small", (0, 0), VARIANTS * 3) != unit_order(2, "big | small", (0, 0), VARIANTS * 3)


def sweep_args(tmp_path, out, *extra):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"prompt number {i} words" for i in range(6)))
    return ["sweep", "--engine", "fake", "--targets", "big", "--drafts", "small", "-k", "2,4", "--max-tokens", "16",
            "-w", "0", "-r", "2", "--prompts", str(prompts), "--strategy", "exhaustive", "-o", str(out), *extra]


def units_of(samples) -> dict:
    units: dict = {}
    for s in samples:
        units.setdefault((s.prompt_index, s.pass_index), []).append(s)
    return units


def test_an_exhaustive_sweep_runs_each_unit_in_a_random_order_and_records_it(tmp_path):
    fake_engine.install()
    out = tmp_path / "sweep.json"
    assert CliRunner().invoke(cli, sweep_args(tmp_path, out)).exit_code == 0
    results = load_results(out)
    assert results.plan.order == "random"
    units = units_of(results.groups["big | small"].samples)
    assert len(units) == 12
    for runs in units.values():
        assert [s.position for s in runs] == [0, 1, 2]  # saved in the order measured
    firsts = {(runs[0].method, runs[0].num_draft_tokens) for runs in units.values()}
    assert len(firsts) > 1  # the baseline is not always first


def test_an_interrupted_sweep_resumes_in_the_same_order(tmp_path, monkeypatch):
    fake_engine.install()
    assert CliRunner().invoke(cli, sweep_args(tmp_path, tmp_path / "whole.json")).exit_code == 0
    whole = load_results(tmp_path / "whole.json").groups["big | small"].samples
    engine = fake_engine.install()
    original, calls = engine.generate, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1 + 8:  # the memory probe, then mid-unit 3
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "generate", interrupted)
    out = tmp_path / "cut.json"
    assert CliRunner().invoke(cli, sweep_args(tmp_path, out)).exit_code == 130
    monkeypatch.setattr(engine, "generate", original)
    assert CliRunner().invoke(cli, sweep_args(tmp_path, out, "--resume")).exit_code == 0
    samples = load_results(out).groups["big | small"].samples
    key = lambda s: (s.prompt_index, s.pass_index, s.method, s.num_draft_tokens, s.position)  # noqa: E731
    assert [key(s) for s in samples] == [key(s) for s in whole]


def strip_order(path, keep: int) -> None:
    """Make `path` look like a file from before the order was randomised, cut after `keep` runs."""
    state = json.loads(path.read_text())
    state["plan"].pop("order", None)
    for group in state["groups"].values():
        group["status"] = "pending"
        del group["samples"][keep:]
        group["pruned"] = []
        for run in group["samples"]:
            run.pop("position", None)
    path.write_text(json.dumps(state))


def test_a_file_without_recorded_order_loads_and_resumes(tmp_path):
    fake_engine.install()
    out = tmp_path / "old.json"
    assert CliRunner().invoke(cli, sweep_args(tmp_path, out)).exit_code == 0
    strip_order(out, keep=7)  # two whole units and one run of the third
    old = load_results(out)
    assert old.plan.order == "fixed" and all(s.position is None for s in old.groups["big | small"].samples)
    result = CliRunner().invoke(cli, sweep_args(tmp_path, out, "--resume"))
    assert result.exit_code == 0, result.output
    samples = load_results(out).groups["big | small"].samples
    assert len(samples) == 36 and [s.position for s in samples[:6]] == [None] * 6
    assert all(s.position is not None for s in samples[6:])  # the cut unit measured again, in a random order


def test_a_smart_sweep_from_before_resumes_its_race_in_its_own_unit_order(tmp_path, monkeypatch):
    # an older smart file: units in file order, the baseline first in each; its race must continue, not restart
    from mlxdraft import sweep

    fake_engine.install()
    monkeypatch.setattr(sweep.SweepPlan, "race_units", sweep.SweepPlan.units)
    monkeypatch.setattr(sweep, "unit_order", lambda seed, group, unit, variants: list(variants))
    out = tmp_path / "old.json"
    args = sweep_args(tmp_path, out, "--strategy", "smart", "-k", "1,2,3,4")
    args.remove("exhaustive")
    args.remove("--strategy")
    args[args.index("-r") + 1] = "2"
    assert CliRunner().invoke(cli, args).exit_code == 0, "the old-style sweep"
    monkeypatch.undo()
    fake_engine.install()
    strip_order(out, keep=10)
    before = load_results(out).groups["big | small"].samples
    result = CliRunner().invoke(cli, args + ["--resume"])
    assert result.exit_code == 0, result.output
    after = load_results(out).groups["big | small"].samples
    assert "resuming the race after " in result.stderr
    assert [(s.prompt_index, s.method, s.num_draft_tokens) for s in after[:8]] == [
        (s.prompt_index, s.method, s.num_draft_tokens) for s in before[:8]]  # the whole units it had are kept


def runs_with_first_run_effect(effect: float, seed: int = 0, positions: bool = True) -> list:
    rng = random.Random(seed)
    runs = []
    for prompt in range(40):
        base = 10.0 * rng.lognormvariate(0, 0.3)
        order = unit_order(seed, "g", (prompt, 0), VARIANTS)
        for position, (_, k) in enumerate(order):
            speed = base * (1.2 if k else 1.0) * rng.lognormvariate(0, 0.01) * ((1 - effect) if position == 0 else 1)
            run = sample(k, prompt, 0, speed)
            run.position = position if positions else None
            runs.append(run)
    return runs


def test_the_order_effect_check_finds_a_slow_first_run():
    effects = order_effect(runs_with_first_run_effect(0.05), "decode_tps")
    pooled = effects[("all", 0)]
    assert pooled.first_runs == 40 and pooled.later_runs == 80
    assert pooled.low < 0.95 < pooled.high and pooled.high < 0.97
    for variant in VARIANTS:
        assert effects[variant].low < 0.95 < effects[variant].high
    calm = order_effect(runs_with_first_run_effect(0.0), "decode_tps")[("all", 0)]
    assert calm.low < 1.0 < calm.high
    assert order_effect(runs_with_first_run_effect(0.05, positions=False), "decode_tps") == {}


def plan_of(prompts: list[Prompt], seed: int = 0) -> SweepPlan:
    return SweepPlan(targets=[ModelChoice("big")], drafts=[ModelChoice("small")], num_draft_tokens=[2, 4],
                     settings=MeasureSettings(runs=2, seed=seed), prompts=prompts, budget=MemoryBudget(64.0, "test"),
                     strategy="smart")


def test_the_race_probe_draws_its_prompts_across_categories():
    # the built-in suite is sorted by category; the probe took the first 4 prompts (code and JSON only)
    categories = ["code"] * 4 + ["json"] * 4 + ["chat"] * 4
    prompts = [Prompt(f"p{i}", category) for i, category in enumerate(categories)]
    units = plan_of(prompts).race_units()
    assert sorted(units) == sorted(plan_of(prompts).units()) and units == plan_of(prompts).race_units()
    assert [pass_index for _, pass_index in units] == [0] * 12 + [1] * 12
    assert units[:12] != [(p, 0) for p in range(12)]
    for seed in range(20):
        first = [categories[p] for p, _ in plan_of(prompts, seed).race_units()[:6]]
        assert sorted(set(first[:3])) == ["chat", "code", "json"]  # every category among the first 3 units
        assert all(first.count(c) == 2 for c in ("chat", "code", "json"))  # and in proportion among the first 6
    assert plan_of(prompts, 1).race_units() != plan_of(prompts, 2).race_units()
