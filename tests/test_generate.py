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


# -- --show-accepted: which tokens the draft supplied -----------------------------------------------
def expected_origins(result) -> list[bool]:
    """From the per-round statistics alone: each round's accepted draft tokens, then the target's
    own token, except a last round cut short (it emitted only draft tokens)."""
    origins = []
    for index, stats in enumerate(result.rounds):
        own = 1 if index < len(result.rounds) - 1 else len(result.token_ids) - len(origins) - stats.accepted
        origins += [True] * stats.accepted + [False] * own
    return origins or [False] * len(result.token_ids)


def marked(result) -> str:
    """The plain-text convention, built by hand: each run of accepted draft tokens inside [...]."""
    text, inside = "", False
    for piece, from_draft in zip(result.token_texts, expected_origins(result)):
        if not piece:
            continue
        if from_draft != inside:
            if from_draft:
                stripped = piece.lstrip()
                text += piece[: len(piece) - len(stripped)] + "["
                piece = stripped
            else:
                text += "]"
            inside = from_draft
        text += piece
    return text + ("]" if inside else "")


@pytest.mark.parametrize(("method", "k", "max_tokens"), [("draft", 3, 14), ("mlx-lm", 3, 7), ("draft-adaptive", 4, 9)])
def test_show_accepted_brackets_exactly_the_draft_tokens(tiny, method, k, max_tokens):
    """A model drafting for itself: every proposal is accepted. mlx-lm's last round at 7 tokens is
    cut by max-tokens after 3 accepted draft tokens, so it ends without a token of the target's."""
    args = (tiny.target, "--draft", tiny.target, "--method", method, "-k", k, "--max-tokens", max_tokens,
            "--prompt", "The capital of France is")
    result = run(*args, "--show-accepted")
    assert result.exit_code == 0, result.output
    data = json.loads(run(*args, "--json").stdout)
    api = mlxdraft.generate(str(tiny.target), "The capital of France is", draft=str(tiny.target), method=method,
                            num_draft_tokens=k, max_tokens=max_tokens)
    assert api.token_ids == data["token_ids"] and api.from_draft == data["from_draft"] == expected_origins(api)
    assert sum(api.from_draft) == api.accepted_draft_tokens + sum(
        r.accepted for r in api.rounds if not r.complete) > 0
    assert result.stdout == marked(api) + "\n"
    if not {"[", "]"} & set(api.text):  # the random kit may write brackets itself
        assert result.stdout.replace("[", "").replace("]", "") == api.text + "\n"
    assert f"draft-token share {api.draft_token_share * 100:.0f}% (in [brackets])" in result.stderr
    if method == "mlx-lm":
        assert api.from_draft[-3:] == [True, True, True] and not api.rounds[-1].complete


def test_show_accepted_with_a_draft_that_is_never_right_marks_nothing(tiny):
    args = (tiny.target, "--draft", tiny.draft, "-k", "3", "--max-tokens", "12", "--prompt", "Hello there")
    result = run(*args, "--show-accepted")
    plain = run(*args)
    assert result.exit_code == 0 and plain.exit_code == 0, result.output
    assert "acceptance 0% (0 of " in result.stderr  # the kit's own draft disagrees with the target
    assert result.stdout == plain.stdout  # no brackets added (the random kit may write some itself)


class NoisyDraft:
    """The target's logits plus a fixed random bias per token: it agrees with the target sometimes."""

    def __init__(self, model, noise=4.0, scale=20.0):
        import mlx.core as mx

        self.model, self.layers, self.args = model, model.layers, model.args
        width = model(mx.array([[0]])).shape[-1]
        self.bias = noise * mx.random.normal((width,), key=mx.random.key(1))
        self.scale = scale

    def __call__(self, inputs, cache=None):
        return self.model(inputs, cache=cache) * self.scale + self.bias


def test_streamed_marking_matches_the_rounds_with_a_draft_that_is_sometimes_right(loaded):
    target = loaded["target"]
    pair, draft = (target.model, target.tokenizer), (NoisyDraft(target.model), target.tokenizer)
    for method in ("draft", "mlx-lm"):
        streamed = []
        result = mlxdraft.generate(pair, "def add(a, b):", draft=draft, method=method, num_draft_tokens=3,
                                   max_tokens=30, on_token=lambda text, origin, s=streamed: s.append((text, origin)))
        assert 0 < result.accepted_draft_tokens < result.proposed_draft_tokens, method  # a mixed run
        assert [origin for _, origin in streamed] == result.from_draft == expected_origins(result)
        assert "".join(text for text, _ in streamed) == result.text == "".join(result.token_texts)


