"""Advice that works when pasted (issue #20): mistyped names suggest the closest valid one, and every
command mlxdraft prints or shows in --help parses against the real commands."""

import json
import shlex

import fake_engine
import pytest
from click.testing import CliRunner

from mlxdraft.cli import cli


@pytest.fixture(autouse=True)
def fake():
    return fake_engine.install()


def error_line(*args):
    """The last line of a command that must fail with one Error: line (exit 1, no traceback)."""
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: "), result.output
    return lines[-1]


def test_mistyped_family_suggests_the_closest():
    line = error_line("sweep", "--family", "qwen25", "--engine", "fake")
    assert line.startswith("Error: unknown family 'qwen25'; did you mean 'qwen2.5'? known families: ")
    assert "llama3" in line


def test_mistyped_model_suggests_the_closest():
    line = error_line("pair", "qwen2.5:7b-4bt", "qwen2.5:0.5b-4bit", "--engine", "fake")
    assert line.startswith("Error: no model 'qwen2.5:7b-4bt' in the qwen2.5 list; did you mean 'qwen2.5:7b-4bit'")
    line = error_line("pair", "qwen25:7b-4bit", "qwen2.5:0.5b-4bit", "--engine", "fake")
    assert line.startswith("Error: no model list knows 'qwen25:7b-4bit'; did you mean 'qwen2.5:7b-4bit'")


def test_mistyped_method_suggests_the_closest():
    line = error_line("pair", "big", "small", "--engine", "fake", "--methods", "draft-adaptiv")
    assert line.startswith("Error: unknown method 'draft-adaptiv'; did you mean 'draft-adaptive'? choose from ")


@pytest.mark.parametrize("param, message", [
    ("prompt-lookup.ngram=2", "Error: prompt-lookup has no parameter 'ngram'; did you mean 'ngram_max' or "
                              "'ngram_min'? (it has: ngram_max, ngram_min)"),
    ("prompt-lokup.ngram_max=2", "Error: --param 'prompt-lokup.ngram_max=2' is not METHOD.NAME=VALUE for a chosen "
                                 "method; did you mean 'prompt-lookup.ngram_max'? (parameters: "
                                 "prompt-lookup.ngram_max, prompt-lookup.ngram_min)"),
    ("draft-adaptive.threshold=0.3", "Error: --param 'draft-adaptive.threshold=0.3' is for draft-adaptive, which is "
                                     "not a chosen method; choose it too (--methods prompt-lookup,draft-adaptive) "
                                     "or drop the parameter"),
])
def test_mistyped_param_suggests_the_closest(param, message):
    assert error_line("pair", "big", "--engine", "fake", "--method", "prompt-lookup", "--param", param) == message


def test_bare_param_name_of_the_one_method_that_has_it(tmp_path):
    """The commands a report prints for `generate` write --param NAME=VALUE; they must run."""
    from mlxdraft.cli import parse_params
    from mlxdraft.methods import parse_methods

    methods = parse_methods("mlx-lm,prompt-lookup,draft-adaptive")
    assert parse_params(["ngram_max=4", "calibrate=False", "draft-adaptive.threshold=0.3"], methods) == {
        "prompt-lookup": {"ngram_max": 4}, "draft-adaptive": {"calibrate": 0, "threshold": 0.3}}


def fake_sweep(out, *extra):
    return ["sweep", "--engine", "fake", "--targets", "big", "--drafts", "small", "-k", "2", "--max-tokens", "8",
            "-w", "0", "--prompt", "Hello there", "-o", str(out), *extra]


