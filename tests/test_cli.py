import json

import pytest
from click.testing import CliRunner

from mlxdraft.cli import cli

FAST = ["--max-tokens", "8", "-w", "0", "--prompt", "Hello there"]


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_pair_end_to_end_human(tiny):
    result = run("pair", str(tiny.target), str(tiny.target), "-k", "3", *FAST)
    assert result.exit_code == 0, result.output
    lines = {line.split("  ", 1)[0]: line for line in result.stdout.splitlines()}
    assert lines["Speedup"].startswith("Speedup         end to end ")
    assert "(n=1 prompt, no error bar)" in lines["Speedup"]  # one run: no error bar, never ± 0.00
    assert "± 0.0" not in result.stdout
    assert lines["Acceptance"] == "Acceptance      100.0 % (n=1, one run) of proposed draft tokens accepted"
    assert lines["Lossless"] == "Lossless        yes: identical token ids in 1 of 1 runs"
    assert lines["Verdict"].startswith("Verdict         INCONCLUSIVE: n=1 prompt")
    assert "loading target" in result.stderr


def test_pair_json_parses_and_saves(tiny, tmp_path):
    out = tmp_path / "r.json"
    result = run("pair", str(tiny.target), str(tiny.draft), "--json", "-r", "3", "-o", str(out), *FAST)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    [verdict] = report["verdicts"]
    assert verdict["verdict"] in ("speculative", "no-gain", "inconclusive")
    # one prompt in three passes: n counts prompts (the unit of replication), not passes
    assert verdict["n"] == 1 and set(verdict) >= {"e2e_speedup", "decode_speedup", "tied", "candidates"}
    saved = json.loads(out.read_text())
    assert saved["schema_version"] == 3 and saved["kind"] == "pair"
    assert set(saved["methods"]) == {"baseline", "mlx-lm"} and saved["engines"]["mlx-lm"]["capabilities"]["methods"]
    assert [key.rsplit(" | ", 2)[1:] for key in saved["commands"]] == [["mlx-lm", "4"]]
    [group] = saved["groups"].values()
    assert len(group["samples"]) == 6
    assert saved["versions"]["mlx-lm"] and saved["machine"]["memory_gb"] > 0
    assert saved["models"][str(tiny.target)]["precision"] == "fp32"
    rendered = run("report", str(out), "--format", "json")
    assert rendered.exit_code == 0 and json.loads(rendered.stdout)["verdicts"] == report["verdicts"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["/nonexistent/model", "DRAFT"], "Error: model folder /nonexistent/model does not exist; check the path"),
        (["TARGET", "DRAFT", "-k", "0"], "Error: --num-draft-tokens must be at least 1 (got 0)"),
        (["TARGET", "DRAFT", "--max-tokens", "0"], "Error: --max-tokens must be at least 1 (got 0)"),
        (["TARGET", "DRAFT", "--prompt", "a", "--prompts", "b"], "Error: give either --prompt or --prompts, not both"),
        (["TARGET", "DRAFT", "--prompts", "/nonexistent.txt"],
         "Error: prompts file /nonexistent.txt does not exist; pass an existing UTF-8 text file to --prompts"),
    ],
)
def test_pair_bad_input(tiny, args, message):
    args = [str(tiny.target) if a == "TARGET" else str(tiny.draft) if a == "DRAFT" else a for a in args]
    result = run("pair", *args)
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.output.strip().splitlines()[-1] == message


def test_pair_empty_prompts_file(tiny, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = run("pair", str(tiny.target), str(tiny.draft), "--prompts", str(empty))
    assert result.exit_code == 1
    assert result.output == (
        f"Error: prompts file {empty} is empty; put one prompt per line (or JSONL with a 'prompt' key)\n"
    )


def test_pair_folder_that_is_not_a_model(tiny, tmp_path):
    result = run("pair", str(tmp_path), str(tiny.draft), *FAST)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {tmp_path} is not a model folder (no config.json); pass a folder made by "
        "mlx_lm.convert or a Hub repo id\n"
    )


def test_incompatible_pair_fails_before_loading_weights(tiny):
    result = run("pair", str(tiny.target), str(tiny.other_tokenizer), *FAST)
    assert result.exit_code == 1
    assert "Loading" not in result.stderr and "Measuring" not in result.stderr
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: {tiny.other_tokenizer} cannot draft for {tiny.target}: "
                           "their tokenizers differ at token id ")


def test_pair_unreadable_prompts_file(tiny, tmp_path):
    binary = tmp_path / "prompts.bin"
    binary.write_bytes(b"\xff\xfe\x00broken")
    result = run("pair", str(tiny.target), str(tiny.draft), "--prompts", str(binary))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: prompts file {binary} cannot be read: ")
    assert result.output.endswith("; pass an existing UTF-8 text file to --prompts\n")
