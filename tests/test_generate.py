"""`mlxdraft generate` and the Python API `mlxdraft.generate`: the text streams to stdout, the
figures go to stderr, --json is one document, and every method gives the target's own greedy tokens."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import mlxdraft
from mlxdraft.cli import cli
from mlxdraft.errors import InvalidInputError


def run(*args, input=None):
    return CliRunner().invoke(cli, ["generate", *map(str, args)], input=input)


def test_json_has_text_ids_and_round_statistics(tiny):
    result = run(tiny.target, "--draft", tiny.draft, "--method", "mlx-lm", "-k", "3", "--max-tokens", "12",
                 "--prompt", "Hello there", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    baseline = json.loads(run(tiny.target, "--max-tokens", "12", "--prompt", "Hello there", "--json").stdout)
    assert data["token_ids"] == baseline["token_ids"] and len(data["token_ids"]) <= 12
    assert data["method"] == "mlx-lm" and data["num_draft_tokens"] == 3 and baseline["method"] == "baseline"
    assert all(r["accepted"] <= r["proposed"] <= 3 for r in data["rounds"])
    assert isinstance(data["text"], str) and data["ttft_s"] > 0


def test_text_streams_to_stdout_and_figures_to_stderr(tiny):
    result = run(tiny.target, "--max-tokens", "8", input="Hello from stdin")
    assert result.exit_code == 0, result.output
    api = mlxdraft.generate(str(tiny.target), "Hello from stdin", method="baseline", max_tokens=8)
    assert result.stdout == api.text + "\n"
    assert result.stderr.startswith("[baseline] ") and "tok/s" in result.stderr


def test_a_loaded_pair_is_used_as_it_is(tiny):
    import mlx_lm

    pair = mlx_lm.load(str(tiny.target))
    first = mlxdraft.generate(pair, "Hi", method="mlx-lm", draft=pair, num_draft_tokens=2, max_tokens=10)
    assert first.acceptance_rate == 1.0  # a model drafting for itself is always right
    assert first.token_ids == mlxdraft.generate(pair, "Hi", method="baseline", max_tokens=10).token_ids


def test_bad_requests_are_clear_errors(tiny):
    with pytest.raises(InvalidInputError, match="the mlx-lm method needs a draft model"):
        mlxdraft.generate(str(tiny.target), "Hi", method="mlx-lm")
    result = run(tiny.target, "--method", "nonsense", "--prompt", "Hi")
    assert result.exit_code == 1 and result.output.strip().splitlines()[-1].startswith(
        "Error: unknown method 'nonsense'; choose from ")
    result = run(tiny.target, "--draft", tiny.other_tokenizer, "--method", "mlx-lm", "--prompt", "Hi")
    assert result.exit_code == 1 and "their tokenizers differ at token id" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
