"""Engines side by side (issue #22, point 7): a sweep of two engines (the fake engine registered twice, the second
twice as fast) keeps every group within one engine, measures a method only where its engine runs it, and every
report format shows both engines and the ratio between them, which the fake engines' speeds fix exactly."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass

import fake_engine
import pytest
from click.testing import CliRunner

from mlxdraft import engines as engine_registry
from mlxdraft import sweep as sweeping
from mlxdraft.analysis import analyse_sweep
from mlxdraft.catalog import CatalogEntry
from mlxdraft.cli import cli
from mlxdraft.crossengine import bits_word, cross_engine
from mlxdraft.engines import Capabilities
from mlxdraft.measure import MeasureSettings
from mlxdraft.memory import MemoryBudget
from mlxdraft.methods import METHODS, parse_methods
from mlxdraft.prompts import Prompt
from mlxdraft.reports import render_sweep
from mlxdraft.results import Results, load_results
from mlxdraft.sweep import ModelChoice, SweepPlan, SweepRun

FAST = 2.0  # the second engine runs every model this many times faster


def models(prefix: str, speed: float) -> dict:
    """A target and two drafts; every time (token, prefill) divided by `speed`."""
    return {f"{prefix}-big": fake_engine.FakeModel(token_s=0.1 / speed, prefill_token_s=0.002 / speed, weights_gb=4.0),
            f"{prefix}-small": fake_engine.FakeModel(token_s=0.01 / speed, prefill_token_s=0.002 / speed,
                                                     weights_gb=0.5, acceptance=0.8),
            f"{prefix}-tiny": fake_engine.FakeModel(token_s=0.005 / speed, prefill_token_s=0.002 / speed,
                                                    weights_gb=0.1, acceptance=0.5)}


class SecondEngine(fake_engine.FakeEngine):
    """The fake engine under another name, without draft-adaptive (a method only the first engine runs)."""

    name = "fake-b"

    @property
    def capabilities(self):
        runs = tuple(key for key, m in METHODS.items()
                     if m.native_engine in (None, "mlx-lm") and key != "draft-adaptive")
        return Capabilities(methods=runs, forward_timing=True, memory_estimate=True, peak_memory=True)


@pytest.fixture
def two_engines(monkeypatch):
    first = fake_engine.FakeEngine(models("a", 1.0))
    second = SecondEngine(models("b", FAST))
    monkeypatch.setitem(engine_registry.ENGINES, "fake", first)
    monkeypatch.setitem(engine_registry.ENGINES, "fake-b", second)
    return first, second


def choice(name: str, engine: str, params_b: float) -> ModelChoice:
    return ModelChoice(name, params_b, "fp16" if engine == "fake" else "f16", None, engine, "fam", f"{params_b:g}b")


def run_sweep(methods="mlx-lm,draft-adaptive", runs=1, strategy="exhaustive") -> Results:
    targets = [choice("a-big", "fake", 1.0), choice("b-big", "fake-b", 1.0)]
    drafts = [choice(f"{p}-{size}", engine, 0.1) for p, engine in (("a", "fake"), ("b", "fake-b"))
              for size in ("small", "tiny")]
    prompts = [Prompt(f"prompt number {i} " + "word " * i) for i in range(4)]
    plan = SweepPlan(targets, drafts, [2, 4], MeasureSettings(max_tokens=12, warmup=0, runs=runs), prompts,
                     MemoryBudget(64.0, "test"), methods=parse_methods(methods), engines=["fake", "fake-b"],
                     strategy=strategy)
    run = SweepRun(plan)
    for _ in run.events():
        pass
    return run.results


def test_groups_stay_within_an_engine_and_measure_only_what_it_runs(two_engines):
    results = run_sweep()
    groups = {record.key: record for record in results.groups.values()}
    assert set(groups) == {"a-big | a-small", "a-big | a-tiny", "b-big | b-small", "b-big | b-tiny"}
    for record in groups.values():
        assert record.status == "done"
        engine = "fake" if record.target.startswith("a-") else "fake-b"
        assert record.engine == engine
        assert record.draft.startswith(record.target[0])
        measured = {s.method for s in record.samples if not s.is_baseline}
        expected = {"mlx-lm", "draft-adaptive"} if engine == "fake" else {"mlx-lm"}
        assert measured == expected and record.methods == sorted(expected, key=["mlx-lm", "draft-adaptive"].index)
    assert results.plan.engines == ["fake", "fake-b"] and results.plan.engine_order == "sequential"
    assert results.models["b-big"]["engine"] == "fake-b" and results.models["a-big"]["size_label"] == "1b"


def test_the_ratio_between_engines_is_the_speed_ratio_of_the_fake_engines(two_engines):
    analysis = analyse_sweep(run_sweep("mlx-lm"))
    cross = cross_engine(analysis)
    [row] = cross.rows
    assert (row.size, row.bits) == ("fam 1b", "fp16")  # fp16 (mlx) and F16 (gguf) are one row
    assert [f.engine for f in row.figures] == ["fake", "fake-b"]
    for what in ("baseline", "best"):
        for objective in ("e2e", "decode"):
            estimate = row.ratio(what, objective).estimate
            assert math.isclose(estimate.geomean, FAST, rel_tol=1e-6), (what, objective, estimate)
            assert estimate.n == 4  # prompts, each measured by both engines
    first, second = row.figures
    assert math.isclose(second.baseline_e2e_tps.mean / first.baseline_e2e_tps.mean, FAST, rel_tol=1e-6)
    assert first.best is not None and second.best is not None and second.best.method == "mlx-lm"
    assert first.alone_peak_memory_gb is not None and second.alone_peak_memory_gb is not None


def test_best_against_best_pairs_each_engines_own_best_setup_by_prompt(two_engines):
    """Each engine's verdict picks its own setup (here not the same one): the ratio is still per prompt, each
    engine's best setup's speed against the other's."""
    results = run_sweep()
    row = cross_engine(analyse_sweep(results)).rows[0]
    first, second = row.figures
    assert (first.best.method, first.best.num_draft_tokens) != (second.best.method, second.best.num_draft_tokens)

    def speeds(figures):
        best = figures.best
        group = results.groups[f"{figures.target} | {best.draft}"]
        return {s.prompt_index: s.e2e_tps for s in group.samples
                if (s.method, s.num_draft_tokens) == (best.method, best.num_draft_tokens)}
    mine, theirs = speeds(second), speeds(first)
    expected = math.exp(sum(math.log(mine[p] / theirs[p]) for p in mine) / len(mine))
    assert math.isclose(row.ratio("best", "e2e").estimate.geomean, expected, rel_tol=1e-9)
    assert not math.isclose(expected, FAST, rel_tol=1e-3)


