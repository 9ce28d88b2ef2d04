import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from mlxdraft.cli import cli
from mlxdraft.reports import render_sweep
from mlxdraft.results import load_results


def sweep_args(tiny, output, *extra, prompts=None):
    args = ["sweep", "--targets", f"{tiny.target},{tiny.target_qwen}",
            "--drafts", f"{tiny.draft},{tiny.other_tokenizer}", "-k", "1,3", "--max-tokens", "10",
            "-w", "0", "-o", str(output)]
    if prompts:
        args += ["--prompts", str(prompts)]
    else:
        args += ["--prompt", "Hello there"]
    return args + list(extra)


def structure(state):
    """What must be identical between two sweeps of the same plan: groups, statuses, and per run
    the variant, prompt, pass and greedy token ids (timings differ, of course)."""
    return {
        key: (g["status"], g["reason"],
              [(s["num_draft_tokens"], s["prompt_index"], s["pass_index"], s["token_ids"]) for s in g["samples"]])
        for key, g in state["groups"].items()
    }


def test_sweep_end_to_end(tiny, tmp_path):
    out = tmp_path / "sweep.json"
    result = CliRunner().invoke(cli, sweep_args(tiny, out))
    assert result.exit_code == 0, result.output
    state = load_results(out).to_dict()
    groups = state["groups"]
    assert [g["status"] for g in groups.values()] == ["done", "skipped", "done", "skipped"]
    done = groups[f"{tiny.target} | {tiny.draft}"]
    assert sorted(s["num_draft_tokens"] for s in done["samples"]) == [0, 1, 3]  # in a random order (`order`)
    assert sorted(s["position"] for s in done["samples"]) == [0, 1, 2] and state["plan"]["order"] == "random"
    skipped = groups[f"{tiny.target} | {tiny.other_tokenizer}"]
    assert "their tokenizers differ at token id" in skipped["reason"] and skipped["retry"] is False
    assert state["versions"]["mlx"] and state["machine"]["chip"]
    assert state["models"][str(tiny.target)]["precision"] == "fp32"
    assert state["models"][str(tiny.target)]["alone_peak_memory_gb"] > 0
    assert "End-to-end speedup at each pair's best k (rows: setups, columns: targets; each widened" in result.stdout
    assert re.search(r"mlx-lm tiny-other +skipped", result.stdout)
    assert "[group 1/4 | run 1/at most 12 |" in result.stderr  # smart: runs are an upper bound


def test_existing_output_needs_resume_and_same_settings(tiny, tmp_path):
    out = tmp_path / "sweep.json"
    assert CliRunner().invoke(cli, sweep_args(tiny, out)).exit_code == 0
    again = CliRunner().invoke(cli, sweep_args(tiny, out))
    assert again.exit_code == 1
    assert again.output.splitlines()[-1] == (
        f"Error: {out} already exists; pass --force to replace it, --resume to continue it, "
        "or choose another --output")
    changed = CliRunner().invoke(cli, sweep_args(tiny, out, "--resume", "--max-tokens", "12"))
    assert changed.exit_code == 1
    made_with = shlex.join(["mlxdraft", *sweep_args(tiny, out), "--resume"])
    assert changed.output.splitlines()[-1] == (
        f"Error: cannot resume {out}: it was made with different settings (--max-tokens 10 there, 12 now); "
        f"choose another --output, or continue it with the options it was made with: {made_with}")
    before = out.read_bytes()
    finished = CliRunner().invoke(cli, sweep_args(tiny, out, "--resume"))
    assert finished.exit_code == 0
    assert structure(json.loads(before)) == structure(load_results(out).to_dict())


def test_pair_over_memory_budget_is_skipped_with_reason(tiny, tmp_path):
    out = tmp_path / "sweep.json"
    result = CliRunner().invoke(cli, sweep_args(tiny, out, "--memory-gb", "0.0001"))
    assert result.exit_code == 0, result.output
    state = load_results(out).to_dict()
    statuses = {g["status"] for g in state["groups"].values() if "tiny-other" not in g["draft"]}
    assert statuses == {"skipped"}
    reason = state["groups"][f"{tiny.target} | {tiny.draft}"]["reason"]
    assert reason.startswith("needs about ") and reason.endswith("over the 0.0 GB budget (--memory-gb)")
    assert "skipped" in result.stdout


