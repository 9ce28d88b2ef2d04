"""The server's parts without a server: stop sequences (text held back while it could still begin one,
cut before the first), the figures of a generation ended early, the queue's admission rule, and request
checks that need no model."""

from __future__ import annotations

import pytest

from mlxdraft.measure import MeasureSettings
from mlxdraft.methods import get_method
from mlxdraft.serve.protocol import ApiError, CompletionRequest, Limits, parse_json_body, parse_request
from mlxdraft.serve.setup import ServedSetup
from mlxdraft.serve.worker import Job, QueueFull, RoundLog, TextGate, Worker, _StopSequence


def gate(stop):
    sent = []
    return TextGate(stop, sent.append), sent


def test_text_that_could_begin_a_stop_sequence_waits_and_the_sequence_is_cut():
    text, sent = gate(["STOP", "\n\n"])
    text.feed("Hello S")
    assert sent == ["Hello "]  # "S" may begin "STOP"
    text.feed("T")
    assert sent == ["Hello "]
    with pytest.raises(_StopSequence):
        text.feed("OP and more")
    assert "".join(sent) == text.text == "Hello "
    assert text.stopped


def test_a_false_start_is_released_and_the_end_flushes_everything():
    text, sent = gate(["STOP"])
    text.feed("ST")
    text.feed("ONE")
    assert "".join(sent) == "STONE"  # no tail of it begins "STOP" any more
    text.feed("S")
    assert "".join(sent) == "STONE"
    text.finish(stopped=False)
    assert "".join(sent) == text.text == "STONES" and not text.stopped


def test_without_stop_sequences_nothing_waits():
    text, sent = gate([])
    text.feed("a")
    text.feed("b")
    assert sent == ["a", "b"]


def test_a_stop_sequence_across_pieces_is_found():
    text, sent = gate(["world"])
    for piece in ("hello wo", "rl", "d!"):
        try:
            text.feed(piece)
        except _StopSequence:
            break
    assert text.text == "hello " and "".join(sent) == "hello "


def _log(method: str, k: int, sizes: list[int], max_tokens: int = 100):
    request = CompletionRequest(kind="chat", model="m", prompt_ids=[1, 2, 3])
    job = Job(request, lambda event: None, timeout_s=60)
    log = RoundLog(job)
    for size in sizes:
        log.on_round(list(range(size)))

    class Served:
        pass

    served = Served()
    served.method, served.k = get_method(method), k
    return log.sample(served, MeasureSettings(max_tokens=max_tokens), "stop")


def test_an_early_end_counts_complete_rounds_as_every_mlxdraft_figure_does():
    sample = _log("draft", 4, [5, 2, 1, 3])  # the last round was cut by the stop sequence
    assert sample.generated_tokens == 11 and sample.verify_rounds == 3 and sample.partial_rounds == 1
    assert sample.proposed_draft_tokens == 12 and sample.accepted_draft_tokens == 4 + 1 + 0
    assert sample.acceptance_rate == pytest.approx(5 / 12)
    near_the_end = _log("draft", 4, [5, 5, 1, 1], max_tokens=12)  # the third round had 2 tokens of room: limited
    assert near_the_end.verify_rounds == 2 and near_the_end.partial_rounds == 2


def test_an_early_end_of_a_method_whose_proposals_vary_has_no_acceptance():
    sample = _log("draft-adaptive", 4, [5, 2, 1])
    assert sample.proposed_draft_tokens == 0 and sample.acceptance_rate is None and sample.generated_tokens == 8
    assert _log("baseline", 0, [1, 1, 1]).rounds is None


def test_the_queue_admits_one_generating_and_queue_size_waiting():
    worker = Worker(served=None, queue_size=1, timeout_s=60)  # not started: jobs stay queued
    job = lambda: Job(CompletionRequest(kind="chat", model="m"), lambda event: None, 60)  # noqa: E731
    worker.submit(job())
    worker.submit(job())
    with pytest.raises(QueueFull) as full:
        worker.submit(job())
    assert full.value.retry_after_s >= 1 and worker.state()["refused"] == 1 and worker.state()["waiting"] == 2
    nobody_waits = Worker(served=None, queue_size=0, timeout_s=60)
    nobody_waits.submit(job())
    with pytest.raises(QueueFull):
        nobody_waits.submit(job())


def test_a_job_cancelled_while_waiting_never_runs():
    events = []
    worker = Worker(served=None, queue_size=4, timeout_s=60)
    job = Job(CompletionRequest(kind="chat", model="m"), events.append, 60)
    job.cancel()
    worker._serve(job)  # would fail on served=None if it ran
    assert worker.state()["cancelled"] == 1 and events[0].error.code == "cancelled"


def test_request_checks():
    names = ("m", "/models/m")
    chat = lambda **fields: parse_request({"messages": [{"role": "user", "content": "Hi"}], **fields},  # noqa: E731
                                          "chat", names, Limits())
    request = chat(model="/models/m", max_tokens=8.0, temperature=0, stop="x", unknown_field={"a": 1},
                   presence_penalty=0.5)
    assert (request.model, request.max_tokens, request.temp, request.stop) == ("m", 8, 0.0, ["x"])
    assert chat().temp == 1.0 and chat().seed is None  # OpenAI's defaults: sampled, a fresh seed
    developer = parse_request({"messages": [{"role": "developer", "content": [{"type": "text", "text": "a"},
                                                                              {"type": "text", "text": "b"}]}]},
                              "chat", names, Limits())
    assert developer.messages == [{"role": "system", "content": "ab"}]
    with pytest.raises(ApiError, match="more than the 2 allowed"):
        parse_request({"messages": [{"role": "user", "content": "x"}] * 3}, "chat", names, Limits(max_messages=2))
    with pytest.raises(ApiError, match="not a JSON number"):
        parse_json_body(b'{"temperature": Infinity}')
    for value in (-1, 2.5, float("nan"), "1", True, [1]):
        with pytest.raises(ApiError) as refused:
            chat(temperature=value)
        assert refused.value.status == 400 and refused.value.param == "temperature"


def test_a_setup_is_checked_before_anything_loads():
    assert ServedSetup("t", "draft", "d", 4).check().key == "draft"
    with pytest.raises(Exception, match="needs a draft model"):
        ServedSetup("t", "mlx-lm").check()
    with pytest.raises(Exception, match="takes no draft model"):
        ServedSetup("t", "baseline", "d").check()
    with pytest.raises(Exception, match="runs the mlx-lm engine"):
        ServedSetup("t", engine="llama.cpp").check()
    assert ServedSetup("t", "draft", "d", 4, {}).describe() == "t, method draft, draft d, k=4"


def test_only_loopback_addresses_count_as_local():
    from mlxdraft.serve.app import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.5", "example.com"]))
