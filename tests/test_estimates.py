"""The per-unit estimates the measuring side decides from (module `estimates`) give the verdict the report prints:
settling judges a target with `judge_target`, never with the report's analysis, so the two must agree on every
file, pruned setups, failed groups and both objectives included."""

from __future__ import annotations

import random

import pytest
from synthetic import make_state

from mlxdraft.analysis import analyse_sweep
from mlxdraft.estimates import judge_target, paired_ratios, unit_of
from mlxdraft.results import Results


def shape(case):
    return None if case is None else (case.method, case.draft, case.num_draft_tokens)


def random_state(rng: random.Random) -> dict:
    drafts = rng.sample(["d1", "d2", "d3"], rng.randint(1, 3))
    ks = sorted(rng.sample([1, 2, 3, 4, 6, 8], rng.randint(1, 4)))
    speedups = {("big", d, k): rng.uniform(0.7, 1.6) for d in drafts for k in ks}
    statuses = {("big", d): "failed" for d in drafts[1:] if rng.random() < 0.2}
    state = make_state(speedups, drafts=tuple(drafts), ks=tuple(ks), prompts=rng.randint(2, 10),
                       runs=rng.randint(1, 2), noise=rng.choice([0.0, 0.05, 0.2]), seed=rng.randrange(10**6),
                       statuses=statuses, weights_gb={d: rng.choice([0.1, 0.5]) for d in drafts})
    for record in state["groups"].values():  # as a smart sweep leaves them: some setups pruned, some cut short
        for k in ks:
            if rng.random() < 0.3:
                record["pruned"] = record.get("pruned", []) + [{"method": "mlx-lm", "num_draft_tokens": k,
                                                                "after_units": 2, "reason": "test"}]
                if rng.random() < 0.5:
                    record["samples"] = [s for s in record["samples"]
                                         if s["num_draft_tokens"] != k or s["prompt_index"] < 2]
    return state


@pytest.mark.parametrize("seed", range(60))
def test_settling_judges_a_target_as_the_report_does(seed):
    rng = random.Random(seed)
    state = random_state(rng)
    results = Results.from_dict(state)
    analysis = analyse_sweep(results)
    for objective in ("e2e", "decode"):
        report = analysis.verdict("big", objective, _with_other=False)
        judged, competing = judge_target(results, "big", objective)
        assert judged.kind == report.kind
        assert shape(judged.chosen) == shape(report.chosen) and shape(judged.leader) == shape(report.leader)
        assert [shape(c) for c in judged.tied] == [shape(c) for c in report.tied]
        if report.verdict:
            assert judged.verdict.reason == report.verdict.reason
            assert judged.verdict.candidates == report.verdict.candidates
        assert {shape(c) for c in competing} == {shape(c) for c in analysis.measured("big") if c.ratios.get(objective)}
        for case in competing:
            [same] = [c for c in analysis.measured("big") if shape(c) == shape(case)]
            assert case.ratios[objective] == same.ratios[objective]
            assert case.own(objective) == same.comparison.speedup(objective)


def test_paired_ratios_pair_by_unit_and_average_passes_per_prompt():
    state = make_state({("big", "small", 2): 2.0}, drafts=("small",), ks=(2,), prompts=2, runs=2)
    [record] = Results.from_dict(state).groups.values()
    baseline = [s for s in record.samples if s.is_baseline]
    speculative = [s for s in record.samples if not s.is_baseline]
    assert {unit_of(s) for s in baseline} == {(0, 0), (1, 0), (0, 1), (1, 1)}
    assert paired_ratios(baseline, speculative, "decode_tps", "suite") == pytest.approx(
        {(0, 0): 2.0, (1, 0): 2.0, (0, 1): 2.0, (1, 1): 2.0})
    assert list(paired_ratios(baseline, speculative, "decode_tps")) == [0, 1]  # per prompt
    assert paired_ratios(baseline, speculative[:1], "decode_tps", "suite") == pytest.approx({(0, 0): 2.0})
    with pytest.raises(ValueError):
        paired_ratios(baseline, speculative, "decode_tps", "nonsense")


def test_predictions_are_fitted_once_when_measured_and_read_back_as_fitted():
    """A sweep stores each group's predictions when it measures the group; the report reads them, and they are
    what fitting the file's samples again gives."""
    from pathlib import Path

    from mlxdraft.estimates import fit_group_predictions, group_predictions
    from mlxdraft.results import load_results

    results = load_results(Path(__file__).parent / "data" / "sweep-v3-plugin.json")
    for record in results.groups.values():
        assert record.predictions, record.key
        stored = group_predictions(results, record)
        assert stored and stored == fit_group_predictions(results, record)
        record.predictions = None  # as a file before they were stored: fitted when reading
        assert group_predictions(results, record) == stored
    analysis = analyse_sweep(results)
    assert any(c.prediction for c in analysis.cases)
