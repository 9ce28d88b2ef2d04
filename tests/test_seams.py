"""The seams: a drafting method that lives here (one module's worth of code plus one `register` line)
runs through `pair`, `sweep` and `report` on the real mlx-lm engine, and the fake engine drives the
sweep's bookkeeping (skips, failures, resume) without any model."""

from __future__ import annotations

import json
import re

import fake_engine
import pytest
from click.testing import CliRunner

from mlxdraft.analysis import analyse_sweep
from mlxdraft.cli import cli
from mlxdraft.engines import get_engine
from mlxdraft.engines.mlx_loops import Round
from mlxdraft.methods import METHODS, Method, register
from mlxdraft.results import load_results


def repeat_last(inputs):
    """Propose the last token again, k times; the target keeps what it agrees with (greedy)."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

    cache = make_prompt_cache(inputs.model)
    logits = inputs.model(mx.array(inputs.prompt)[None], cache=cache)
    last = int(mx.argmax(logits[0, -1]).item())
    yield Round([last])
    emitted = 1
    while emitted < inputs.max_tokens:
        proposed = min(inputs.num_draft_tokens, inputs.max_tokens - emitted)
        logits = inputs.model(mx.array([[last] * (proposed + 1)]), cache=cache)
        choices = mx.argmax(logits[0], axis=-1).tolist()
        accepted = 0
        while accepted < proposed and choices[accepted] == last:
            accepted += 1
        trim_prompt_cache(cache, proposed - accepted)
        tokens = [last] * accepted + [choices[accepted]]
        yield Round(tokens, proposed=proposed, accepted=accepted, limited=proposed < inputs.num_draft_tokens)
        emitted += len(tokens)
        last = tokens[-1]


REPEAT_LAST = Method(key="repeat-last", label="repeat last", summary="proposes the last token again (a test method)",
                     needs_draft=False, uses_k=True)


@pytest.fixture(autouse=True)
def registered():
    register(REPEAT_LAST)  # the one registration line a new method needs ...
    get_engine("mlx-lm").implement(REPEAT_LAST.key, repeat_last)  # ... and one per engine that runs it
    yield
    METHODS.pop(REPEAT_LAST.key, None)
    get_engine("mlx-lm").implementations.pop(REPEAT_LAST.key, None)


FAST = ["--max-tokens", "12", "-w", "0", "--prompt", "Hello there", "-k", "2"]


def test_a_method_from_outside_runs_through_pair_on_the_real_engine(tiny, tmp_path):
    out = tmp_path / "pair.json"
    result = CliRunner().invoke(cli, ["pair", str(tiny.target), "--method", "repeat-last", *FAST, "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in result.stdout.splitlines()
                if line and not line[0].isspace() and re.search(r"\s{2,}", line))
    assert rows["Method"] == "repeat-last (proposes the last token again (a test method))"
    assert rows["Draft"] == "none"
    assert rows["Lossless"] == "yes: identical token ids in 1 of 1 runs"
    assert rows["Peak memory"].startswith("target alone ") and "draft" not in rows["Peak memory"]
    results = load_results(out)
    [group] = results.groups.values()
    assert group.draft is None and sorted(s.method for s in group.samples) == ["baseline", "repeat-last"]
    speculative = next(s for s in group.samples if s.method == "repeat-last")
    assert speculative.rounds and all(p <= 2 and a <= p for p, a, _ in speculative.rounds)


def cli_report(path, fmt):
    result = CliRunner().invoke(cli, ["report", str(path), "--format", fmt])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_method_from_outside_runs_through_sweep_and_every_report(tiny, tmp_path):
    out = tmp_path / "sweep.json"
    args = ["sweep", "--targets", str(tiny.target), "--drafts", str(tiny.draft), "--methods", "mlx-lm,repeat-last",
            *FAST, "-o", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    groups = load_results(out).groups
    assert sorted(groups) == [f"{tiny.target} | -", f"{tiny.target} | {tiny.draft}"]
    assert {s.method for s in groups[f"{tiny.target} | -"].samples} == {"baseline", "repeat-last"}
    assert {s.method for s in groups[f"{tiny.target} | {tiny.draft}"].samples} == {"baseline", "mlx-lm"}
    for fmt in ("table", "markdown", "html"):
        text = cli_report(out, fmt)
        assert "repeat-last" in text and "mlx-lm tiny-draft" in text
    rows = cli_report(out, "csv").splitlines()
    assert any(row.split(",")[1] == "repeat-last" for row in rows[1:])
    cases = json.loads(cli_report(out, "json"))["cases"]
    assert {(c["method"], c["draft"] is None) for c in cases} == {("mlx-lm", False), ("repeat-last", True)}


def fake_sweep(tmp_path, *extra, name="sweep.json"):
    fake_engine.install()
    out = tmp_path / name
    args = ["sweep", "--engine", "fake", "--targets", "big,huge", "--drafts", "small,other,broken", "-k", "2,4",
            "--max-tokens", "32", "-w", "0", "--prompts", str(prompts_file(tmp_path)), "-o", str(out), *extra]
    return CliRunner().invoke(cli, args), out


def prompts_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("one two\nthree four five\nsix\n")
    return path


def test_fake_engine_sweep_records_every_outcome(tmp_path):
    result, out = fake_sweep(tmp_path, "--memory-gb", "7")
    assert result.exit_code == 3, result.output  # the broken draft failed; everything else saved
    groups = load_results(out).groups
    status = {key: (g.status, g.reason) for key, g in groups.items()}
    assert status["big | small"] == ("done", None)
    assert status["big | other"][0] == "skipped" and "tokenizers differ" in status["big | other"][1]
    assert status["big | broken"] == ("failed", "RuntimeError: cannot load broken")
    assert status["huge | small"][0] == "skipped" and "over the 7.0 GB budget" in status["huge | small"][1]
    assert len(groups["big | small"].samples) == 3 * 3  # 3 prompts x (baseline, k=2, k=4)
    assert "1 of 6 group(s) failed: RuntimeError: cannot load broken" in result.stderr


def test_fake_engine_resume_after_an_interrupt_measures_only_what_is_missing(tmp_path, monkeypatch):
    engine = fake_engine.install()
    calls = {"n": 0}
    original = engine.generate

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "generate", interrupted)
    out = tmp_path / "sweep.json"
    args = ["sweep", "--engine", "fake", "--targets", "big", "--drafts", "small", "-k", "2,4", "--max-tokens", "32",
            "-w", "0", "--prompts", str(prompts_file(tmp_path)), "-o", str(out)]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 130, first.output
    assert len(load_results(out).groups["big | small"].samples) == 4  # the probe, then runs 1-4 of 9
    second = CliRunner().invoke(cli, args + ["--resume"])
    assert second.exit_code == 0, second.output
    samples = load_results(out).groups["big | small"].samples
    assert sorted((s.prompt_index, s.method, s.num_draft_tokens) for s in samples) == [
        (p, m, k) for p in range(3) for m, k in (("baseline", 0), ("mlx-lm", 2), ("mlx-lm", 4))]
    assert [s.prompt_index for s in samples] == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # whole units, each in its own order


def test_fake_engine_verdict_follows_the_simulated_speeds(tmp_path):
    fake_engine.install(models={"big": fake_engine.FakeModel(token_s=0.1, weights_gb=4.0),
                                "good": fake_engine.FakeModel(token_s=0.005, weights_gb=0.2, acceptance=0.9),
                                "bad": fake_engine.FakeModel(token_s=0.09, weights_gb=2.0, acceptance=0.1)},
                        noise=0.02, seed=1)
    out = tmp_path / "sweep.json"
    args = ["sweep", "--engine", "fake", "--targets", "big", "--drafts", "good,bad", "-k", "2,4",
            "--max-tokens", "64", "-w", "0", "-r", "2", "--prompts", str(prompts_file(tmp_path)),
            "--objective", "decode", "-o", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = CliRunner().invoke(cli, ["report", str(out), "--format", "json", "--objective", "decode"])
    [verdict] = json.loads(report.stdout)["verdicts"]
    assert verdict["verdict"] == "speculative" and verdict["draft"] == "good" and verdict["method"] == "mlx-lm"
    assert verdict["commands"] == ["fake-generate --model /fake/big --method mlx-lm --draft /fake/good -k 4"]


def test_long_generations_say_how_they_are_going(tmp_path, monkeypatch):
    monkeypatch.setattr("mlxdraft.sweep.PROGRESS_EVERY_S", 0.0)  # every round counts as long here
    fake_engine.install()
    out = tmp_path / "pair.json"
    result = CliRunner().invoke(cli, ["pair", "big", "small", "--engine", "fake", "-k", "2", "--max-tokens", "8",
                                      "-w", "1", "--prompt", "Hi", "-o", str(out)])
    assert result.exit_code == 0, result.output
    for what in ("memory probe", "warmup 1/1, baseline", "warmup 1/1, mlx-lm k=2", "prompt 1, baseline",
                 "prompt 1, mlx-lm k=2"):
        assert f"    ... {what}: " in result.stderr, what
    assert "    ... prompt 1, baseline: 8 tokens in " in result.stderr


def test_every_built_in_method_is_a_row_in_every_format(tiny, tmp_path):
    out = tmp_path / "sweep.json"
    methods = "mlx-lm,draft,draft-adaptive,prompt-lookup"
    result = CliRunner().invoke(cli, ["sweep", "--targets", str(tiny.target), "--drafts", str(tiny.draft),
                                      "--methods", methods, "--max-tokens", "8", "-w", "0", "-k", "2",
                                      "--prompts", str(prompts_file(tmp_path)), "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = ["mlx-lm tiny-draft", "draft tiny-draft", "draft-adaptive tiny-draft", "prompt-lookup"]
    for fmt in ("table", "markdown", "html"):
        text = cli_report(out, fmt)
        assert all(row in text for row in rows), (fmt, [row for row in rows if row not in text])
    csv_rows = {tuple(line.split(",")[1:3]) for line in cli_report(out, "csv").splitlines()[1:] if line}
    assert csv_rows == {("mlx-lm", str(tiny.draft)), ("draft", str(tiny.draft)), ("draft-adaptive", str(tiny.draft)),
                        ("prompt-lookup", "")}
    cases = json.loads(cli_report(out, "json"))["cases"]
    assert sorted(c["method"] for c in cases) == sorted(methods.split(","))
    assert all(c["summary"]["lossless"]["identical"] for c in cases)  # greedy in float32: every method lossless


def test_speedup_model_predicts_the_measured_speedups_on_the_fake_engine(tmp_path):
    fake_engine.install(noise=0.01, seed=3)
    out = tmp_path / "sweep.json"
    result = CliRunner().invoke(cli, ["sweep", "--engine", "fake", "--targets", "big", "--drafts", "small,tiny",
                                      "--methods", "mlx-lm,draft-adaptive", "-k", "1,2,4", "--max-tokens", "64",
                                      "-w", "0", "-r", "2", "--prompts", str(prompts_file(tmp_path)), "-o", str(out)])
    assert result.exit_code == 0, result.output
    from mlxdraft.analysis import analyse_sweep

    analysis = analyse_sweep(load_results(out))
    predicted = [c for c in analysis.cases if c.prediction]
    assert {c.method for c in predicted} == {"mlx-lm"}  # an adaptive k has no fixed-k model
    assert len(predicted) == 6
    errors = sorted(abs(c.prediction.decode_speedup / c.comparison.decode_speedup.geomean - 1) for c in predicted)
    assert errors[len(errors) // 2] <= 0.10 and errors[-1] <= 0.15, errors  # issue 12: median error <= 10%
    text = cli_report(out, "table")
    assert "Decode speedup of big, predicted by the speedup model / measured (k=4: the anchor, measured, " in text
    assert "    speedup model: " in text
    columns = cli_report(out, "csv").splitlines()[0].split(",")
    assert columns[-5:] == ["predicted_is_anchor", "predicted_decode_speedup",
                            "predicted_decode_speedup_low_unadjusted", "predicted_decode_speedup_high_unadjusted",
                            "predicted_e2e_speedup"]


def smart_args(tmp_path, out, *extra):
    prompts = tmp_path / "eight.txt"
    prompts.write_text("\n".join(f"prompt number {i} words" for i in range(8)))
    return ["sweep", "--engine", "fake", "--targets", "big", "--drafts", "small,tiny", "-k", "1,2,3,4,6",
            "--max-tokens", "64", "-w", "0", "--prompts", str(prompts), "--objective", "decode", "-o", str(out), *extra]


def test_smart_sweep_measures_less_and_picks_the_exhaustive_winner(tmp_path):
    fake_engine.install(noise=0.03, seed=1)
    exhaustive = CliRunner().invoke(cli, smart_args(tmp_path, tmp_path / "all.json", "--strategy", "exhaustive"))
    fake_engine.install(noise=0.03, seed=1)
    smart = CliRunner().invoke(cli, smart_args(tmp_path, tmp_path / "smart.json"))
    assert exhaustive.exit_code == 0 and smart.exit_code == 0, smart.output
    runs = {name: sum(len(g.samples) for g in load_results(tmp_path / f"{name}.json").groups.values())
            for name in ("all", "smart")}
    assert runs["smart"] <= 0.6 * runs["all"], runs
    verdicts = {name: json.loads(CliRunner().invoke(cli, ["report", str(tmp_path / f"{name}.json"), "--format",
                                                          "json", "--objective", "decode"]).stdout)["verdicts"][0]
                for name in ("all", "smart")}
    # the race drops setups surely not more than 3% faster than a rival, and the verdict recommends the fastest
    # (or a cheaper one shown within 3% of it): the smart sweep's choice is within 3% of the exhaustive one's,
    # judged on the exhaustive sweep's own samples
    exhaustive = analyse_sweep(load_results(tmp_path / "all.json"), "decode")
    speedup = {(c.draft, c.num_draft_tokens): c.comparison.decode_speedup.geomean for c in exhaustive.measured("big")}
    best = speedup[verdicts["all"]["draft"], verdicts["all"]["num_draft_tokens"]]
    assert verdicts["smart"]["verdict"] == verdicts["all"]["verdict"] == "speculative"
    # widened for every setup compared, the pruned ones too, as the exhaustive sweep's verdict is
    assert verdicts["smart"]["candidates"] == verdicts["all"]["candidates"] == 10
    assert speedup[verdicts["smart"]["draft"], verdicts["smart"]["num_draft_tokens"]] * 1.03 >= best
    report = cli_report(tmp_path / "smart.json", "table")
    assert "Pruned by the smart sweep (left out of the verdicts, unless a target has nothing else):" in report
    assert "- big + mlx-lm tiny k=6: after 3 unit(s): measured " in report  # lost to small's k=6 after 3
    assert "pruned mlx-lm k=6: measured" in smart.stderr and "leader mlx-lm k=" in smart.stderr


def test_a_race_interrupted_anywhere_resumes_to_the_same_result(tmp_path, monkeypatch):
    fake_engine.install()
    assert CliRunner().invoke(cli, smart_args(tmp_path, tmp_path / "whole.json")).exit_code == 0
    whole = load_results(tmp_path / "whole.json").groups
    for stop_at in (3, 11, 24):  # in the probe, just after it, in the second group (its probe decides it)
        engine = fake_engine.install()
        original, calls = engine.generate, {"n": 0}

        def interrupted(*args, original=original, calls=calls, stop_at=stop_at, **kwargs):
            calls["n"] += 1
            if calls["n"] == stop_at:
                raise KeyboardInterrupt
            return original(*args, **kwargs)

        monkeypatch.setattr(engine, "generate", interrupted)
        out = tmp_path / f"cut-{stop_at}.json"
        assert CliRunner().invoke(cli, smart_args(tmp_path, out)).exit_code == 130
        monkeypatch.setattr(engine, "generate", original)
        resumed = CliRunner().invoke(cli, smart_args(tmp_path, out, "--resume"))
        assert resumed.exit_code == 0, resumed.output
        groups = load_results(out).groups
        for key, group in whole.items():
            assert [(s.prompt_index, s.method, s.num_draft_tokens, s.token_ids) for s in groups[key].samples] == [
                (s.prompt_index, s.method, s.num_draft_tokens, s.token_ids) for s in group.samples], (stop_at, key)
            assert groups[key].pruned == group.pruned


def test_smart_sweep_stops_a_group_whose_setups_are_all_slower_than_the_baseline(tmp_path):
    # the drafts cost as much as the target: every setup is surely slower than no speculative decoding
    fake_engine.install(models={"big": fake_engine.FakeModel(token_s=0.1, weights_gb=4.0),
                                "slow": fake_engine.FakeModel(token_s=0.09, weights_gb=2.0, acceptance=0.3),
                                "slower": fake_engine.FakeModel(token_s=0.12, weights_gb=2.0, acceptance=0.2)},
                        noise=0.02, seed=2)
    args = smart_args(tmp_path, tmp_path / "smart.json")
    args[args.index("small,tiny")] = "slow,slower"
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    groups = load_results(tmp_path / "smart.json").groups
    for group in groups.values():
        # the probe, cut to the 3 prompts that show k=6 loses; then the model's check, its predicted best k=1, on 3
        # more; only then the rest is pruned on the prediction, its bounds holding the model's error as measured
        units = {}
        for s in group.samples:
            units.setdefault(s.prompt_index, []).append(s.num_draft_tokens)
        assert [sorted(ks) for ks in units.values()] == [[0, 6]] * 3 + [[0, 1]] * 3
        pruned = {p["num_draft_tokens"]: p["reason"] for p in group.pruned}
        assert set(pruned) == {1, 2, 3, 4, 6}
        assert all("the baseline's 1.00x (no speculative decoding)" in reason for reason in pruned.values())
        assert pruned[1].startswith("measured ") and pruned[6].startswith("measured ")
        assert all(pruned[k].startswith("predicted ") and "the model's own error, up to " in pruned[k]
                   for k in (2, 3, 4))
    report = json.loads(CliRunner().invoke(cli, ["report", str(tmp_path / "smart.json"), "--format", "json",
                                                 "--objective", "decode"]).stdout)
    assert report["verdicts"][0]["verdict"] == "no-gain"


def test_a_draft_shared_by_two_targets_is_timed_once(tmp_path, monkeypatch):
    # the race of the first target's group decided with that timing; a second one would replay differently
    engine = fake_engine.install()
    original, timed = engine.time_forward, []

    def recording(loaded, context_ids, widths, repeats=5):
        timed.append((loaded.model, tuple(widths)))
        return original(loaded, context_ids, widths, repeats)

    monkeypatch.setattr(engine, "time_forward", recording)
    args = smart_args(tmp_path, tmp_path / "smart.json")
    args[args.index("big")] = "big,huge"
    assert CliRunner().invoke(cli, args).exit_code == 0
    drafts = [model for model, widths in timed if widths == (1,)]
    assert len(drafts) == 2 and drafts[0] is not drafts[1]  # small and tiny, once each for both targets
    assert sum(1 for _, widths in timed if widths != (1,)) == 2  # each target's T(n), once


def test_the_predicted_best_k_is_measured_before_anything_is_pruned_on_prediction(tmp_path):
    # a cheap, good draft: k=3 is predicted best; it is measured next to k=6 on 3 prompts after the probe (the
    # model's check), and k=6 leaves when measured surely not more than 3% faster than k=3
    fake_engine.install(models={"big": fake_engine.FakeModel(token_s=0.1, weights_gb=4.0, verify_growth=0.1),
                                "mid": fake_engine.FakeModel(token_s=0.005, weights_gb=0.5, acceptance=0.7)})
    args = smart_args(tmp_path, tmp_path / "smart.json")
    args[args.index("small,tiny")] = "mid"
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    group = next(iter(load_results(tmp_path / "smart.json").groups.values()))
    raced = [(s.prompt_index, s.num_draft_tokens) for s in group.samples if s.pass_index == 0]
    order = list(dict.fromkeys(prompt for prompt, _ in raced))
    units = [sorted(k for prompt, k in raced if prompt == p) for p in order]
    assert units[:4] == [[0, 6]] * 4 and units[4:7] == [[0, 3, 6]] * 3
    assert sorted(order) == list(range(8)) and order != list(range(8))  # the probe's prompts are drawn, not 1-4
    pruned = {p["num_draft_tokens"]: p for p in group.pruned}
    reason = pruned[6]["reason"]
    assert reason.startswith("measured ") and "it shares with mlx-lm k=3 (" in reason
    assert reason.endswith("surely not more than 3% faster than it")
    verdict = json.loads(CliRunner().invoke(cli, ["report", str(tmp_path / "smart.json"), "--format", "json",
                                                  "--objective", "decode"]).stdout)["verdicts"][0]
    assert (verdict["verdict"], verdict["num_draft_tokens"]) == ("speculative", 3)