def scripted_method(rounds):
    from mlxdraft.methods import Method

    return Method("scripted", "scripted", "test", needs_draft=False, uses_k=True), lambda inputs: iter(rounds)


def use_scripted(monkeypatch, rounds):
    from mlxdraft.engines import get_engine
    from mlxdraft.methods import METHODS

    method, run = scripted_method(rounds)
    monkeypatch.setitem(METHODS, "scripted", method)
    monkeypatch.setitem(get_engine("mlx-lm").implementations, "scripted", run)


def test_a_last_round_cut_by_eos_among_the_draft_tokens_is_marked_as_draft(loaded, monkeypatch):
    from mlxdraft.engines.mlx_loops import Round

    target = loaded["target"]
    eos = next(iter(target.tokenizer.eos_token_ids))
    pair = (target.model, target.tokenizer)
    cases = {  # the EOS as the second of two accepted draft tokens, and as the target's own token
        "draft": ([Round([10, 11, 12], 2, 2), Round([13, eos, 6], 2, 2)], [True, True, False, True, True]),
        "own": ([Round([10, 11, 12], 2, 2), Round([13, 14, eos], 2, 2)], [True, True, False, True, True, False]),
    }
    for rounds, origins in cases.values():
        use_scripted(monkeypatch, rounds)
        streamed = []
        result = mlxdraft.generate(pair, [1, 2], method="scripted", num_draft_tokens=2, max_tokens=20,
                                   on_token=lambda text, origin, out=streamed: out.append(origin))
        assert result.finish_reason == "stop" and result.from_draft == origins == streamed


# -- the fixes of issue #20 ---------------------------------------------------------------------------
def test_stderr_says_why_the_generation_stopped(tiny, loaded, monkeypatch):
    result = run(tiny.target, "--max-tokens", "5", "--prompt", "Hi")
    assert result.exit_code == 0 and "] 5 tokens (stopped at --max-tokens); " in result.stderr
    from mlxdraft.engines.mlx_loops import Round

    eos = next(iter(loaded["target"].tokenizer.eos_token_ids))
    use_scripted(monkeypatch, [Round([10, 11, eos], 2, 2)])
    result = run(tiny.target, "--method", "scripted", "--max-tokens", "9", "--prompt", "Hi")
    assert result.exit_code == 0 and "] 3 tokens (stopped at end of sequence); " in result.stderr


@pytest.mark.parametrize("method", ["draft", "mlx-lm", "draft-adaptive", "prompt-lookup"])
def test_k_larger_than_max_tokens_drafts_only_the_tokens_left(tiny, method):
    draft = [] if method == "prompt-lookup" else ["--draft", tiny.target]
    result = run(tiny.target, *draft, "--method", method, "--max-tokens", "2", "--prompt", "Hi Hi Hi", "--json")
    assert result.exit_code == 0, result.output  # the default -k 4 with --max-tokens 2
    data = json.loads(result.stdout)
    baseline = json.loads(run(tiny.target, "--max-tokens", "2", "--prompt", "Hi Hi Hi", "--json").stdout)
    assert data["token_ids"] == baseline["token_ids"] and data["num_draft_tokens"] == 4
    assert all(r["proposed"] <= 2 for r in data["rounds"])
    api = mlxdraft.generate(str(tiny.target), "Hi", draft=str(tiny.target), method="mlx-lm", num_draft_tokens=10,
                            max_tokens=3)
    assert len(api.token_ids) == 3 and api.rounds[0].proposed == 3


@pytest.mark.parametrize("method", ["baseline", "mlx-lm", "draft", "draft-adaptive", "prompt-lookup"])
def test_generate_leaves_the_callers_random_stream_alone(loaded, method):
    import mlx.core as mx

    pair = (loaded["target"].model, loaded["target"].tokenizer)
    options = dict(method=method, draft=pair, temp=1.0, max_tokens=12, num_draft_tokens=2)
    mx.random.seed(7)
    expected = mx.random.uniform(shape=(4,)).tolist()
    mx.random.seed(7)
    first = mlxdraft.generate(pair, "Hi", seed=3, **options)
    assert mx.random.uniform(shape=(4,)).tolist() == expected  # the caller's stream went on as if no call
    assert mlxdraft.generate(pair, "Hi", seed=3, **options).token_ids == first.token_ids  # same seed, same text
    assert mlxdraft.generate(pair, "Hi", seed=4, **options).token_ids != first.token_ids


