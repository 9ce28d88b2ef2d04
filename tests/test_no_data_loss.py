"""No measurement lost, no traceback: results files are never destroyed by accident, a second
writer is refused, failed pairs are retried, signals leave valid files, and bad numbers are
refused. Everything through the real CLI (CliRunner in-process, subprocesses for signals)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from synthetic import make_state

from mlxdraft.cli import cli
from mlxdraft.files import ResultsLock
from mlxdraft.results import load_results

FAST = ["--max-tokens", "6", "-w", "0", "--prompt", "Hello there"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_error(result, message, code=1):
    """A clean `Error:` line: the right exit code, no exception escaped (CliRunner would hide it)."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == code, result.output
    assert result.output.strip().splitlines()[-1] == message


def write_state(path, state):
    path.write_text(json.dumps(state))
    return path


def sweep_args(tiny, out, *extra):
    return ["sweep", "--targets", str(tiny.target), "--drafts", str(tiny.draft), "-k", "2", *FAST,
            "-o", str(out), *extra]


# --- never destroy results by accident ------------------------------------------------------------

def test_report_refuses_to_overwrite_its_input_however_named(tmp_path, monkeypatch):
    results = write_state(tmp_path / "good.json", make_state({}, noise=0.01))
    before = results.read_bytes()
    monkeypatch.chdir(tmp_path)
    os.symlink(results, tmp_path / "alias.json")
    for output in ["good.json", "./good.json", str(results), "alias.json"]:
        result = run("report", "good.json", "--format", "csv", "-o", output)
        assert_error(result, f"Error: -o {output} is the results file being rendered; choose another output file")
    assert results.read_bytes() == before


def test_report_refuses_to_overwrite_any_results_file(tmp_path):
    first = write_state(tmp_path / "a.json", make_state({}, noise=0.01))
    second = write_state(tmp_path / "b.json", make_state({}, noise=0.02))
    before = second.read_bytes()
    result = run("report", first, "-o", second)
    assert_error(result, f"Error: -o {second} holds mlxdraft results; choose another output file "
                         "(report never overwrites measurements)")
    assert second.read_bytes() == before
    page = tmp_path / "page.html"
    assert run("report", first, "--format", "html", "-o", page).exit_code == 0
    assert run("report", first, "--format", "html", "-o", page).exit_code == 0  # a report may be replaced
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_pair_and_sweep_refuse_an_existing_output_unless_forced(tiny, tmp_path):
    existing = write_state(tmp_path / "sweep.json", make_state({}, noise=0.01))
    before = existing.read_bytes()
    result = run("pair", tiny.target, tiny.draft, *FAST, "-o", existing)
    assert_error(result, f"Error: {existing} already exists; pass --force to replace it, or choose another --output")
    result = run(*sweep_args(tiny, existing))
    assert_error(result, f"Error: {existing} already exists; pass --force to replace it, --resume to continue it, "
                         "or choose another --output")
    assert existing.read_bytes() == before
    forced = run("pair", tiny.target, tiny.draft, *FAST, "-o", existing, "--force")
    assert forced.exit_code == 0, forced.output
    assert load_results(existing).to_dict()["kind"] == "pair"


