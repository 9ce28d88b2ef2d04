"""Every command shown in --help runs as printed: each parses against the real commands, and each
runs on the fake engine (standing in for mlx-lm, with a fake model for every listed short name)."""

import re
import shlex

import click
import fake_engine
import pytest
from click.testing import CliRunner

from mlxdraft import catalog, engines
from mlxdraft.cli import cli


def help_texts() -> dict[str, str]:
    """The --help output of mlxdraft and of each of its commands."""
    texts = {"mlxdraft": CliRunner().invoke(cli, ["--help"], terminal_width=80).output}
    for name in cli.commands:
        texts[name] = CliRunner().invoke(cli, [name, "--help"], terminal_width=80).output
    return texts


def commands_in(text: str) -> list[str]:
    """The `mlxdraft COMMAND ...` lines of a text (up to a gap of two spaces, where a description
    starts, or the end of the line), with the `echo ... |` that feeds one its standard input."""
    found = []
    for line in text.splitlines():
        match = re.search(r"((?:echo '[^']*' \| )?mlxdraft (\S+)(?: \S+)*)", line)
        if match and match.group(2) in cli.commands:
            found.append(match.group(1))
    return found


def parse(command: str) -> click.Context:
    """The context the real command would run with; raises click's usage error when it would not parse."""
    args = shlex.split(command.split(" | ")[-1])
    assert args[0] == "mlxdraft", command
    parent = click.Context(cli, info_name="mlxdraft")
    sub = cli.get_command(parent, args[1])
    assert sub is not None, command
    return sub.make_context(args[1], args[2:], parent=parent)


EXAMPLES = sorted({(name, command) for name, text in help_texts().items() for command in commands_in(text)})


def slow_unless_small(where: str, command: str):
    """Sweeps at the default k (six values) over a whole family take a while, even faked (a minute)."""
    slow = " sweep " in f" {command} " and " -k " not in command
    return pytest.param(where, command, marks=[pytest.mark.slow] if slow else [], id=f"{where}: {command}")


def test_help_shows_examples_of_the_measuring_commands_and_their_parameters():
    shown = {command.split()[1] for _, command in EXAMPLES}
    assert {"pair", "sweep", "report", "generate"} <= shown
    assert {where for where, command in EXAMPLES if " --param " in command} >= {"pair", "sweep"}


@pytest.mark.parametrize("where, command", EXAMPLES, ids=[f"{w}: {c}" for w, c in EXAMPLES])
def test_help_example_parses(where, command):
    parse(command)


def raw_help_strings() -> list[str]:
    """Every help string as written (before click wraps it): epilogs, command and option help."""
    strings = [cli.epilog or ""]
    for command in cli.commands.values():
        strings += [command.epilog or "", command.help or "", command.short_help or ""]
        strings += [getattr(param, "help", None) or "" for param in command.params]
    return strings


def test_every_method_parameter_shown_in_help_is_one():
    from mlxdraft.cli import parse_params
    from mlxdraft.methods import METHODS

    shown = [match for text in raw_help_strings() for match in re.findall(r"\b[a-z-]+\.[a-z_]+=[\w.]+", text)]
    assert shown
    speculative = [method for method in METHODS.values() if method.speculative]
    for example in shown:
        parse_params([example], speculative)


@pytest.fixture
def fake_mlx_lm(monkeypatch, tmp_path):
    """The fake engine under mlx-lm's name, knowing every listed short name; a fresh working folder."""
    models = dict(fake_engine.DEFAULT_MODELS)
    for entries in catalog.load_catalog().values():
        for entry in entries:
            models[entry.name] = fake_engine.FakeModel(token_s=0.001 * entry.params_b + 0.001,
                                                       weights_gb=entry.size_gb, acceptance=0.7)
    engine = fake_engine.FakeEngine(models)
    monkeypatch.setitem(engines.ENGINES, "mlx-lm", engine)
    monkeypatch.chdir(tmp_path)
    return engine


@pytest.mark.parametrize("where, command", [slow_unless_small(*example) for example in EXAMPLES])
def test_help_example_runs(fake_mlx_lm, where, command):
    args = shlex.split(command.split(" | ")[-1])[1:]
    if args[0] == "generate":
        pytest.skip("generate decodes text with the model's tokenizer, which the fake engine has not")
    if args[0] == "serve":
        pytest.skip("serve runs until it is stopped; tests/test_serve*.py run it in real server processes")
    if args[0] == "report":  # the results file it renders, made first
        made = CliRunner().invoke(cli, ["pair", "smollm2:fp16", "smollm2:q8", "--max-tokens", "8", "-o", args[1]])
        assert made.exit_code == 0, made.output
    stdin = shlex.split(command.split(" | ")[0])[1] if " | " in command else None
    result = CliRunner().invoke(cli, args, input=stdin)
    assert result.exit_code == 0, (command, result.output, result.exception)