def test_every_format_shows_both_engines_and_the_cross_engine_table(two_engines):
    results = run_sweep()
    table = render_sweep(results, "table")
    assert "Engines side by side (fake, fake-b;" in table
    assert "fake-b's baseline is already 2.00x fake's here [2.00, 2.00], n=4 prompts" in table
    assert "one engine after the other, not interleaved" in table
    assert "engines fake, fake-b" in table
    markdown = render_sweep(results, "markdown")
    assert "## Engines side by side" in markdown and "| engine" in markdown
    html = render_sweep(results, "html")
    assert '<section id="engines">' in html and "fake-b&#x27;s baseline is already 2.00x fake&#x27;s here" in html
    data = json.loads(render_sweep(results, "json"))
    assert data["engines"] == ["fake", "fake-b"]
    assert {case["engine"] for case in data["cases"]} == {"fake", "fake-b"}
    ratio = next(r for r in data["cross_engine"]["rows"][0]["ratios"] if r["what"] == "baseline"
                 and r["objective"] == "e2e")
    assert math.isclose(ratio["estimate"]["geomean"], FAST, rel_tol=1e-6)
    rows = list(csv.DictReader(io.StringIO(render_sweep(results, "csv"))))
    cases = [r for r in rows if r["table"] == "case"]
    assert {r["engine"] for r in cases} == {"fake", "fake-b"}
    assert not any(r["method"] == "draft-adaptive" for r in cases if r["engine"] == "fake-b")
    [reference, other] = [r for r in rows if r["table"] == "cross-engine"]
    assert (reference["engine"], other["engine"], other["versus_engine"]) == ("fake", "fake-b", "fake")
    assert math.isclose(float(other["baseline_ratio_e2e"]), FAST, rel_tol=1e-5) and other["baseline_ratio_e2e_n"] == "4"
    assert reference["baseline_ratio_e2e"] == ""