def test_resume_lists_every_difference_at_once_and_the_command_that_made_the_file(tmp_path):
    out = tmp_path / "s.json"
    made = CliRunner().invoke(cli, fake_sweep(out))
    assert made.exit_code == 0, made.output
    assert json.loads(out.read_text())["command"] == ["mlxdraft", *fake_sweep(out)]
    line = error_line(*fake_sweep(out, "--resume", "--max-tokens", "10", "-k", "2,4", "--drafts", "small,tiny",
                                  "--prompt", "Something else"))
    assert line == (
        f"Error: cannot resume {out}: it was made with different settings (--max-tokens 8 there, 10 now; "
        "-k 2 there, 2,4 now; drafts: tiny now, not there; the prompts differ (prompt 1 of 1)); choose another "
        f"--output, or continue it with the options it was made with: {shlex.join(['mlxdraft', *fake_sweep(out)])} "
        "--resume")
    command = line.rsplit("made with: ", 1)[1]
    assert CliRunner().invoke(cli, shlex.split(command)[1:]).exit_code == 0  # and it does continue it


def test_resume_of_a_file_without_a_recorded_command(tmp_path):
    out = tmp_path / "s.json"
    assert CliRunner().invoke(cli, fake_sweep(out)).exit_code == 0
    data = json.loads(out.read_text())
    del data["command"]
    out.write_text(json.dumps(data))
    assert error_line(*fake_sweep(out, "--resume", "--seed", "3")) == (
        f"Error: cannot resume {out}: it was made with different settings (--seed 0 there, 3 now); rerun with the "
        "same options or choose another --output")


@pytest.mark.parametrize("fmt, what", [("html", "an HTML report"), ("markdown", "a Markdown report"),
                                       ("csv", "a CSV report"), ("json", "a JSON report"),
                                       ("table", "a text report")])
def test_report_on_a_rendering_says_what_it_is_and_which_file_to_pass(tmp_path, fmt, what):
    out = tmp_path / "demo.json"
    assert CliRunner().invoke(cli, fake_sweep(out)).exit_code == 0
    rendering = tmp_path / f"demo-report.{fmt}"
    assert CliRunner().invoke(cli, ["report", str(out), "--format", fmt, "-o", str(rendering)]).exit_code == 0
    assert error_line("report", str(rendering)) == (
        f"Error: {rendering} is {what} rendered by mlxdraft report, not a results file; pass the results file "
        f"it was rendered from (the .json written by sweep -o or pair -o), e.g. {out}")


def test_report_on_a_rendering_far_from_its_results_file(tmp_path, monkeypatch):
    out = tmp_path / "made" / "demo.json"
    assert CliRunner().invoke(cli, fake_sweep(out)).exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert CliRunner().invoke(cli, ["report", str(out), "--format", "html", "-o", "demo.html"]).exit_code == 0
    assert error_line("report", "demo.html") == (
        "Error: demo.html is an HTML report rendered by mlxdraft report, not a results file; pass the results file "
        "it was rendered from (the .json written by sweep -o or pair -o)")


def printed_commands(text: str) -> list[str]:
    """The commands a run printed after "with: " or "again: " (each line's last words)."""
    return [line.split(with_, 1)[1] for line in text.splitlines()
            for with_ in ("with: ", "again: ") if with_ in line and "mlxdraft " in line.split(with_, 1)[1]]


def run_printed(command: str):
    args = shlex.split(command)
    assert args[0] == "mlxdraft", command
    fake_engine.install()
    return CliRunner().invoke(cli, args[1:])


def interrupt_after(engine, runs: int) -> None:
    """Ctrl-C during the generation after `runs` of them (memory probe included)."""
    generate = engine.generate

    def interrupting(*args, **kwargs):
        if engine.generations >= runs:
            raise KeyboardInterrupt
        return generate(*args, **kwargs)

    engine.generate = interrupting


def test_sweep_prints_a_render_command_that_runs(tmp_path):
    out = tmp_path / "s.json"
    result = CliRunner().invoke(cli, fake_sweep(out))
    assert result.exit_code == 0, result.output
    [command] = printed_commands(result.stderr)
    assert command == shlex.join(["mlxdraft", "report", str(out), "--format", "html", "-o", str(tmp_path / "s.html")])
    assert run_printed(command).exit_code == 0 and (tmp_path / "s.html").read_text().startswith("<!DOCTYPE html>")


