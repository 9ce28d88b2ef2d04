"""Bad inputs through the real CLI: every one ends in exit status 1 and a single `Error: ...` line
that names the culprit, never a traceback (CliRunner would hide one, so result.exception is checked)."""

import json
import math
import shutil

import pytest
from click.testing import CliRunner

from mlxdraft.cli import cli

FAST = ["--max-tokens", "4", "-w", "0", "--prompt", "Hello"]


def error_line(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.output.strip().splitlines()[-1]


def broken_model(tiny, tmp_path, breakage):
    folder = tmp_path / "broken-model"
    shutil.copytree(tiny.draft, folder)
    breakage(folder)
    return folder


FIX = "convert or download the model again"
BROKEN_MODELS = [
    (lambda f: (f / "config.json").write_text('{"model_type": "llama",'),
     "{m}/config.json is not valid JSON (Expecting property name enclosed in double quotes at line 1, column 24); "
     + FIX),
    (lambda f: (f / "config.json").write_text('"llama"'), "{m}/config.json holds a string, not a JSON object; " + FIX),
    (lambda f: (f / "config.json").write_text("{}"), "{m}/config.json does not say which model_type it is; " + FIX),
    (lambda f: (f / "config.json").write_bytes(b"\xff\xfe{}"), "{m}/config.json is not UTF-8 text; " + FIX),
    (lambda f: (f / "tokenizer.json").unlink(),
     "{m} has no tokenizer (tokenizer.json, tokenizer.model or a .tiktoken file); copy the tokenizer files of the "
     "original model into the folder"),
    (lambda f: (f / "tokenizer.json").write_text("{}"), "cannot read the tokenizer of {m} ("),
]


@pytest.mark.parametrize("breakage, message", BROKEN_MODELS)
@pytest.mark.parametrize("role", ["target", "draft"])
def test_pair_with_a_broken_model_folder(tiny, tmp_path, breakage, message, role):
    broken = broken_model(tiny, tmp_path, breakage)
    models = [broken, tiny.draft] if role == "target" else [tiny.draft, broken]
    assert error_line("pair", *models, *FAST).startswith("Error: " + message.format(m=broken))


def test_model_path_of_an_unknown_user(tiny):
    assert error_line("pair", "~no-such-user-here/model", tiny.draft, *FAST) == (
        "Error: model folder ~no-such-user-here/model cannot be used: there is no user 'no-such-user-here' on this "
        "machine for ~no-such-user-here to stand for; write the path out in full")


def test_model_name_too_long_for_a_path(tiny):
    name = "x" * 5000
    assert error_line("pair", name, tiny.draft, *FAST).startswith(f"Error: {name!r} is not a model folder")


def test_endless_prompts_file(tiny):
    assert error_line("pair", tiny.target, tiny.draft, "--prompts", "/dev/zero") == (
        "Error: prompts file /dev/zero is larger than 1 MiB, the most mlxdraft reads; pass a smaller file")


@pytest.mark.parametrize("text, message", [
    ('{"prompt": "a"}\n# my prompts\n', "line 2: not a JSON object; this file is JSONL (it starts with one), so "
                                        'every non-blank line must be {"prompt": "..."}; comments are not allowed'),
    ("a\n\n" + "b" * 32_001 + "\n", "line 3: the prompt has 32,001 characters, more than the 32,000 allowed; "
                                     "shorten it"),
])
def test_bad_prompts_files(tiny, tmp_path, text, message):
    path = tmp_path / "prompts.txt"
    path.write_text(text)
    assert error_line("pair", tiny.target, tiny.draft, "--prompts", path) == f"Error: prompts file {path}, {message}"


@pytest.fixture
def home_under_a_file(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("MLXDRAFT_HOME", str(blocker / "home"))
    return blocker


def test_smollm2_name_with_an_unwritable_home(home_under_a_file):
    assert error_line("pair", "smollm2:fp16", "smollm2:q8", *FAST) == (
        f"Error: cannot prepare smollm2 in {home_under_a_file / 'home'}: {home_under_a_file} is a file, not a "
        "folder; set MLXDRAFT_HOME to a folder you can write to")


def test_home_of_an_unknown_user(monkeypatch):
    monkeypatch.setenv("MLXDRAFT_HOME", "~no-such-user-here/mlxdraft")
    assert error_line("models", "--family", "smollm2") == (
        "Error: MLXDRAFT_HOME ~no-such-user-here/mlxdraft cannot be used: there is no user 'no-such-user-here' on "
        "this machine for ~no-such-user-here to stand for; write the path out in full")


def test_output_under_a_file_is_refused_before_measuring(tiny, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    output = blocker / "pair.json"
    assert error_line("pair", tiny.target, tiny.draft, *FAST, "-o", output) == (
        f"Error: cannot write {output}: {blocker} is a file, not a folder; choose another location")


def test_report_of_a_damaged_results_file(tmp_path):
    from test_schema import sweep_state

    data = sweep_state()
    data["groups"]["t | d"]["samples"][1]["decode_s"] = math.nan
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(data))  # Python writes NaN, and reads it back
    assert error_line("report", path) == (
        f'Error: results file {path} is damaged: groups["t | d"].samples[1].decode_s is NaN; repair that field in '
        "the file, or measure again into a new file")


def test_hub_download_into_an_unwritable_cache_is_not_blamed_on_the_network(tmp_path):
    import errno
    import os

    from mlxdraft import hub

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    error = hub._hub_error("me/model", NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR),
                                                          str(blocker / "hub")))
    assert str(error) == (f"cannot download me/model into {hub.cache_dir()}: {blocker} is a file, not a folder; "
                          "free some space or point HF_HOME at a folder you can write to")
    full = hub._hub_error("me/model", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    assert str(full).startswith(f"cannot download me/model into {hub.cache_dir()}: No space left on device; ")
