"""The OpenAI wire format: a request body checked and turned into a `CompletionRequest`, error objects,
and the response and stream-chunk bodies. No HTTP and no models here: what a client may send is decided
in one place, and every refusal is an `ApiError` with its status and an OpenAI-style error object."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

DEFAULT_MAX_TOKENS = 512  # when a request names none, as mlx_lm.server
MAX_TEMPERATURE = 2.0  # OpenAI's range
MAX_SEED = 2**32 - 1  # as `mlxdraft generate --seed`
MAX_STOP_SEQUENCES = 4  # OpenAI's limit
MAX_STOP_CHARS = 256
ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_body_bytes: int = 4 * 1024 * 1024  # the request body
    max_messages: int = 512  # messages in one chat request
    max_prompt_chars: int = 400_000  # characters of message contents or prompt, before the tokenizer runs
    max_prompt_tokens: int | None = None  # None: the model's context less one generated token


class ApiError(Exception):
    """A refusal: HTTP status plus OpenAI's error object {"error": {message, type, param, code}}."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


@dataclass
class CompletionRequest:
    """One checked request: what to generate and how to answer."""

    kind: str  # "chat" (/v1/chat/completions) or "text" (/v1/completions)
    model: str  # the name to answer with
    messages: list[dict] | None = None  # chat: role and text content of each message
    prompt: str | None = None  # text: the prompt
    max_tokens: int | None = None  # None: DEFAULT_MAX_TOKENS, within the context
    temp: float = 1.0  # OpenAI's default temperature
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None  # None: a fresh one per request
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage
    prompt_ids: list[int] = field(default_factory=list)  # filled in by the server (chat template, tokenizer)
    created: int = field(default_factory=lambda: int(time.time()))


def parse_json_body(body: bytes) -> dict:
    """The body as a JSON object, or a 400."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad(f"the request body is not UTF-8 text (byte {exc.start}); send JSON encoded as UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except ValueError as exc:
        raise bad(f"the request body is not valid JSON ({exc}); send a JSON object") from None
    except RecursionError:
        raise bad("the request body nests JSON too deeply; send a flat JSON object") from None
    if not isinstance(data, dict):
        raise bad(f"the request body must be a JSON object, not {_kind(data)}")
    return data


def _no_constants(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_request(data: dict, kind: str, model_names: tuple[str, ...], limits: Limits) -> CompletionRequest:
    """Check every field this server uses; fields it does not know are ignored, as OpenAI clients expect.
    `model_names`: the names this server answers to (the first is the one it answers with)."""
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise bad(f"'model' must be a string, not {_kind(model)}", "model")
    if model is not None and model not in model_names:
        raise ApiError(404, f"The model '{model}' does not exist; this server serves '{model_names[0]}'",
                       param="model", code="model_not_found")
    request = CompletionRequest(kind=kind, model=model_names[0])
    if kind == "chat":
        request.messages = _messages(data.get("messages"), limits)
    else:
        request.prompt = _prompt(data.get("prompt"), limits)
    if data.get("n") not in (None, 1):
        raise bad("this server returns one choice per request; leave 'n' out or set it to 1", "n")
    for name in ("max_tokens", "max_completion_tokens"):
        value = data.get(name)
        if value is not None:
            request.max_tokens = _integer(value, name, minimum=1)
    request.temp = _number(data.get("temperature"), "temperature", 1.0, 0.0, MAX_TEMPERATURE)
    request.top_p = _number(data.get("top_p"), "top_p", 1.0, 0.0, 1.0)
    request.min_p = _number(data.get("min_p"), "min_p", 0.0, 0.0, 1.0)
    request.top_k = 0 if data.get("top_k") is None else _integer(data["top_k"], "top_k", minimum=0)
    if data.get("seed") is not None:
        request.seed = _integer(data["seed"], "seed", minimum=0, maximum=MAX_SEED)
    request.stop = _stop(data.get("stop"))
    request.stream = _flag(data.get("stream"), "stream")
    options = data.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise bad(f"'stream_options' must be an object, not {_kind(options)}", "stream_options")
        request.include_usage = _flag(options.get("include_usage"), "stream_options.include_usage")
    return request


def _messages(messages, limits: Limits) -> list[dict]:
    if messages is None:
        raise bad("'messages' is required: a list of {role, content} objects", "messages")
    if not isinstance(messages, list):
        raise bad(f"'messages' must be a list, not {_kind(messages)}", "messages")
    if not messages:
        raise bad("'messages' is empty; give at least one message", "messages")
    if len(messages) > limits.max_messages:
        raise bad(f"'messages' has {len(messages)} messages, more than the {limits.max_messages} allowed",
                  "messages")
    checked, chars = [], 0
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise bad(f"{where} must be an object with 'role' and 'content', not {_kind(message)}", where)
        role = message.get("role")
        if role not in ROLES:
            raise bad(f"{where}.role must be one of {', '.join(ROLES)} (got {json.dumps(role)[:40]})", f"{where}.role")
        content = _content(message.get("content"), f"{where}.content", optional=role == "assistant")
        chars += len(content)
        checked.append({"role": "system" if role == "developer" else role, "content": content})
    if chars > limits.max_prompt_chars:
        raise bad(f"the messages have {chars} characters, more than the {limits.max_prompt_chars} allowed",
                  "messages", "context_length_exceeded")
    return checked


def _content(content, where: str, optional: bool) -> str:
    """A message's text: a string, or a list of {"type": "text", "text": ...} parts joined."""
    if content is None and optional:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad(f"{where} may hold text parts only ({{\"type\": \"text\", \"text\": ...}}); "
                          "this server has no images or audio", where)
            texts.append(part["text"])
        return "".join(texts)
    raise bad(f"{where} must be a string or a list of text parts, not {_kind(content)}", where)