def test_failing_case_is_recorded_and_sweep_goes_on(tiny, tmp_path):
    broken = tmp_path / "broken-draft"
    broken.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        (broken / name).write_bytes((tiny.draft / name).read_bytes())
    config = json.loads((tiny.draft / "config.json").read_text())
    config["hidden_size"] = 80  # weights no longer fit the architecture
    (broken / "config.json").write_text(json.dumps(config))
    out = tmp_path / "sweep.json"
    args = ["sweep", "--targets", str(tiny.target), "--drafts", f"{broken},{tiny.draft}", "-k", "2",
            "--max-tokens", "6", "-w", "0", "--prompt", "Hi", "-o", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 3, result.output  # some pairs failed; everything else ran and was saved
    groups = list(load_results(out).to_dict()["groups"].values())
    assert groups[0]["status"] == "failed" and groups[0]["reason"].startswith(f"cannot load {broken}")
    assert groups[1]["status"] == "done"
    assert result.stderr.splitlines()[-2].startswith(f"1 of 2 group(s) failed: cannot load {broken}")
    assert result.stderr.splitlines()[-1] == (
        "After fixing the cause, retry them with: mlxdraft " + " ".join(args) + " --resume")


def test_sigkill_then_resume_matches_an_uninterrupted_sweep(tmp_path):
    """kill -9 mid-sweep (the fake engine hangs after five generations, so the kill certainly lands
    mid-sweep), then --resume: the same runs as a sweep never interrupted, and a valid file between."""
    import fake_engine

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\ntwo\nthree\nfour\n")
    args = ["sweep", "--targets", "big", "--drafts", "small,tiny", "-k", "1,3", "--max-tokens", "40", "-w", "0",
            "--prompts", str(prompts), "--engine", "fake"]
    fake_engine.install()
    full = tmp_path / "full.json"
    assert CliRunner().invoke(cli, args + ["-o", str(full)]).exit_code == 0

    killed = tmp_path / "killed.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1", FAKE_ENGINE_HANG_AFTER="6")  # the probe and five runs
    process = subprocess.Popen([sys.executable, fake_engine.__file__, *args, "-o", str(killed)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        try:
            if sum(len(g["samples"]) for g in json.loads(killed.read_text())["groups"].values()) >= 5:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = load_results(killed).to_dict()  # still a valid file
    assert sum(len(g["samples"]) for g in partial["groups"].values()) == 5
    resumed = CliRunner().invoke(cli, args + ["-o", str(killed), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert structure(load_results(killed).to_dict()) == structure(load_results(full).to_dict())


@pytest.fixture(scope="module")
def finished_sweep(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "sweep.json"
    result = CliRunner().invoke(cli, sweep_args(tiny, out, "-r", "3"))
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json", "html"])
def test_every_report_format_renders(finished_sweep, fmt):
    result = CliRunner().invoke(cli, ["report", str(finished_sweep), "--format", fmt])
    assert result.exit_code == 0, result.output
    text = result.stdout
    if fmt == "json":
        data = json.loads(text)
        done = [c for c in data["cases"] if c["status"] == "done"]
        # one prompt in three passes: the prompt is the unit, so about prompts like it there is no interval
        assert len(done) == 4 and all(c["summary"]["e2e_speedup"]["n"] == 1 for c in done)
        assert all(c["summary"]["e2e_speedup"]["low"] is None for c in done)
        for verdict in data["verdicts"]:
            assert verdict["verdict"] == "inconclusive" and verdict["n"] == 1 and verdict["unit"] == "prompt"
    elif fmt == "csv":
        lines = text.strip().splitlines()
        assert lines[0].startswith("target,method,draft,num_draft_tokens,status")
        assert len(lines) == 1 + 8
    elif fmt == "markdown":
        assert "| draft \\ target" in text
        assert "## Verdict per target (objective: end-to-end speed; about prompts like these)" in text
    elif fmt == "html":
        assert text.startswith("<!DOCTYPE html>") and "<svg" in text
    else:
        assert "Baseline tok/s measured beside each pair (decode / end to end):" in text
        assert text.index("Verdict per target") < text.index("End-to-end speedup at each pair's best k")


def test_metrics_share_the_layout(finished_sweep):
    for metric, title in [("acceptance", "Acceptance rate"), ("tokens-per-round", "Tokens per complete verify round")]:
        result = CliRunner().invoke(cli, ["report", str(finished_sweep), "--metric", metric])
        assert result.exit_code == 0 and title in result.stdout


def test_html_is_offline_and_escapes_names(finished_sweep):
    state = load_results(finished_sweep).to_dict()
    evil = "<script>alert('x')</script>"
    text = json.dumps(state)
    for record in state["groups"].values():
        target = record["target"]
    text = text.replace(json.dumps(target)[1:-1], evil.replace("'", "\\u0027"))
    page = render_sweep(json.loads(text), "html")
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page and "//cdn" not in page


def test_report_errors(tmp_path):
    missing = CliRunner().invoke(cli, ["report", str(tmp_path / "nope.json")])
    assert missing.exit_code == 1
    assert missing.output == f"Error: results file {tmp_path / 'nope.json'} does not exist\n"
    junk = tmp_path / "junk.json"
    junk.write_text("{")
    bad = CliRunner().invoke(cli, ["report", str(junk)])
    assert bad.exit_code == 1 and bad.output.startswith(f"Error: results file {junk} is damaged: it is not valid JSON")


def test_sweep_bad_input(tiny, tmp_path):
    result = CliRunner().invoke(cli, ["sweep", "--targets", str(tiny.target), "-k", "1,x"])
    assert result.output == (
        "Error: --num-draft-tokens takes whole numbers separated by commas, like 1,2,4 (got '1,x')\n")
    nothing = CliRunner().invoke(cli, ["sweep"])
    assert nothing.output == "Error: name what to sweep: --family F, or both --targets and --drafts\n"
    family = CliRunner().invoke(cli, ["sweep", "--family", "nope"])
    assert family.exit_code == 1 and family.output.startswith("Error: unknown family 'nope'; known families: ")


def test_family_filters_and_list_sizes_skip_before_any_download(tmp_path):
    out = tmp_path / "q.json"
    result = CliRunner().invoke(cli, [
        "sweep", "--family", "qwen2.5", "--target-sizes", "72b,7b", "--target-precisions", "4bit",
        "--draft-sizes", "0.5b", "--draft-precisions", "4bit,8bit", "--memory-gb", "16", "-k", "2",
        "-o", str(out), "--no-download"])
    assert result.exit_code == 3, result.output
    groups = load_results(out).to_dict()["groups"]
    assert list(groups) == [
        "qwen2.5:7b-4bit | qwen2.5:0.5b-4bit", "qwen2.5:7b-4bit | qwen2.5:0.5b-8bit",
        "qwen2.5:72b-4bit | qwen2.5:0.5b-4bit", "qwen2.5:72b-4bit | qwen2.5:0.5b-8bit",
    ]
    big = groups["qwen2.5:72b-4bit | qwen2.5:0.5b-4bit"]
    assert big["status"] == "skipped"
    assert big["reason"] == ("weights alone are about 41.2 GB by the model lists, too much for the 16.0 GB "
                             "budget (--memory-gb)")
    small = groups["qwen2.5:7b-4bit | qwen2.5:0.5b-4bit"]
    assert small["status"] == "failed" and "run `mlxdraft pull" in small["reason"]


def test_filters_accept_the_names_users_see_and_list_valid_values():
    from mlxdraft.sweep import choose_models

    targets, drafts = choose_models(["smollm2"], [], [], (), ["FP16"], (), ["q8", "4-bit"])
    assert [t.name for t in targets] == ["smollm2:fp16"]
    assert [d.name for d in drafts] == ["smollm2:q8", "smollm2:q4"]
    result = CliRunner().invoke(cli, ["sweep", "--family", "smollm2", "--draft-precisions", "q9"])
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output == ("Error: no drafts left to sweep; loosen --draft-sizes/--draft-precisions (draft sizes: "
                             "135m; draft precisions: fp32, bf16, fp16, 8bit, 6bit, 4bit, 3bit)\n")