def test_interrupted_sweep_prints_a_resume_command_that_finishes_it(tmp_path, fake):
    out = tmp_path / "s.json"
    interrupt_after(fake, 4)
    result = CliRunner().invoke(cli, fake_sweep(out, "-r", "3"))
    assert result.exit_code == 130, result.output
    [command] = printed_commands(result.stderr)
    assert command == shlex.join(["mlxdraft", *fake_sweep(out, "-r", "3"), "--resume"])
    assert json.loads(out.read_text())["command"] == ["mlxdraft", *fake_sweep(out, "-r", "3")]
    assert run_printed(command).exit_code == 0


def test_interrupted_pair_gives_one_piece_of_advice_that_works(tmp_path, fake):
    out = tmp_path / "p.json"
    args = ["pair", "big", "small", "--engine", "fake", "-k", "2", "-r", "3", "--max-tokens", "8", "-w", "0",
            "--prompt", "Hello there", "-o", str(out)]
    interrupt_after(fake, 4)  # the memory probe, then 3 of the 6 runs
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 130, result.output
    assert "--resume" not in result.output  # the report's advice too
    [command] = printed_commands(result.stderr)[-1:]
    assert f"run the pair again: {command}" in result.stdout  # the report says the same (and `report` would)
    # and nothing else: no more passes, no more prompts beside it (its verdict is open, on one prompt of three passes)
    assert "INCONCLUSIVE" in result.stdout
    for advice in ("(-r)", "-r 4", "-r 5", "more passes", "more prompts like", "add prompts", "prompts file"):
        assert advice not in result.stdout, advice
    rendered = CliRunner().invoke(cli, ["report", str(out)])
    assert f"run the pair again: {command}" in rendered.stdout and "(-r)" not in rendered.stdout
    assert result.stderr.splitlines()[-1] == f"To measure all 6 runs, run it again: {command}"
    again_out = tmp_path / "p-2.json"  # a new file beside it: what was measured stays
    assert command == shlex.join(["mlxdraft", *args[:-1], str(again_out)])
    partial = out.read_text()
    again = run_printed(command)
    assert again.exit_code == 0, again.output
    assert out.read_text() == partial
    assert sum(len(g["samples"]) for g in json.loads(again_out.read_text())["groups"].values()) == 6


@pytest.mark.parametrize("param, message", [
    ("draft-adaptive.calibrate=2", "Error: --param: draft-adaptive: calibrate must be true or false, 1 or 0 (got 2.0)"),
    ("draft-adaptive.threshold=1.5", "Error: --param: draft-adaptive: threshold must be between 0 and 1 (got 1.5)"),
    ("prompt-lookup.ngram_min=4",
     "Error: --param: prompt-lookup: need 1 <= ngram_min <= ngram_max (got ngram_min=4, ngram_max=3)"),
])
def test_param_values_a_method_cannot_run_are_refused_before_anything_loads(tmp_path, fake, param, message):
    out = tmp_path / "p.json"
    result = CliRunner().invoke(cli, ["pair", "big", "small", "--engine", "fake", "--methods",
                                      "draft-adaptive,prompt-lookup", "--param", param, "--prompt", "Hi",
                                      "-o", str(out)])
    assert result.exit_code == 1 and (result.exception is None or isinstance(result.exception, SystemExit))
    assert result.output.strip().splitlines() == [message]  # no progress line: nothing loaded, nothing measured
    assert not out.exists()


def test_a_strategy_change_is_one_difference_not_two():
    """An exhaustive plan does not record the objective (only a race uses it): switching strategy is the
    one difference, not also an objective that is 'unset now'."""
    from mlxdraft.sweep import describe_differences

    smart = {"strategy": "smart", "objective": "e2e", "engine": "mlx-lm"}
    exhaustive = {"strategy": "exhaustive", "engine": "mlx-lm"}
    assert describe_differences(smart, exhaustive) == ["--strategy smart there, exhaustive now"]
    assert describe_differences(exhaustive, smart) == ["--strategy exhaustive there, smart now"]