def test_pair_output_that_cannot_be_written_fails_before_measuring(tiny, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("pair", tiny.target, tiny.draft, *FAST, "-o", blocker / "r.json")
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines()[-1].startswith(f"Error: cannot write {blocker / 'r.json'}: ")
    assert "loading target" not in result.output


# --- locks, retries, exit codes --------------------------------------------------------------------

FAKE_ENGINE = Path(__file__).parent / "fake_engine.py"


def start_fake(args, hang_after):
    """mlxdraft in a subprocess on the fake engine, which hangs after `hang_after` generations: a
    signal sent once it has measured is certain to arrive mid-measurement."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", FAKE_ENGINE_HANG_AFTER=str(hang_after))
    return subprocess.Popen([sys.executable, str(FAKE_ENGINE), *args, "--engine", "fake"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_sweep(tiny, out, tmp_path, runs=30):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\ntwo\nthree\n")
    args = ["sweep", "--targets", "big", "--drafts", "small", "-k", "1,2,3", "--max-tokens", "40", "-w", "0",
            "-r", str(runs), "--prompts", str(prompts), "-o", str(out)]
    process = start_fake(args, hang_after=4)  # the memory probe, then three measured runs
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        try:
            if sum(len(g["samples"]) for g in json.loads(out.read_text())["groups"].values()) >= 3:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    assert process.poll() is None, process.communicate()
    return process, args + ["--engine", "fake"]


def test_a_second_sweep_on_the_same_file_is_refused(tiny, tmp_path):
    out = tmp_path / "sweep.json"
    process, args = start_sweep(tiny, out, tmp_path)
    try:
        second = CliRunner().invoke(cli, args[:-2] + ["-o", str(out), "--resume"])
        assert_error(second, f"Error: {out} is being written by another mlxdraft (pid {process.pid}); "
                             "wait for it to finish or choose another --output")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    # a lock left by a killed process never blocks
    with ResultsLock(out):
        pass


def test_sigterm_leaves_a_valid_file_and_no_temp_files(tiny, tmp_path):
    out = tmp_path / "sweep.json"
    process, _ = start_sweep(tiny, out, tmp_path)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Interrupted. Everything measured so far is saved in" in stderr
    assert "Traceback" not in stderr
    state = load_results(out).to_dict()
    assert sum(len(g["samples"]) for g in state["groups"].values()) >= 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.txt", "sweep.json"]


def start_long_pair(tiny, out):
    """A `pair -o out` in a subprocess (fake engine) that hangs after its fifth measured run of 400."""
    return start_fake(["pair", "big", "small", "--max-tokens", "40", "-w", "0", "-r", "200", "--prompt", "Hello",
                       "-o", str(out)], hang_after=6)


def test_sigterm_during_pair_still_reports_the_completed_runs(tiny, tmp_path):
    out = tmp_path / "pair.json"
    process = start_long_pair(tiny, out)
    seen = ""
    while "run 5/400" not in seen:
        line = process.stderr.readline()
        assert line, process.communicate()
        seen += line
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Interrupted after" in stderr and "Speedup" in stdout
    state = load_results(out).to_dict()
    assert sum(len(g["samples"]) for g in state["groups"].values()) >= 4


def test_resume_retries_a_failed_pair_after_it_is_repaired(tiny, tmp_path):
    broken = tmp_path / "draft"
    broken.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        (broken / name).write_bytes((tiny.draft / name).read_bytes())
    good_config = (tiny.draft / "config.json").read_text()
    config = json.loads(good_config)
    config["hidden_size"] = 80  # weights no longer fit the architecture
    (broken / "config.json").write_text(json.dumps(config))
    out = tmp_path / "sweep.json"
    args = ["sweep", "--targets", str(tiny.target), "--drafts", str(broken), "-k", "2", *FAST, "-o", str(out)]
    first = run(*args)
    assert first.exit_code == 3
    assert load_results(out).to_dict()["groups"][f"{tiny.target} | {broken}"]["status"] == "failed"
    (broken / "config.json").write_text(good_config)
    again = run(*args, "--resume")
    assert again.exit_code == 0, again.output
    assert "Retried 1 pair(s) that had failed or were skipped for a reason that can change." in again.stderr
    assert load_results(out).to_dict()["groups"][f"{tiny.target} | {broken}"]["status"] == "done"


def test_pairs_that_can_never_run_are_not_retried(tiny, tmp_path):
    out = tmp_path / "sweep.json"
    args = ["sweep", "--targets", str(tiny.target), "--drafts", str(tiny.other_tokenizer), "-k", "2", *FAST,
            "-o", str(out)]
    assert run(*args).exit_code == 0  # deliberately skipped: tokenizers differ
    again = run(*args, "--resume")
    assert again.exit_code == 0 and "Retried" not in again.stderr


def test_one_cause_for_every_failure_is_said_once(tmp_path):
    out = tmp_path / "q.json"
    result = run("sweep", "--family", "qwen2.5", "--target-sizes", "7b", "--target-precisions", "4bit",
                 "--draft-sizes", "0.5b", "--draft-precisions", "4bit,8bit", "-k", "2", "-o", out, "--no-download")
    assert result.exit_code == 3
    failures = [line for line in result.stderr.splitlines() if "FAILED" in line]
    assert len(failures) == 2
    assert failures[0].endswith("first")
    assert failures[1].endswith("FAILED (same cause as above)")
    assert result.stderr.splitlines()[-2].startswith("2 of 2 group(s) failed; all for one cause: ")


# --- strict numbers and prompts ---------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--temp", "nan"], "Error: Invalid value for '--temp': 'nan' is not a finite number"),
    (["--temp", "inf"], "Error: Invalid value for '--temp': 'inf' is not a finite number"),
    (["--memory-gb", "nan"], "Error: Invalid value for '--memory-gb': 'nan' is not a finite number"),
    (["--memory-gb", "0"], "Error: Invalid value for '--memory-gb': must be positive (got 0)"),
    (["--seed", "-1"], "Error: Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295."),
    (["-k", "1000000"], "Error: --num-draft-tokens can be at most 32 (got 1000000)"),
])
def test_bad_numbers_are_refused(tiny, args, message):
    for command in (["pair", str(tiny.target), str(tiny.draft)], ["sweep", "--targets", str(tiny.target),
                                                                  "--drafts", str(tiny.draft)]):
        result = run(*command, *args)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert result.exit_code in (1, 2)
        assert result.output.strip().splitlines()[-1] == message


def test_k_above_max_tokens_drafts_only_the_tokens_left(tiny):
    """Like mlx-lm, a round drafts at most the tokens left, so -k 8 with --max-tokens 4 is measured."""
    result = run("pair", tiny.target, tiny.draft, "-k", "8", "--max-tokens", "4", "--prompt", "Hello there",
                 "-w", "0", "--methods", "mlx-lm,draft", "--json")
    assert result.exception is None, repr(result.exception)
    report = json.loads(result.stdout)
    cases = [c for c in report["cases"] if c["num_draft_tokens"] == 8]
    assert {c["method"] for c in cases} == {"mlx-lm", "draft"}
    assert all(c["status"] == "done" and c["summary"]["units"] == 1 for c in cases)


def test_models_checks_memory_gb_like_sweep():
    for value, message in [("0", "must be positive (got 0)"), ("nan", "'nan' is not a finite number")]:
        result = run("models", "--memory-gb", value)
        assert_error(result, f"Error: Invalid value for '--memory-gb': {message}", code=2)


def test_results_file_with_nan_or_wrong_shape_gives_one_error(tmp_path):
    state = make_state({}, noise=0.01)
    text = json.dumps(state).replace('"decode_tps": ', '"decode_tps": NaN, "x": ', 1)
    nan_file = tmp_path / "nan.json"
    nan_file.write_text(text)
    result = run("report", nan_file)
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: results file {nan_file} is damaged: ") and "decode_tps" in last
    for breakage in [lambda s: s.pop("plan"), lambda s: s.update(groups=[]),
                     lambda s: next(iter(s["groups"].values())).pop("status")]:
        broken = make_state({}, noise=0.01)
        breakage(broken)
        path = write_state(tmp_path / "broken.json", broken)
        for command in (["report", path], ["sweep", "--targets", "a", "--drafts", "b", "-o", path, "--resume"]):
            result = run(*command)
            assert result.exit_code == 1 and (result.exception is None or isinstance(result.exception, SystemExit))
            assert result.output.strip().splitlines()[-1].startswith(f"Error: results file {path} is damaged: ")


def test_json_output_is_strict_json(tiny):
    result = run("pair", tiny.target, tiny.draft, *FAST, "--json")
    assert result.exit_code == 0, result.output
    json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))


def test_library_prints_do_not_reach_json_stdout(tiny, monkeypatch):
    from mlxdraft.engines.mlx_lm import MlxLmEngine

    original = MlxLmEngine.generate

    def noisy(*args, **kwargs):
        print("[WARNING] Generating with a model that requires 9 GB which is close to the maximum")
        return original(*args, **kwargs)

    monkeypatch.setattr(MlxLmEngine, "generate", noisy)
    result = run("pair", tiny.target, tiny.draft, *FAST, "--json")
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)
    assert "[WARNING] Generating" in result.stderr


def test_prompt_longer_than_the_context(tiny, tmp_path):
    result = run("pair", tiny.target, tiny.draft, "--max-tokens", "5000", "-k", "2", "-w", "0", "--prompt", "Hi")
    assert_error(result, f"Error: the longest prompt (19 tokens) plus --max-tokens 5000 and k needs 5021 positions, "
                         f"more than the target {tiny.target}'s context of 4096; use shorter prompts or fewer "
                         "--max-tokens")
    out = tmp_path / "sweep.json"
    sweep = run("sweep", "--targets", tiny.target, "--drafts", tiny.draft, "-k", "2", "--max-tokens", "5000",
                "-w", "0", "--prompt", "Hi", "-o", out)
    assert sweep.exit_code == 0, sweep.output
    record = load_results(out).to_dict()["groups"][f"{tiny.target} | {tiny.draft}"]
    assert record["status"] == "skipped" and "context of 4096" in record["reason"] and record["retry"] is False


def test_target_alone_memory_is_measured_without_the_draft(tiny):
    """The baseline's peak is the target alone: the speculative peak is higher by at least half the
    draft's weights (the draft is loaded only after the target-alone measurement)."""
    result = run("pair", tiny.target, tiny.draft, *FAST, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    alone = data["models"][str(tiny.target)]["alone_peak_memory_gb"]
    [case] = [c for c in data["cases"] if c["draft"]]
    speculative = case["summary"]["speculative_peak_memory_gb"]["max"]
    draft_weights_gb = data["models"][str(tiny.draft)]["weights_gb"]
    assert speculative - alone >= draft_weights_gb / 2


def test_pull_offline_says_each_failure_once():
    result = run("pull", "someone/model-a", "someone/model-b")
    assert_error(result, "Error: 2 of 2 models could not be pulled (someone/model-a, someone/model-b); "
                         "the reasons are above")
    failed = [line for line in result.stderr.splitlines() if line.startswith("Failed: ")]
    assert len(failed) == 2 and "someone/model-a" in failed[0] and "someone/model-b" in failed[1]
    assert not any("kept" in line for line in failed)  # nothing was downloaded, so nothing was kept
    single = run("pull", "someone/model-a")
    assert single.output.count("someone/model-a") == 1


def test_report_json_can_be_rendered_again_into_the_same_file(tmp_path):
    results = write_state(tmp_path / "r.json", make_state({}, noise=0.01))
    out = tmp_path / "report.json"
    assert run("report", results, "--format", "json", "-o", out).exit_code == 0
    again = run("report", results, "--format", "json", "-o", out)
    assert again.exit_code == 0, again.output


def test_report_writes_through_a_symlink_and_refuses_special_files(tmp_path):
    results = write_state(tmp_path / "r.json", make_state({}, noise=0.01))
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "r.md"
    target.write_text("old")
    link = tmp_path / "link.md"
    os.symlink(target, link)
    assert run("report", results, "--format", "markdown", "-o", link).exit_code == 0
    assert link.is_symlink() and target.read_text().startswith("# mlxdraft sweep")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert_error(run("report", results, "-o", fifo),
                 f"Error: cannot write {fifo}: it is not a regular file; choose another location")


def test_a_model_that_is_target_and_draft_keeps_its_alone_memory(tiny, tmp_path):
    out = tmp_path / "sweep.json"
    result = run("sweep", "--targets", f"{tiny.draft},{tiny.target}", "--drafts", tiny.draft, "-k", "2", *FAST,
                 "-o", out)
    assert result.exit_code == 0, result.output
    models = load_results(out).to_dict()["models"]
    assert models[str(tiny.draft)]["alone_peak_memory_gb"] > 0
    assert models[str(tiny.target)]["alone_peak_memory_gb"] > 0


def test_resume_measures_a_cut_unit_again_whole(tiny, tmp_path):
    out = tmp_path / "sweep.json"
    args = ["sweep", "--targets", str(tiny.target), "--drafts", str(tiny.draft), "-k", "1,2", "--max-tokens", "6",
            "-w", "0", "-r", "2", "--prompt", "Hello there", "-o", str(out)]
    assert run(*args).exit_code == 0
    state = json.loads(out.read_text())
    [group] = state["groups"].values()
    group["status"] = "pending"
    del group["samples"][4:]  # unit 2 cut after its baseline: (0, 1, 2) then (0) of the next pass
    out.write_text(json.dumps(state))
    assert run(*args, "--resume").exit_code == 0
    samples = load_results(out).to_dict()["groups"][f"{tiny.target} | {tiny.draft}"]["samples"]
    assert sorted((s["pass_index"], s["num_draft_tokens"]) for s in samples) == [(0, 0), (0, 1), (0, 2),
                                                                                 (1, 0), (1, 1), (1, 2)]
    assert [s["pass_index"] for s in samples] == [0, 0, 0, 1, 1, 1]  # the cut unit measured again whole


def test_pair_stopped_by_an_error_still_reports_and_saves_what_it_measured(tiny, tmp_path, monkeypatch):
    import mlxdraft.sweep as sweeping

    real = sweeping.iter_interleaved_runs

    def failing(*args, **kwargs):
        for index, sample in enumerate(real(*args, **kwargs)):
            if index == 4:
                raise RuntimeError("out of memory")
            yield sample

    monkeypatch.setattr(sweeping, "iter_interleaved_runs", failing)
    out = tmp_path / "pair.json"
    result = run("pair", tiny.target, tiny.draft, "--max-tokens", "6", "-w", "0", "-r", "5", "--prompt", "Hi",
                 "-o", out)
    assert result.exit_code == 1 and (result.exception is None or isinstance(result.exception, SystemExit))
    assert "Stopped by an error after 4 of 10 runs; the result below is from those." in result.stderr
    assert "Speedup" in result.stdout
    assert result.output.strip().splitlines()[-1] == (
        f"Error: measuring {tiny.target} | {tiny.draft} failed: RuntimeError: out of memory")
    assert sum(len(g["samples"]) for g in load_results(out).to_dict()["groups"].values()) == 4


def test_pair_holds_the_lock_on_its_output_while_measuring(tiny, tmp_path):
    out = tmp_path / "race.json"
    process = start_long_pair(tiny, out)
    try:
        while "run 2/400" not in process.stderr.readline():
            assert process.poll() is None
        sweep = run(*sweep_args(tiny, out), "--force")
        assert_error(sweep, f"Error: {out} is being written by another mlxdraft (pid {process.pid}); "
                            "wait for it to finish or choose another --output")
    finally:
        process.kill()
        process.wait()


def test_a_second_interrupt_during_cleanup_prints_no_traceback(tiny, tmp_path):
    out = tmp_path / "sweep.json"
    process, _ = start_sweep(tiny, out, tmp_path)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert "Interrupted. Everything measured so far is saved in" in stderr
    load_results(out).to_dict()


def test_outputs_that_name_folders_or_read_only_files_are_refused(tiny, tmp_path):
    assert_error(run("pair", tiny.target, tiny.draft, *FAST, "-o", f"{tmp_path}/new/"),
                 f"Error: --output {tmp_path}/new/ is a folder; name a file")
    results = write_state(tmp_path / "r.json", make_state({}, noise=0.01))
    assert_error(run("report", results, "-o", f"{tmp_path}/dir/"),
                 f"Error: -o {tmp_path}/dir/ is a folder; name a file")
    page = tmp_path / "page.md"
    page.write_text("keep me")
    page.chmod(0o444)
    assert_error(run("report", results, "-o", page),
                 f"Error: cannot write {page}: it is read-only; make it writable (chmod u+w) to replace it, "
                 "or choose another location")
    assert page.read_text() == "keep me"


def test_a_pipe_as_prompts_file_is_refused_not_waited_on(tiny, tmp_path):
    fifo = tmp_path / "prompts"
    os.mkfifo(fifo)
    assert_error(run("pair", tiny.target, tiny.draft, "--prompts", fifo),
                 f"Error: prompts file {fifo} is a pipe, not a file; pass an existing UTF-8 text file to --prompts")


def test_resume_takes_k_in_any_order_and_folders_from_any_directory(tiny, tmp_path, monkeypatch):
    out = tmp_path / "sweep.json"
    monkeypatch.chdir(tiny.target.parent)
    base = ["sweep", "--targets", "./tiny-target", "--drafts", "./tiny-draft", *FAST, "-o", str(out)]
    assert run(*base, "-k", "2,1").exit_code == 0
    state = load_results(out).to_dict()
    assert state["plan"]["targets"] == [str(tiny.target)] and state["plan"]["num_draft_tokens"] == [1, 2]
    monkeypatch.chdir(tmp_path)
    again = run("sweep", "--targets", str(tiny.target), "--drafts", str(tiny.draft), *FAST, "-o", str(out),
                "-k", "1,2", "--resume")
    assert again.exit_code == 0, again.output
