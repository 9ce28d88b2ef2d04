"""What a client can send `mlxdraft serve` that it must refuse: each bad request gets the right status and
an OpenAI-style error object ({"error": {message, type, param, code}}), never a stack trace, and the
server goes on serving. Also a request that runs past --timeout, and the one-line errors of the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from serving import API_KEY, ROOT, ServerProcess, health, request  # noqa: E402

from mlxdraft.cli import cli  # noqa: E402

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHAT = "/v1/chat/completions"


def hello(**fields) -> dict:
    return {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, **fields}


@pytest.fixture(scope="module")
def server(tiny, tmp_path_factory):
    process = ServerProcess([tiny.target, "--port", 0, "--api-key", API_KEY, "--queue-size", 2],
                            tmp_path_factory.mktemp("serve-home"))
    yield process
    assert process.stop() == 0, process.stderr
    assert "Traceback" not in process.stderr, process.stderr


LONG_PROMPT = "speculative decoding " * 3000  # far more tokens than the tiny models' 4096 positions
NESTED = ("[" * 100_000 + "]" * 100_000).encode()

# (what, path, body (dict or raw bytes), headers, status, param, code)
BAD = [
    ("malformed JSON", CHAT, b'{"messages": [', AUTH, 400, None, None),
    ("a 10 MB body", CHAT, b'{"messages": "' + b"x" * (10 * 1024 * 1024) + b'"}', AUTH, 413, None,
     "request_too_large"),
    ("max_tokens of 10^9", CHAT, hello(max_tokens=10**9), AUTH, 400, "max_tokens", None),
    ("prompt plus max_tokens beyond the context", CHAT, hello(max_tokens=4090), AUTH, 400, "max_tokens",
     "context_length_exceeded"),
    ("max_tokens 0", CHAT, hello(max_tokens=0), AUTH, 400, "max_tokens", None),
    ("max_tokens as text", CHAT, hello(max_tokens="ten"), AUTH, 400, "max_tokens", None),
    ('temperature "hot"', CHAT, hello(temperature="hot"), AUTH, 400, "temperature", None),
    ("temperature NaN", CHAT, b'{"messages": [{"role": "user", "content": "Hi"}], "temperature": NaN}', AUTH, 400,
     None, None),
    ("temperature infinite", CHAT, b'{"messages": [{"role": "user", "content": "Hi"}], "temperature": 1e999}', AUTH,
     400, "temperature", None),
    ("negative temperature", CHAT, hello(temperature=-0.5), AUTH, 400, "temperature", None),
    ("top_p above 1", CHAT, hello(top_p=1.5), AUTH, 400, "top_p", None),
    ("negative top_k", CHAT, hello(top_k=-1), AUTH, 400, "top_k", None),
    ("boolean seed", CHAT, hello(seed=True), AUTH, 400, "seed", None),
    ("negative seed", CHAT, hello(seed=-1), AUTH, 400, "seed", None),
    ("unknown model", CHAT, hello(model="gpt-17"), AUTH, 404, "model", "model_not_found"),
    ("prompt beyond the context", CHAT, {"messages": [{"role": "user", "content": LONG_PROMPT}]}, AUTH, 400,
     "messages", "context_length_exceeded"),
    ("wrong API key", CHAT, hello(), {"Authorization": "Bearer wrong"}, 401, None, "invalid_api_key"),
    ("no API key", CHAT, hello(), {}, 401, None, "invalid_api_key"),
    ("missing messages", CHAT, {"max_tokens": 4}, AUTH, 400, "messages", None),
    ("empty messages", CHAT, {"messages": []}, AUTH, 400, "messages", None),
    ("messages as a string", CHAT, {"messages": "Hello"}, AUTH, 400, "messages", None),
    ("a message without a role", CHAT, {"messages": [{"content": "Hi"}]}, AUTH, 400, "messages[0].role", None),
    ("an image part", CHAT, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     AUTH, 400, "messages[0].content", None),
    ("non-UTF-8 bytes", CHAT, b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', AUTH, 400, None, None),
    ("a JSON array", CHAT, b"[1, 2, 3]", AUTH, 400, None, None),
    ("JSON nested 100000 deep", CHAT, NESTED, AUTH, 400, None, None),
    ("two choices", CHAT, hello(n=2), AUTH, 400, "n", None),
    ("five stop sequences", CHAT, hello(stop=["a", "b", "c", "d", "e"]), AUTH, 400, "stop", None),
    ("stream as text", CHAT, hello(stream="yes"), AUTH, 400, "stream", None),
    ("completion without a prompt", "/v1/completions", {"max_tokens": 4}, AUTH, 400, "prompt", None),
    ("completion prompt as token ids", "/v1/completions", {"prompt": [1, 2, 3]}, AUTH, 400, "prompt", None),
    ("an unknown route", "/v1/embeddings", {"input": "x"}, AUTH, 404, None, None),
]


@pytest.mark.parametrize(("what", "path", "body", "headers", "status", "param", "code"), BAD,
                         ids=[case[0] for case in BAD])
def test_a_bad_request_gets_its_status_and_an_error_object(server, what, path, body, headers, status, param, code):
    got, _, answer = request(server.base, "POST", path, body, headers)
    assert got == status, answer
    assert isinstance(answer, dict) and set(answer) == {"error"}, answer
    error = answer["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"] and "Traceback" not in error["message"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param and error["code"] == code


def test_the_server_still_serves_after_every_bad_request(server):
    for _, path, body, headers, *_ in BAD:
        request(server.base, "POST", path, body, headers)
    status, _, answer = request(server.base, "POST", CHAT, hello(temperature=0), AUTH)
    assert status == 200 and answer["usage"]["completion_tokens"] == 4
    assert health(server.base)["status"] == "ok"
    status, _, answer = request(server.base, "GET", CHAT, None, AUTH)
    assert status == 405 and "error" in answer


def test_a_generation_past_its_timeout_ends_there_with_what_it_made(tiny, tmp_path):
    process = ServerProcess([tiny.target, "--port", 0, "--timeout", "0.5"], tmp_path)
    try:
        status, _, answer = request(process.base, "POST", CHAT, hello(max_tokens=4000, temperature=0))
        assert status == 200, answer
        figures = answer["mlxdraft"]
        assert figures["timed_out"] is True and answer["choices"][0]["finish_reason"] == "length"
        assert 0 < answer["usage"]["completion_tokens"] < 4000
        assert figures["wall_s"] < 2.0  # stopped at the round after the deadline
        assert health(process.base)["timed_out"] == 1
    finally:
        assert process.stop() == 0
    assert "Traceback" not in process.stderr


def test_command_errors_are_one_line(tiny, monkeypatch):
    runner = CliRunner()
    result = runner.invoke(cli, ["serve"])
    assert result.exit_code == 1 and result.output.strip() == \
        "Error: name the TARGET to serve, or a results file with --from"
    result = runner.invoke(cli, ["serve", str(tiny.target), "--method", "draft"])
    assert result.output.strip() == "Error: the draft method needs a draft model; add --draft"
    result = runner.invoke(cli, ["serve", "--from", "r.json", "--draft", str(tiny.draft), "-k", "2"])
    assert result.output.strip() == ("Error: --from chooses the setup; drop --draft, -k (use --target to pick one "
                                     "of the file's targets)")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    result = runner.invoke(cli, ["serve", str(tiny.target)])
    assert result.exit_code == 1 and result.output.strip() == \
        "Error: mlxdraft serve needs uvicorn, which is not installed: pip install 'mlxdraft[serve]'"
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_a_port_in_use_is_one_error_line(tiny, tmp_path):
    first = ServerProcess([tiny.target, "--port", 0], tmp_path)
    try:
        port = first.base.rsplit(":", 1)[1]
        done = subprocess.run([sys.executable, "-m", "mlxdraft", "serve", str(tiny.target), "--port", port],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith(f"Error: cannot listen on 127.0.0.1:{port} (")
    finally:
        first.stop()


def test_error_objects_are_json_even_for_unexpected_media(server):
    status, headers, answer = request(server.base, "POST", CHAT, b"messages=Hello", {**AUTH,
                                      "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and headers["content-type"].startswith("application/json")
    assert json.loads(json.dumps(answer))["error"]["type"] == "invalid_request_error"