@pytest.mark.parametrize("method", ["baseline", "draft"])
def test_generate_from_model_folders_leaves_the_callers_random_stream_alone(tiny, method):
    """Loading builds the model, which draws initial weights from MLX's global generator: that is
    given back too, so the usual call (names or folders) leaves the caller's stream as it was."""
    import mlx.core as mx

    mx.random.seed(7)
    expected = mx.random.uniform(shape=(4,)).tolist()
    mx.random.seed(7)
    mlxdraft.generate(str(tiny.target), "Hi", method=method, draft=str(tiny.draft), temp=1.0, max_tokens=6, seed=3)
    assert mx.random.uniform(shape=(4,)).tolist() == expected


@pytest.mark.parametrize("method", ["baseline", "mlx-lm", "draft"])
def test_top_k_at_or_above_the_vocabulary_is_off(tiny, method):
    draft = [] if method == "baseline" else ["--draft", tiny.target]
    common = (tiny.target, *draft, "--method", method, "--temp", "0.9", "--max-tokens", "8", "--prompt", "Hi",
              "--json")
    off = json.loads(run(*common, "--top-k", "0").stdout)
    for top_k in (400, 401, 100_000):  # the kit's vocabulary has 400 tokens
        result = run(*common, "--top-k", top_k)
        assert result.exit_code == 0 and result.exception is None, result.output
        assert json.loads(result.stdout)["token_ids"] == off["token_ids"]


def test_prompt_ids_past_the_vocabulary_are_refused(loaded, tiny):
    pair = (loaded["target"].model, loaded["target"].tokenizer)
    size = loaded["target"].config["vocab_size"]
    with pytest.raises(InvalidInputError, match=rf"token id 1000000, but the model's vocabulary has only {size} "):
        mlxdraft.generate(pair, [1, 10**6], method="baseline", max_tokens=2)
    with pytest.raises(InvalidInputError, match=rf"token id {size}, "):
        mlxdraft.generate(str(tiny.target), [size], method="baseline", max_tokens=2)
    assert len(mlxdraft.generate(pair, [size - 1], method="baseline", max_tokens=2).token_ids) == 2


def test_drafting_time_is_the_drafts_and_verify_time_the_targets(loaded, tiny):
    """The split is read at synchronised boundaries: a target whose verify pass takes 20 ms more
    has those 20 ms in target_s, never in draft_s; a method without a draft model has no draft_s."""
    import time

    target = loaded["target"]

    class SlowTarget:
        def __init__(self, model):
            self.model, self.layers, self.args = model, model.layers, model.args

        def __call__(self, inputs, cache=None):
            if inputs.shape[-1] > 1:  # a verify pass (and the prompt), not the width probe
                time.sleep(0.02)
            return self.model(inputs, cache=cache)

    pair = (SlowTarget(target.model), target.tokenizer)
    for method in ("draft", "prompt-lookup"):
        result = mlxdraft.generate(pair, "Hi Hi Hi Hi", draft=(target.model, target.tokenizer), method=method,
                                   num_draft_tokens=2, max_tokens=9)
        verify_rounds = sum(1 for r in result.rounds if r.proposed)
        assert result.target_s >= 0.02 * verify_rounds > 0, (method, result.target_s)
        if method == "draft":
            assert 0 < result.draft_s < 0.02 * verify_rounds
        else:
            assert result.draft_s is None
    data = json.loads(run(tiny.target, "--method", "prompt-lookup", "--max-tokens", "6", "--prompt", "a a a",
                          "--json").stdout)
    assert data["draft_s"] is None and data["target_s"] > 0


def test_show_accepted_colours_the_draft_tokens_green_on_a_terminal(tiny):
    import os
    import pty
    import re
    import subprocess
    import sys

    args = [str(tiny.target), "--draft", str(tiny.target), "-k", "3", "--max-tokens", "10", "--prompt", "The capital"]
    api = mlxdraft.generate(args[0], "The capital", draft=args[0], num_draft_tokens=3, max_tokens=10)
    master, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "mlxdraft", "generate", *args, "--show-accepted"],
                               stdout=terminal, stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert process.wait(timeout=60) == 0, process.stderr.read()
    text = output.decode().replace("\r\n", "\n")
    green = "".join(re.findall(r"\x1b\[32m(.*?)\x1b\[0m", text, flags=re.S))
    assert green == "".join(piece for piece, origin in zip(api.token_texts, api.from_draft) if origin) != ""
    assert re.sub(r"\x1b\[[0-9;]*m", "", text) == api.text + "\n"
    assert "draft-token share 70% (green)" in process.stderr.read().decode()
