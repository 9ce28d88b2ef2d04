"""`mlxdraft serve` as clients see it: a real server process on the tiny models, spoken to with the
official `openai` client. The answers equal `mlxdraft generate`'s (greedy, and sampled with a seed),
streamed or not; under load every request is answered completely, with its own prompt's text, or
refused with 503; a client that leaves mid-stream frees the server at once."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from serving import API_KEY, ServerProcess, health  # noqa: E402

import mlxdraft  # noqa: E402

K = 3
QUEUE = 3


@pytest.fixture(scope="module")
def server(tiny, tmp_path_factory):
    process = ServerProcess([tiny.target, "--draft", tiny.draft, "--method", "draft", "-k", K, "--port", 0,
                             "--queue-size", QUEUE, "--api-key", API_KEY],
                            tmp_path_factory.mktemp("serve-home"))
    yield process
    assert process.stop() == 0, process.stderr
    assert "Traceback" not in process.stderr, process.stderr


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key=API_KEY, max_retries=0, timeout=60)


def library(loaded, prompt, max_tokens=16, **sampling):
    """What `mlxdraft generate` gives for the served setup."""
    return mlxdraft.generate(loaded["target"], prompt, draft=loaded["draft"], method="draft", num_draft_tokens=K,
                             max_tokens=max_tokens, **sampling)


def chat(client, prompt, **options):
    return client.chat.completions.create(model=_model(client), messages=[{"role": "user", "content": prompt}],
                                          **options)


def _model(client):
    return client.models.list().data[0].id


def test_greedy_chat_equals_mlxdraft_generate_streamed_or_not(client, loaded):
    for prompt in ("The capital of France is", "def add(a, b):"):
        expected = library(loaded, prompt, temp=0.0)
        answer = chat(client, prompt, max_tokens=16, temperature=0)
        choice = answer.choices[0]
        assert choice.message.content == expected.text and choice.message.role == "assistant"
        assert choice.finish_reason == expected.finish_reason
        assert answer.usage.prompt_tokens == expected.prompt_tokens
        assert answer.usage.completion_tokens == len(expected.token_ids)
        assert answer.usage.total_tokens == expected.prompt_tokens + len(expected.token_ids)
        figures = answer.model_extra["mlxdraft"]
        assert figures["method"] == "draft" and figures["k"] == K
        assert figures["proposed"] == expected.proposed_draft_tokens
        assert figures["accepted"] == expected.accepted_draft_tokens <= figures["proposed"]
        assert figures["rounds"] == len(expected.rounds) and figures["ttft_s"] > 0 and figures["queue_s"] >= 0

        chunks = list(chat(client, prompt, max_tokens=16, temperature=0, stream=True,
                           stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == expected.text
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finishes == [expected.finish_reason]
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(expected.token_ids)


def test_text_completion_continues_the_prompt_as_it_is(client, loaded):
    prompt = "Speculative decoding lets a small draft model"
    ids = loaded["target"].tokenizer.encode(prompt)
    expected = library(loaded, list(ids), temp=0.0)
    answer = client.completions.create(model=_model(client), prompt=prompt, max_tokens=16, temperature=0)
    assert answer.choices[0].text == expected.text
    assert answer.usage.prompt_tokens == len(ids)
    streamed = client.completions.create(model=_model(client), prompt=prompt, max_tokens=16, temperature=0,
                                         stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == expected.text


def test_the_same_seed_gives_the_same_sampled_text_as_mlxdraft_generate(client, loaded):
    prompt = "Summarize: the quick brown fox"
    first = chat(client, prompt, max_tokens=16, temperature=0.8, seed=7).choices[0].message.content
    again = chat(client, prompt, max_tokens=16, temperature=0.8, seed=7).choices[0].message.content
    assert first == again == library(loaded, prompt, temp=0.8, seed=7).text
    drawn = chat(client, prompt, max_tokens=16, temperature=0.8)  # no seed: one is drawn, and said
    seed = drawn.model_extra["mlxdraft"]["seed"]
    assert drawn.choices[0].message.content == library(loaded, prompt, temp=0.8, seed=seed).text
    others = {chat(client, prompt, max_tokens=16, temperature=0.8, seed=seed).choices[0].message.content
              for seed in (8, 9)}
    assert others != {first}, "other seeds sample other text"


def test_a_stop_sequence_ends_the_answer_before_it(client, loaded):
    prompt = "If a train travels 60 kilometres"
    full = library(loaded, prompt, max_tokens=24, temp=0.0).text
    stop = full[len(full) // 2:len(full) // 2 + 3]
    expected = full[:full.index(stop)]
    answer = chat(client, prompt, max_tokens=24, temperature=0, stop=[stop, "\x00never"])
    assert answer.choices[0].message.content == expected and answer.choices[0].finish_reason == "stop"
    assert 0 < answer.usage.completion_tokens < 24
    chunks = list(chat(client, prompt, max_tokens=24, temperature=0, stop=stop, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_models_and_health(client, server, tiny):
    [model] = client.models.list().data
    assert model.id == str(tiny.target) and model.owned_by == "mlxdraft"
    assert model.model_extra["mlxdraft"]["method"] == "draft" and model.model_extra["mlxdraft"]["k"] == K
    state = health(server.base)
    assert state["status"] == "ok" and state["queue_size"] == QUEUE


def test_eight_clients_of_ten_requests_each_are_answered_completely_or_refused(server, loaded):
    prompts = [f"Prompt number {index}: the capital of Italy is" for index in range(8)]
    expected = {prompt: library(loaded, prompt, temp=0.0).text for prompt in prompts}
    before = health(server.base)
    answered, refused, problems = [], [], []

    def client_thread(index):
        own = openai.OpenAI(base_url=server.url, api_key=API_KEY, max_retries=0, timeout=120)
        for attempt in range(10):
            prompt = prompts[(index + attempt) % len(prompts)]
            try:
                if attempt % 2:
                    chunks = own.chat.completions.create(model=_model(own), stream=True, max_tokens=16,
                                                         temperature=0, messages=[{"role": "user", "content": prompt}])
                    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                else:
                    text = own.chat.completions.create(model=_model(own), max_tokens=16, temperature=0,
                                                       messages=[{"role": "user", "content": prompt}]
                                                       ).choices[0].message.content
            except openai.APIStatusError as exc:
                if exc.status_code == 503 and int(exc.response.headers["retry-after"]) >= 1 \
                        and exc.body["code"] == "queue_full":
                    refused.append(prompt)
                else:
                    problems.append(repr(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - any other failure is a lost request
                problems.append(repr(exc))
                continue
            (answered if text == expected[prompt] else problems).append(prompt if text == expected[prompt]
                                                                         else f"{prompt!r} got {text!r}")

    threads = [threading.Thread(target=client_thread, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not problems, problems[:5]
    assert len(answered) + len(refused) == 80 and answered
    after = health(server.base)
    assert after["completed"] - before["completed"] == len(answered)
    assert after["refused"] - before["refused"] == len(refused)
    assert not after["generating"] and after["waiting"] == 0


def _open_stream(base: str, model: str, max_tokens: int) -> socket.socket:
    """A streaming request on a raw socket, read up to its first text chunks."""
    import json

    parts = urlsplit(base)
    body = json.dumps({"model": model, "stream": True, "max_tokens": max_tokens, "temperature": 0,
                       "messages": [{"role": "user", "content": "Tell me a long story"}]}).encode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    received = b""
    while received.count(b"data: ") < 4:
        received += sock.recv(65536)
    assert b" 200 OK" in received.split(b"\r\n", 1)[0]
    return sock


def test_a_client_leaving_mid_stream_frees_the_server_at_once(server, client):
    model = _model(client)
    before = health(server.base)
    started = time.perf_counter()
    sock = _open_stream(server.base, model, max_tokens=4000)
    streaming_s = time.perf_counter() - started
    sock.close()
    closed = time.perf_counter()
    while health(server.base)["generating"]:
        assert time.perf_counter() - closed < 5, "the generation went on after its client left"
        time.sleep(0.01)
    freed_s = time.perf_counter() - closed
    after = health(server.base)
    assert after["cancelled"] == before["cancelled"] + 1 and after["completed"] == before["completed"]
    # the whole answer would take far longer than the server needed to stop (a round is a few milliseconds)
    assert freed_s < max(1.0, 20 * streaming_s)
    answer = chat(client, "Hello", max_tokens=4, temperature=0)
    assert answer.usage.completion_tokens == 4


def test_a_client_leaving_while_it_waits_in_the_queue_is_never_run(server, client):
    import json

    model = _model(client)
    before = health(server.base)
    busy = _open_stream(server.base, model, max_tokens=4000)  # the worker is taken
    parts = urlsplit(server.base)
    body = json.dumps({"model": model, "max_tokens": 4000, "messages": [{"role": "user", "content": "Wait"}]}).encode()
    waiting = socket.create_connection((parts.hostname, parts.port), timeout=30)
    waiting.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    deadline = time.perf_counter() + 10
    while health(server.base)["waiting"] != 1:
        assert time.perf_counter() < deadline
        time.sleep(0.01)
    waiting.close()
    busy.close()
    while (state := health(server.base))["generating"] or state["waiting"]:
        assert time.perf_counter() < deadline + 10
        time.sleep(0.01)
    assert state["cancelled"] == before["cancelled"] + 2 and state["completed"] == before["completed"]
