"""The mlx-lm engine runs every generation as mlx_lm.generate runs one: inside mlx-lm's own
`wired_limit(model, [generation_stream])`, entered once and left once per generation (also when the
generation fails), with mlx-lm's generation stream as the default stream; harmless on the CPU backend
and with an mlx-lm that lacks either; every loop prefills in chunks of mlx_lm.generate's step, and
chunking does not change the tokens; all of it recorded in the engine's environment."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib

import pytest

from mlxdraft.engines import get_engine
from mlxdraft.measure import MeasureSettings
from mlxdraft.methods import get_method

GENERATE = importlib.import_module("mlx_lm.generate")  # the module: `mlx_lm.generate` is the function
METHODS = ["baseline", "mlx-lm", "draft", "draft-adaptive", "prompt-lookup"]
PROMPT = [5, 9, 12, 30, 7, 9, 12, 30, 7, 44, 3, 9, 12, 30]


def generation_stream_as_default():
    """The default stream while mlx-lm's generation stream is entered."""
    import mlx.core as mx

    with mx.stream(GENERATE.generation_stream):
        return mx.default_stream(mx.default_device())


def default_stream():
    import mlx.core as mx

    return mx.default_stream(mx.default_device())


class RecordingWiredLimit:
    """Stands in for mlx_lm.generate.wired_limit and records what happens around it."""

    def __init__(self):
        self.events: list = []

    @contextlib.contextmanager
    def __call__(self, model, streams=None):
        self.events.append(("enter", model, streams))
        try:
            yield
        finally:
            self.events.append(("exit",))


def generate(loaded, method: str, max_tokens: int = 10, on_round=None, **options):
    engine = get_engine("mlx-lm")
    method = get_method(method)
    return engine.generate(loaded["target"], PROMPT, MeasureSettings(max_tokens=max_tokens), method,
                           loaded["draft"] if method.needs_draft else None, 3 if method.uses_k else 0,
                           on_round=on_round, **options)


@pytest.mark.parametrize("method", METHODS)
def test_every_generation_runs_inside_mlx_lms_wired_limit_once_on_its_stream(loaded, monkeypatch, method):
    recorder = RecordingWiredLimit()
    monkeypatch.setattr(GENERATE, "wired_limit", recorder)
    inside = generation_stream_as_default()
    before = default_stream()
    rounds = []
    trace = generate(loaded, method, on_round=lambda emitted: rounds.append((list(recorder.events), default_stream())))
    assert len(trace.token_ids) == 10 and rounds
    assert recorder.events == [("enter", loaded["target"].model, [GENERATE.generation_stream]), ("exit",)]
    for events, stream in rounds:  # every round ran inside it, on mlx-lm's generation stream
        assert [e[0] for e in events] == ["enter"] and stream == inside
    assert default_stream() == before and before != inside  # the caller's stream is back


def test_the_limit_is_left_when_the_generation_fails(loaded, monkeypatch):
    recorder = RecordingWiredLimit()
    monkeypatch.setattr(GENERATE, "wired_limit", recorder)
    before = default_stream()

    def fail(emitted):
        raise RuntimeError("stopped by the caller")

    for method in ("baseline", "draft"):
        recorder.events.clear()
        with pytest.raises(RuntimeError, match="stopped by the caller"):
            generate(loaded, method, on_round=fail)
        assert [e[0] for e in recorder.events] == ["enter", "exit"]
        assert default_stream() == before


def test_the_real_wired_limit_is_harmless_here_and_matches_stream_generate(loaded):
    """On this CPU backend mlx-lm's wired_limit sets nothing; the tokens are mlx-lm's own."""
    import mlx.core as mx
    from mlx_lm import stream_generate

    target = loaded["target"]
    baseline = generate(loaded, "baseline", max_tokens=12)
    tokenizer = target.tokenizer
    saved = set(tokenizer.eos_token_ids)
    tokenizer.eos_token_ids = set()
    try:
        theirs = [r.token for r in stream_generate(target.model, tokenizer, mx.array(PROMPT), max_tokens=12)]
    finally:
        tokenizer.eos_token_ids = saved
    assert baseline.token_ids == theirs
    for method in ("mlx-lm", "draft"):  # lossless at temperature 0
        assert generate(loaded, method, max_tokens=12).token_ids == theirs