def test_a_results_file_of_two_engines_renders_after_a_round_trip(two_engines, tmp_path):
    path = tmp_path / "two.json"
    path.write_text(json.dumps(run_sweep().to_dict()))
    results = load_results(path)
    assert results.groups["b-big | b-small"].engine == "fake-b"
    assert "Engines side by side" in render_sweep(results, "table")


def test_a_file_of_one_engine_renders_as_before(two_engines):
    """No engine column and no cross-engine table; an older file (no engines list, no group engines) the same."""
    targets, drafts = [ModelChoice("a-big")], [ModelChoice("a-small")]
    plan = SweepPlan(targets, drafts, [2], MeasureSettings(max_tokens=8, warmup=0), [Prompt("one two")],
                     MemoryBudget(64.0, "test"), engine="fake")
    run = SweepRun(plan)
    for _ in run.events():
        pass
    data = run.results.to_dict()
    older = json.loads(json.dumps(data))
    del older["plan"]["engines"], older["plan"]["engine_order"]
    for group in older["groups"].values():
        group.pop("engine"), group.pop("methods")
    for fmt in ("table", "markdown", "html", "json", "csv"):
        new, old = render_sweep(Results.from_dict(data), fmt), render_sweep(Results.from_dict(older), fmt)
        assert new == old, fmt
        assert "Engines side by side" not in new and "cross_engine" not in new
    assert render_sweep(Results.from_dict(older), "csv").startswith("target,method,")


@dataclass(frozen=True)
class Entry(CatalogEntry):
    engine: str = "mlx-lm"


def test_the_cli_sweeps_two_engines_from_a_family(two_engines, monkeypatch, tmp_path):
    entries = [Entry("fam:a-big", "fam", "offline", 1.0, "fp16", "target", 1.0, engine="fake"),
               Entry("fam:a-small", "fam", "offline", 0.1, "fp16", "draft", 0.1, engine="fake"),
               Entry("fam:b-big", "fam", "offline", 1.0, "f16", "target", 1.0, engine="fake-b"),
               Entry("fam:b-small", "fam", "offline", 0.1, "f16", "draft", 0.1, engine="fake-b"),
               Entry("fam:c-big", "fam", "offline", 1.0, "fp16", "target", 1.0, engine="other-engine")]
    monkeypatch.setattr(sweeping, "family_entries", lambda family: entries)
    first, second = two_engines
    for engine in (first, second):
        engine.models.update({f"fam:{name}": spec for name, spec in engine.models.items()})
    output = tmp_path / "two.json"
    args = ["sweep", "--family", "fam", "--engines", "fake,fake-b", "-k", "2", "--max-tokens", "8",
            "--prompt", "one two three", "--strategy", "exhaustive", "-o", str(output)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "on fake, fake-b (one engine after the other)" in result.stderr
    assert "loading target fam:b-big on fake-b ..." in result.stderr
    results = load_results(output)
    assert {r.key: r.engine for r in results.groups.values()} == {"fam:a-big | fam:a-small": "fake",
                                                                  "fam:b-big | fam:b-small": "fake-b"}
    assert "Engines side by side" in result.stdout
    assert results.plan.methods == ["mlx-lm"]  # no --methods: each engine's default (the fake engines': mlx-lm)


def test_a_method_no_chosen_engine_runs_is_one_error_line(two_engines):
    result = CliRunner().invoke(cli, ["sweep", "--engines", "fake-b", "--targets", "b-big", "--drafts", "b-small",
                                      "--methods", "draft-adaptive"])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)  # no traceback
    assert result.output.strip().splitlines()[-1] == "Error: the fake-b engine cannot run the draft-adaptive method"


