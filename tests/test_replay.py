"""The replay engine (`engines.replay`): a smart sweep replayed on an exhaustive sweep's samples makes the
decisions, and keeps the runs, that the same sweep makes live when every run of a setup on a prompt gives
the same figures (the fake engine without noise); with noise, every replayed run is the recorded run of its
group, setup and prompt."""

from __future__ import annotations

import fake_engine
import pytest

from mlxdraft.engines.replay import NotRecordedError, ReplayEngine
from mlxdraft.measure import MeasureSettings
from mlxdraft.memory import MemoryBudget
from mlxdraft.methods import parse_methods
from mlxdraft.prompts import Prompt
from mlxdraft.sweep import ModelChoice, SweepPlan, SweepRun

PROMPTS = [Prompt(f"prompt number {i} words") for i in range(8)]
MODELS = {"big": fake_engine.FakeModel(token_s=0.1, weights_gb=4.0, verify_growth=0.1),
          "small": fake_engine.FakeModel(token_s=0.01, weights_gb=0.5, acceptance=0.8),
          "tiny": fake_engine.FakeModel(token_s=0.005, weights_gb=0.1, acceptance=0.5)}


def sweep(strategy: str, engine, k=(1, 2, 3, 4, 6), methods="mlx-lm", runs=1):
    plan = SweepPlan([ModelChoice("big")], [ModelChoice("small"), ModelChoice("tiny")], list(k),
                     MeasureSettings(max_tokens=64, warmup=1, runs=runs), PROMPTS, MemoryBudget(64.0, "test"),
                     methods=parse_methods(methods), engine="fake", strategy=strategy, objective="decode")
    run = SweepRun(plan, engine=engine)
    events = list(run.events())
    return run.results, events


def runs(results) -> list[tuple]:
    return [(key, s.method, s.num_draft_tokens, s.prompt_index, s.pass_index, s.wall_s, s.decode_tps,
             s.accepted_length_counts) for key, g in results.groups.items() for s in g.samples]


def test_a_smart_sweep_replayed_on_exhaustive_samples_measures_and_decides_as_it_does_live():
    exhaustive, _ = sweep("exhaustive", fake_engine.FakeEngine(MODELS))
    live, _ = sweep("smart", fake_engine.FakeEngine(MODELS))
    replayed, _ = sweep("smart", ReplayEngine(exhaustive, PROMPTS, fake_engine.FakeEngine(MODELS)))
    assert runs(replayed) == runs(live)
    assert len(runs(live)) < len(runs(exhaustive))
    assert [g.pruned for g in replayed.groups.values()] == [g.pruned for g in live.groups.values()]
    assert any(g.pruned for g in live.groups.values())
    assert {name: {key: value for key, value in record.items() if key in ("verify_s", "token_s")}
            for name, record in replayed.models.items()} == {
        name: {key: value for key, value in record.items() if key in ("verify_s", "token_s")}
        for name, record in exhaustive.models.items()}


def test_a_run_the_recorded_sweep_never_measured_fails_its_group_with_what_is_missing():
    recorded, _ = sweep("exhaustive", fake_engine.FakeEngine(MODELS), k=(1, 2))
    replayed, events = sweep("exhaustive", ReplayEngine(recorded, PROMPTS, fake_engine.FakeEngine(MODELS)),
                             k=(1, 2, 3))
    failed = [e.message for e in events if e.kind == "failed"]
    assert failed == ["big's forward passes of [1, 2, 3, 4] tokens were not timed in the recorded sweep",
                      "the recorded sweep has no run of mlx-lm k=3 with target big and draft tiny on prompt 1"]
    assert all(record.status == "failed" for record in replayed.groups.values())


def test_every_replayed_run_is_the_recorded_run_of_its_group_setup_and_prompt():
    # noisy, so that a baseline run served to the wrong group (or a setup's run to another draft's) shows;
    # prompt lookup runs in a group of the target alone, measured last, with the target still loaded
    exhaustive, _ = sweep("exhaustive", fake_engine.FakeEngine(MODELS, noise=0.05, seed=2),
                          methods="mlx-lm,prompt-lookup")
    replayed, _ = sweep("smart", ReplayEngine(exhaustive, PROMPTS, fake_engine.FakeEngine(MODELS)),
                        methods="mlx-lm,prompt-lookup")
    recorded = {(key, s.method, s.num_draft_tokens, s.prompt_index): s.wall_s
                for key, g in exhaustive.groups.items() for s in g.samples}
    served = [((key, s.method, s.num_draft_tokens, s.prompt_index), s.wall_s)
              for key, g in replayed.groups.items() for s in g.samples]
    assert {method for (_, method, _, _), _ in served} == {"baseline", "mlx-lm", "prompt-lookup"}
    assert all(recorded[key] == wall_s for key, wall_s in served)
    assert len(replayed.groups) == 3 and all(g.status == "done" for g in replayed.groups.values())


def test_a_sweep_of_several_passes_or_other_prompts_is_refused():
    recorded, _ = sweep("exhaustive", fake_engine.FakeEngine(MODELS), k=(1, 2), runs=2)
    with pytest.raises(NotRecordedError, match=r"only a sweep of one pass can be replayed; this one has 2"):
        ReplayEngine(recorded, PROMPTS, fake_engine.FakeEngine(MODELS))
    recorded, _ = sweep("exhaustive", fake_engine.FakeEngine(MODELS), k=(1, 2))
    with pytest.raises(NotRecordedError, match="prompts are not the recorded sweep's"):
        ReplayEngine(recorded, PROMPTS[:4], fake_engine.FakeEngine(MODELS))
