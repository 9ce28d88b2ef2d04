"""No silence over a few seconds (issue #20): the forward-pass timing, each generation's start (its
prefill can take seconds) and long engine calls say what is happening, and the ETA is there from the
memory probe's run on, labelled rough until a few runs are measured."""

from __future__ import annotations

import re
import time

import fake_engine
from click.testing import CliRunner

from mlxdraft import sweep as sweeping
from mlxdraft.cli import cli, render_event
from mlxdraft.measure import MeasureSettings
from mlxdraft.memory import MemoryBudget
from mlxdraft.methods import parse_methods
from mlxdraft.prompts import Prompt
from mlxdraft.sweep import ModelChoice, SweepPlan, SweepRun

MODELS = {"slow": fake_engine.FakeModel(token_s=0.5, weights_gb=4.0),
          "small": fake_engine.FakeModel(token_s=0.01, weights_gb=0.5),
          "other": fake_engine.FakeModel(token_s=0.01, weights_gb=0.5)}


def measure(engine, methods="mlx-lm", k=(2, 4), strategy="exhaustive"):
    """Every line a sweep of slow + small would show, progress and events in the order shown."""
    plan = SweepPlan([ModelChoice("slow")], [ModelChoice("small")], list(k),
                     MeasureSettings(max_tokens=8, warmup=1, runs=2), [Prompt("one two"), Prompt("three four")],
                     MemoryBudget(64.0, "test"), methods=parse_methods(methods), engine="fake", strategy=strategy)
    lines: list[str] = []
    run = SweepRun(plan, engine=engine, progress=lines.append)
    events = []
    for event in run.events():
        events.append(event)
        line = render_event(event)
        if line:
            lines.append(line)
    return lines, events


def test_the_forward_pass_timing_is_announced_with_its_size_and_length():
    lines, _ = measure(fake_engine.FakeEngine(MODELS))
    [timing] = [line for line in lines if "forward passes" in line]
    # the memory probe's run (0.5 s a token) says how long 6 passes of 5 widths take: about 16 s
    assert re.search(r"\] timing the target's forward passes for the speedup model \(n = 1\.\.5, 5 repeats; "
                     r"about 1\d s\) \.\.\.$", timing), timing
    assert any(line.endswith("] timing the draft's forward pass of one token (5 repeats) ...") for line in lines)


def test_every_generation_says_it_is_starting_before_its_prefill():
    lines, _ = measure(fake_engine.FakeEngine(MODELS), methods="mlx-lm,prompt-lookup")
    pattern = r"\] slow \+ (?:small|\(alone\)): (.*) prompt (\d): "
    results = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert len(results) == 2 * 2 * (3 + 3)  # passes x prompts x (baseline, k=2, k=4) x 2 groups
    for i in results:  # the line before each result says that run started
        what = re.search(pattern, lines[i])
        label, prompt = what.group(1), what.group(2)
        prefill = "prefill of target and draft first" if label.startswith("mlx-lm") else "prefill first"
        assert lines[i - 1] == f"    prompt {prompt}, {label}: generating ({prefill}) ...", lines[i - 1]
    assert "    warmup 1/1, mlx-lm k=4: generating (prefill of target and draft first) ..." in lines
    assert "    warmup 1/1, prompt-lookup k=4: generating (prefill first) ..." in lines


def test_the_eta_is_there_from_the_memory_probe_on_and_rough_at_first():
    lines, events = measure(fake_engine.FakeEngine(MODELS))
    first_run = next(i for i, e in enumerate(events) if e.kind == "run")
    timing = next(e for e in events if "forward passes" in e.message)
    assert timing.eta_s is not None and timing.eta_basis == "the memory probe's run"
    assert events[first_run].eta_basis == "the first run"
    assert events[first_run + 1].eta_basis == "the first 2 runs"
    assert events[first_run + sweeping.ROUGH_ETA_RUNS - 1].eta_basis is None
    assert all(e.eta_s is not None for e in events[events.index(timing):])
    assert re.search(r", ETA ~\dm\d\ds \(rough, from the memory probe's run\)\] timing the target's", "\n".join(lines))
    assert re.search(r", ETA \dm\d\ds\] slow \+ small", "\n".join(lines))
    assert "ETA ?" not in "\n".join(lines)


def test_a_long_engine_call_says_it_is_still_going(monkeypatch):
    monkeypatch.setattr(sweeping, "HEARTBEAT_EVERY_S", 0.02)
    engine = fake_engine.FakeEngine(MODELS)
    time_forward = engine.time_forward

    def slow_time_forward(*args, **kwargs):
        time.sleep(0.15)
        return time_forward(*args, **kwargs)

    engine.time_forward = slow_time_forward
    lines, _ = measure(engine)
    timing = next(i for i, line in enumerate(lines) if "timing the target's forward passes" in line)
    assert lines[timing + 1] == "    ... timing the target's forward passes: 0 s so far"


def test_the_cli_shows_the_timing_and_start_lines(tmp_path):
    fake_engine.install()
    result = CliRunner().invoke(cli, ["pair", "big", "small", "--engine", "fake", "-k", "2", "--max-tokens", "8",
                                      "-w", "0", "--prompt", "Hi"])
    assert result.exit_code == 0, result.output
    assert "] timing the target's forward passes for the speedup model (n = 1..3, 5 repeats) ..." in result.stderr
    assert "    prompt 1, mlx-lm k=2: generating (prefill of target and draft first) ...\n" in result.stderr