def test_a_named_model_of_another_engine_is_one_error_line(two_engines, tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    result = CliRunner().invoke(cli, ["sweep", "--engines", "fake", "--targets", str(gguf), "--drafts", "a-small"])
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {gguf} is a model of the llama.cpp engine, not of fake; add llama.cpp to --engines")


def test_paths_belong_to_the_engine_that_reads_them(tmp_path):
    folder = tmp_path / "mlx"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert sweeping.choice_for_name(str(folder)).engine == "mlx-lm"
    assert sweeping.choice_for_name(str(tmp_path / "m.gguf")).engine == "llama.cpp"
    assert sweeping.engine_of_path("org/repo") is None


def test_bit_width_words_are_shared_across_engines():
    assert {bits_word(p) for p in ("fp16", "F16", "float16")} == {"fp16"}
    assert {bits_word(p) for p in ("8bit", "Q8_0", "q8")} == {"q8"}
    assert {bits_word(p) for p in ("4bit", "Q4_0", "Q4_K_M", "q4")} == {"q4"}
    assert bits_word("bf16") == "bf16" and bits_word(None) is None


def test_targets_of_one_size_and_bit_width_are_measured_one_right_after_the_other(two_engines):
    targets = [choice("a-big", "fake", 1.0), ModelChoice("a-huge", 7.0, "4bit", None, "fake", "fam", "7b"),
               choice("b-big", "fake-b", 1.0), ModelChoice("b-huge", 7.0, "Q4_K_M", None, "fake-b", "fam", "7b")]
    plan = SweepPlan(targets, [], [2], MeasureSettings(max_tokens=8), [Prompt("one")], MemoryBudget(64.0, "test"),
                     methods=parse_methods("prompt-lookup"), engines=["fake-b", "fake"])
    assert [t.name for t in plan.measuring_order()] == ["b-big", "a-big", "b-huge", "a-huge"]
    assert [(g.target.name, g.engine) for g in plan.groups()] == [
        ("b-big", "fake-b"), ("a-big", "fake"), ("b-huge", "fake-b"), ("a-huge", "fake")]
    one = SweepPlan(targets[:2], [], [2], MeasureSettings(max_tokens=8), [Prompt("one")], MemoryBudget(64.0, "t"),
                    methods=parse_methods("prompt-lookup"), engine="fake")
    assert one.measuring_order() == targets[:2]


def test_the_cross_engine_comparison_imports_neither_methods_nor_engines():
    from test_imports import import_graph

    graph = import_graph()
    for module in ("mlxdraft.crossengine", "mlxdraft.precision"):
        assert not {m for m in graph[module] if m.startswith(("mlxdraft.methods", "mlxdraft.engines"))}, module
    assert "mlxdraft.analysis" not in graph["mlxdraft.precision"]


def test_pair_measures_on_the_engine_named_and_records_it(two_engines, tmp_path):
    output = tmp_path / "pair.json"
    result = CliRunner().invoke(cli, ["pair", "b-big", "b-small", "--engine", "fake-b", "-k", "2", "--max-tokens", "8",
                                      "--prompt", "one two", "-o", str(output)])
    assert result.exit_code == 0, result.output
    results = load_results(output)
    assert results.plan.engines == ["fake-b"] and results.groups["b-big | b-small"].engine == "fake-b"
    assert "Engines side by side" not in render_sweep(results, "table")


def test_pair_and_generate_refuse_a_model_of_another_engine(two_engines, tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    for command in (["pair", str(gguf), "a-small", "--engine", "fake"],
                    ["generate", str(gguf), "--engine", "fake", "--prompt", "hi"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
        assert result.output.strip().splitlines()[-1] == (
            f"Error: {gguf} is a model of the llama.cpp engine, not of fake; name another model or --engine llama.cpp")
    result = CliRunner().invoke(cli, ["pair", "a-big", str(gguf), "--engine", "fake"])
    assert result.output.strip().splitlines()[-1] == (
        f"Error: the draft {gguf} is a model of the llama.cpp engine and the target a-big of fake; "
        "a draft runs on its target's engine")


def test_a_two_engine_sweep_resumes_and_refuses_other_engines(two_engines, tmp_path):
    output = tmp_path / "two.json"
    args = ["sweep", "--targets", "a-big,b-big", "--drafts", "a-small", "--engines", "fake,fake-b", "-k", "2",
            "--max-tokens", "8", "--prompt", "one two", "--strategy", "exhaustive", "-o", str(output)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 3, result.output  # a group failed:
    # plain names belong to the first engine named: b-big is fake's, which knows no such model
    assert load_results(output).groups["b-big | a-small"].status == "failed"
    again = CliRunner().invoke(cli, args + ["--resume"])
    assert "--engines fake,fake-b there, fake now" not in again.output
    other = CliRunner().invoke(cli, [a if a != "fake,fake-b" else "fake" for a in args] + ["--resume"])
    assert other.exit_code != 0 and "--engines fake,fake-b there, fake now" in other.output
