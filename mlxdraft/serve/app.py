"""The HTTP side of `mlxdraft serve`: a Starlette app with OpenAI's routes, run by uvicorn. It checks
each request (API key, body size, JSON, fields, prompt length), queues it for the generation worker,
and answers with one JSON document or a stream of server-sent events. A client that goes away cancels
its generation; nothing a client sends reaches it as a stack trace."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import secrets
import socket
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import InvalidInputError
from ..measure import MAX_TOKENS_LIMIT
from .protocol import (
    DEFAULT_MAX_TOKENS,
    ApiError,
    CompletionRequest,
    Limits,
    bad,
    chunk_body,
    completion_body,
    error_body,
    parse_json_body,
    parse_request,
    sse,
    usage,
)
from .setup import ServedModel
from .worker import Failed, Finished, Job, QueueFull, Started, Text, Worker

log = logging.getLogger("mlxdraft.serve")
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024  # an oversized body is read (and dropped) up to this, so the client sees the 413


@dataclass(frozen=True)
class ServeConfig:
    """How the server listens and what it accepts."""

    host: str = "127.0.0.1"  # loopback only unless asked
    port: int = 8000
    queue_size: int = 16  # requests that may wait behind the one generating; more get 503 + Retry-After
    timeout_s: float = 600.0  # one request, waiting included; a generation still running then ends there
    api_key: str | None = None  # when set, every /v1 request needs "Authorization: Bearer <key>"
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    limits: Limits = field(default_factory=Limits)


class _Gone:
    """The client disconnected."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(served: ServedModel, config: ServeConfig, worker: Worker | None = None) -> Starlette:
    """The ASGI app; its lifespan starts the generation worker and stops it at shutdown."""
    worker = worker or Worker(served, config.queue_size, config.timeout_s, config.default_max_tokens)
    created = int(time.time())

    def check_key(request: Request) -> None:
        if config.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), config.api_key.encode()):
            raise ApiError(401, "Incorrect API key provided; send it as 'Authorization: Bearer <key>'",
                           code="invalid_api_key")

    async def models(request: Request) -> Response:
        check_key(request)
        return JSONResponse({"object": "list", "data": [_model_card(served, created)]})

    async def model(request: Request) -> Response:
        check_key(request)
        if request.path_params["name"] not in served.names:
            raise ApiError(404, f"The model '{request.path_params['name']}' does not exist", param="model",
                           code="model_not_found")
        return JSONResponse(_model_card(served, created))

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", **worker.state()})

    async def complete(request: Request, kind: str) -> Response:
        check_key(request)
        body = await _read_body(request, config.limits.max_body_bytes)
        parsed = parse_request(parse_json_body(body), kind, served.names, config.limits)
        parsed.prompt_ids = encode_request(served, parsed, config.limits)
        check_lengths(served, parsed, config.limits)
        return await _answer(request, parsed, worker, config)

    async def chat(request: Request) -> Response:
        return await complete(request, "chat")

    async def text(request: Request) -> Response:
        return await complete(request, "text")

    @asynccontextmanager
    async def lifespan(app):
        worker.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, worker.stop)

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", text, methods=["POST"]),
        Route("/completions", text, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{name:path}", model, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    handlers = {ApiError: _api_error, HTTPException: _http_error, Exception: _unexpected}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.worker = worker
    return app


def _model_card(served: ServedModel, created: int) -> dict:
    setup = served.setup
    return {"id": served.names[0], "object": "model", "created": created, "owned_by": "mlxdraft",
            "mlxdraft": {"method": setup.method, "draft": setup.draft,
                         "k": served.k if served.method.uses_k else None, "params": setup.params,
                         "context_length": served.context_length}}


async def _api_error(request: Request, exc: ApiError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    message = {404: f"there is no route {request.url.path}; see GET /v1/models",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
    return JSONResponse(error_body(message), status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path)
    return JSONResponse(error_body("the server failed on this request; see its log", "server_error",
                                   code="internal_error"), status_code=500)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 once it passes `limit` bytes (the rest is read and dropped, up to
    DRAIN_LIMIT_BYTES, so that the client is still reading when the answer comes)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_LIMIT_BYTES:
            break
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise ApiError(413, f"the request body has more than {limit} bytes, the most this server accepts",
                       code="request_too_large")
    return b"".join(chunks)


def encode_request(served: ServedModel, request: CompletionRequest, limits: Limits) -> list[int]:
    """The prompt's token ids: chat messages through the model's chat template (a model without one gets
    the messages' text, one per line), a completion's prompt as it is."""
    tokenizer = served.target.tokenizer
    if request.kind == "chat" and getattr(tokenizer, "has_chat_template", False):
        try:
            ids = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True)
        except Exception as exc:  # jinja templates raise their own errors for messages they refuse
            detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise bad(f"the model's chat template refuses these messages: {detail}", "messages") from None
        ids = list(ids)
    else:
        text = request.prompt if request.kind == "text" else "\n".join(m["content"] for m in request.messages)
        add_special = tokenizer.bos_token is None or not text.startswith(tokenizer.bos_token)
        ids = list(tokenizer.encode(text, add_special_tokens=add_special))
    if not ids:
        raise bad("the prompt is empty once tokenized", "messages" if request.kind == "chat" else "prompt")
    return ids


def check_lengths(served: ServedModel, request: CompletionRequest, limits: Limits) -> None:
    """Prompt and answer within the model's context (and the prompt within --max-prompt-tokens)."""
    context = served.context_length
    prompt = len(request.prompt_ids)
    param = "messages" if request.kind == "chat" else "prompt"
    most = limits.max_prompt_tokens or (context - 1 if context else None)
    if most is not None and prompt > most:
        raise bad(f"the prompt has {prompt} tokens, more than the {most} this server accepts"
                  + (f" (the model's context is {context} tokens)" if context else ""), param,
                  "context_length_exceeded")
    wanted = request.max_tokens
    if wanted is None:
        return
    if wanted > MAX_TOKENS_LIMIT:
        raise bad(f"'max_tokens' can be at most {MAX_TOKENS_LIMIT} (got {wanted})", "max_tokens")
    if context and prompt + wanted > context:
        raise bad(f"This model's maximum context length is {context} tokens. However, you requested "
                  f"{prompt + wanted} tokens ({prompt} in the prompt, {wanted} in the completion). Reduce the "
                  "prompt or max_tokens.", "max_tokens", "context_length_exceeded")


async def _answer(http: Request, request: CompletionRequest, worker: Worker, config: ServeConfig) -> Response:
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def deliver(event) -> None:  # called on the worker thread
        try:
            loop.call_soon_threadsafe(events.put_nowait, event)
        except RuntimeError:  # the loop has closed: the server is gone, and the client with it
            pass

    job = Job(request, deliver, config.timeout_s)
    try:
        worker.submit(job)
    except QueueFull as full:
        raise ApiError(503, f"the server is busy ({worker.queue_size} requests already wait); retry in "
                            f"{full.retry_after_s} s", type="server_error", code="queue_full",
                       headers={"Retry-After": str(full.retry_after_s)}) from None
    watcher = asyncio.create_task(_watch_disconnect(http, job, events))
    request_id = ("chatcmpl-" if request.kind == "chat" else "cmpl-") + secrets.token_hex(12)
    try:
        first = await events.get()
        if isinstance(first, Failed):
            raise first.error
        if not isinstance(first, Started):  # the client is gone
            return Response(status_code=499)
        if request.stream:
            stream = _stream(request, request_id, events, job, watcher, first.queue_s)
            watcher = None  # the stream owns it now
            return StreamingResponse(stream, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        while True:
            event = await events.get()
            if isinstance(event, Finished):
                return JSONResponse(completion_body(request, request_id, event.text, event.finish_reason,
                                                    usage(event.prompt_tokens, event.completion_tokens),
                                                    {**event.extension, "queue_s": first.queue_s}))
            if isinstance(event, Failed):
                raise event.error
            if isinstance(event, _Gone):
                return Response(status_code=499)
    finally:
        if watcher is not None:
            job.cancel()  # a no-op once finished
            watcher.cancel()


async def _stream(request: CompletionRequest, request_id: str, events: asyncio.Queue, job: Job, watcher,
                  queue_s: float):
    """The answer as server-sent events: a role chunk (chat), text chunks, a last chunk with the finish
    reason and the mlxdraft figures (and usage unless stream_options.include_usage asks for its own chunk,
    as OpenAI sends it), then [DONE]."""
    try:
        if request.kind == "chat":
            yield sse(chunk_body(request, request_id, role=True))
        while True:
            event = await events.get()
            if isinstance(event, Text):
                yield sse(chunk_body(request, request_id, text=event.text))
            elif isinstance(event, Finished):
                counts = usage(event.prompt_tokens, event.completion_tokens)
                yield sse(chunk_body(request, request_id, finish_reason=event.finish_reason,
                                     usage_=None if request.include_usage else counts,
                                     extension={**event.extension, "queue_s": queue_s}))
                if request.include_usage:
                    yield sse(chunk_body(request, request_id, usage_=counts, no_choices=True))
                yield sse("[DONE]")
                return
            elif isinstance(event, Failed):
                yield sse(event.error.body())
                return
            else:  # the client is gone
                return
    finally:
        job.cancel()
        watcher.cancel()


async def _watch_disconnect(http: Request, job: Job, events: asyncio.Queue) -> None:
    """Cancel the job when the client disconnects (while it waits or while it generates)."""
    while True:
        message = await http.receive()
        if message["type"] == "http.disconnect":
            job.cancel()
            events.put_nowait(_Gone())
            return


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one), or one Error line saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise InvalidInputError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def run_server(served: ServedModel, config: ServeConfig, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM: the running generation stops at its next round).
    `on_ready(url)` is called once the socket listens (with --port 0, the URL has the port chosen)."""
    import uvicorn

    sock = listen(config.host, config.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    server = uvicorn.Server(uvicorn.Config(build_app(served, config), log_level="warning", access_log=False,
                                          timeout_graceful_shutdown=5, lifespan="on"))
    if on_ready is not None:
        on_ready(f"http://{shown}:{port}/v1")
    server.run(sockets=[sock])