def _prompt(prompt, limits: Limits) -> str:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if prompt is None:
        raise bad("'prompt' is required: the text to continue", "prompt")
    if not isinstance(prompt, str):
        raise bad(f"'prompt' must be a string (one prompt per request), not {_kind(prompt)}", "prompt")
    if not prompt:
        raise bad("'prompt' is empty; give the text to continue", "prompt")
    if len(prompt) > limits.max_prompt_chars:
        raise bad(f"'prompt' has {len(prompt)} characters, more than the {limits.max_prompt_chars} allowed",
                  "prompt", "context_length_exceeded")
    return prompt


def _stop(stop) -> list[str]:
    if stop is None:
        return []
    values = [stop] if isinstance(stop, str) else stop
    if not isinstance(values, list) or not all(isinstance(s, str) for s in values):
        raise bad(f"'stop' must be a string or a list of strings, not {_kind(stop)}", "stop")
    if len(values) > MAX_STOP_SEQUENCES:
        raise bad(f"'stop' has {len(values)} sequences, more than the {MAX_STOP_SEQUENCES} allowed", "stop")
    for value in values:
        if not value or len(value) > MAX_STOP_CHARS:
            raise bad(f"each stop sequence must have 1 to {MAX_STOP_CHARS} characters", "stop")
    return list(dict.fromkeys(values))


def _number(value, name: str, default: float, low: float, high: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad(f"'{name}' must be a number, not {_kind(value)}", name)
    if not math.isfinite(value):
        raise bad(f"'{name}' must be a finite number", name)
    if not low <= value <= high:
        raise bad(f"'{name}' must be between {low:g} and {high:g} (got {value:g})", name)
    return float(value)


def _integer(value, name: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"'{name}' must be a whole number, not {_kind(value)}", name)
    if value < minimum:
        raise bad(f"'{name}' must be at least {minimum} (got {value})", name)
    if maximum is not None and value > maximum:
        raise bad(f"'{name}' must be at most {maximum} (got {value})", name)
    return value


def _flag(value, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad(f"'{name}' must be true or false, not {_kind(value)}", name)
    return value


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"[:60] if isinstance(value, float) and not math.isfinite(value) else "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# -- answers ------------------------------------------------------------------------------------------------
def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_body(request: CompletionRequest, request_id: str, text: str, finish_reason: str, usage_: dict,
                    extension: dict) -> dict:
    """The whole answer of a non-streaming request."""
    if request.kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                  "finish_reason": finish_reason}
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        kind = "text_completion"
    return {"id": request_id, "object": kind, "created": request.created, "model": request.model,
            "choices": [choice], "usage": usage_, "mlxdraft": extension}


def chunk_body(request: CompletionRequest, request_id: str, text: str | None = None, finish_reason: str | None = None,
               role: bool = False, usage_: dict | None = None, extension: dict | None = None,
               no_choices: bool = False) -> dict:
    """One server-sent event of a streaming answer."""
    if request.kind == "chat":
        delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text is not None else {})
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        kind = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
        kind = "text_completion"
    body = {"id": request_id, "object": kind, "created": request.created, "model": request.model,
            "choices": [] if no_choices else [choice]}
    if usage_ is not None:
        body["usage"] = usage_
    if extension is not None:
        body["mlxdraft"] = extension
    return body


def sse(data: dict | str) -> bytes:
    """One server-sent event: a `data:` line (JSON never holds a raw newline) and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, allow_nan=False)
    return f"data: {text}\n\n".encode()