def test_an_mlx_lm_without_wired_limit_or_generation_stream_still_generates(loaded, monkeypatch):
    expected = generate(loaded, "draft").token_ids
    before = default_stream()
    monkeypatch.delattr(GENERATE, "wired_limit")
    monkeypatch.delattr(GENERATE, "generation_stream")
    assert generate(loaded, "baseline").token_ids == expected  # mlx-lm's loops bound their stream on import
    streams = []
    assert generate(loaded, "draft", on_round=lambda emitted: streams.append(default_stream())).token_ids == expected
    assert streams and all(stream == before for stream in streams)  # the own loop: the caller's stream
    environment = get_engine("mlx-lm").environment()["machine"]["mlx_generation"]
    assert environment == {"wired_limit": "none: this mlx-lm has no wired_limit", "wired_limit_bytes": None,
                           "stream": "the default stream", "prefill_step_size": 2048}


def test_mlx_lms_warning_for_a_large_model_stays_off_stdout(loaded, monkeypatch, capsys):
    @contextlib.contextmanager
    def printing_wired_limit(model, streams=None):
        print("[WARNING] Generating with a model that requires 9 MB which is close to the maximum")
        yield

    monkeypatch.setattr(GENERATE, "wired_limit", printing_wired_limit)
    with pytest.warns(RuntimeWarning, match=r"mlx-lm: \[WARNING\] Generating with a model that requires 9 MB"):
        generate(loaded, "baseline")
    assert capsys.readouterr().out == ""


def test_the_environment_records_the_wired_limit(monkeypatch):
    import mlx.core as mx

    engine = get_engine("mlx-lm")
    here = engine.environment()["machine"]["mlx_generation"]
    if "max_recommended_working_set_size" not in mx.device_info():
        assert here == {"wired_limit": "not Metal: mlx-lm's wired_limit sets none", "wired_limit_bytes": None,
                        "stream": "mlx-lm's generation_stream", "prefill_step_size": GENERATE.DEFAULT_PREFILL_STEP_SIZE}
    metal = {**mx.device_info(), "max_recommended_working_set_size": 22_906_503_168}
    monkeypatch.setattr(mx, "device_info", lambda: metal)
    recorded = engine.environment()["machine"]["mlx_generation"]
    assert recorded["wired_limit_bytes"] == 22_906_503_168
    assert recorded["wired_limit"] == ("22906503168 bytes (Metal's recommended working set), set by mlx-lm's "
                                       "wired_limit per generation")


class CountingModel:
    """A model that records the width of every forward pass (prefill chunks first)."""

    def __init__(self, model):
        self.model = model
        self.widths: list[int] = []

    def __call__(self, tokens, **options):
        self.widths.append(tokens.shape[1])
        return self.model(tokens, **options)

    def __getattr__(self, name):
        return getattr(self.model, name)


@pytest.mark.parametrize("method", ["baseline", "mlx-lm", "draft", "prompt-lookup"])
def test_every_loop_prefills_in_chunks_of_mlx_lms_step_and_the_tokens_stay_the_same(loaded, monkeypatch, method):
    whole = generate(loaded, method, max_tokens=12).token_ids
    monkeypatch.setattr(GENERATE, "DEFAULT_PREFILL_STEP_SIZE", 3)
    counting = CountingModel(loaded["target"].model)
    chunked = generate({**loaded, "target": dataclasses.replace(loaded["target"], model=counting)}, method,
                       max_tokens=12).token_ids
    start = counting.widths.index(3)  # the own loop first reads its logits' width (one lazy pass)
    assert counting.widths[start:start + 5] == [3, 3, 3, 3, 1]  # the prompt but its last token (13), 3 at a time
    assert 13 not in counting.widths and 14 not in counting.widths
    assert chunked == whole == generate(loaded, "baseline", max_tokens=12).token_ids
    assert get_engine("mlx-lm").environment()["machine"]["mlx_generation"]["prefill_step_size"] == 3
