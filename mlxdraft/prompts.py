"""The prompt suite: the built-in default set and user prompt files, rendered to token ids."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import InvalidInputError
from .paths import read_user_file


@dataclass(frozen=True)
class Prompt:
    text: str
    category: str = "custom"


MAX_PROMPTS_FILE_BYTES = 1024 * 1024  # a prompts file larger than 1 MiB is refused unread
MAX_PROMPT_CHARS = 32_000  # one prompt; longer ones would mostly measure prefill
MAX_PROMPTS = 1000  # prompts per file; each is run once per variant and pass


def load_default_prompts() -> list[Prompt]:
    """The built-in suite: 12 prompts in 6 categories (code, structured, lists, prose, math, rewrite)."""
    text = resources.files("mlxdraft").joinpath("data/prompts.jsonl").read_text(encoding="utf-8")
    return _parse_jsonl(_numbered_lines(text), "the built-in prompt suite")


def load_prompts_file(path: str | Path) -> list[Prompt]:
    """Read prompts from a file: one prompt per line, or JSONL (when the file ends in .jsonl or its
    first non-blank line starts with `{`) where every non-blank line is an object with a `prompt` string and an
    optional `category`. Blank lines are ignored; a UTF-8 byte-order mark is fine.

    Limits: MAX_PROMPTS_FILE_BYTES per file, MAX_PROMPT_CHARS per prompt, MAX_PROMPTS prompts."""
    path = Path(path)
    text = read_user_file(path, "prompts file", "pass an existing UTF-8 text file to --prompts",
                          max_bytes=MAX_PROMPTS_FILE_BYTES)
    lines = _numbered_lines(text)
    source = f"prompts file {path}"
    if not lines:
        raise InvalidInputError(
            f"prompts file {path} is empty; put one prompt per line (or JSONL with a 'prompt' key)"
        )
    if lines[0][1].lstrip().startswith("{") or path.suffix.lower() == ".jsonl":
        prompts = _parse_jsonl(lines, source)
    else:
        for number, line in lines:
            if _is_prompt_object(line):
                raise InvalidInputError(
                    f"{source}, line {number}: a JSON object in a plain-text prompts file; if the file is "
                    "JSONL, every non-blank line must be an object (no comments, also not on the first line)"
                )
        prompts = [_checked(Prompt(text=line.strip()), source, number) for number, line in lines]
    if len(prompts) > MAX_PROMPTS:
        raise InvalidInputError(
            f"{source} has {len(prompts)} prompts, more than the {MAX_PROMPTS} mlxdraft runs at once; "
            "split it into several files"
        )
    return prompts


def _is_prompt_object(line: str) -> bool:
    """Whether a line of a plain-text file is really a JSONL record (a sign of a mixed-up file)."""
    if not line.lstrip().startswith("{"):
        return False
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "prompt" in record


def _numbered_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the non-blank lines. Only \\n ends a line: JSON strings may hold
    characters that str.splitlines() would split at."""
    lines = text.replace("\r\n", "\n").split("\n")
    return [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]


def _checked(prompt: Prompt, source: str, number: int) -> Prompt:
    if len(prompt.text) > MAX_PROMPT_CHARS:
        raise InvalidInputError(
            f"{source}, line {number}: the prompt has {len(prompt.text):,} characters, more than the "
            f"{MAX_PROMPT_CHARS:,} allowed; shorten it"
        )
    return prompt


def _parse_jsonl(lines: list[tuple[int, str]], source: str) -> list[Prompt]:
    prompts = []
    for number, line in lines:
        if not line.lstrip().startswith("{"):
            raise InvalidInputError(
                f"{source}, line {number}: not a JSON object; this file is JSONL (it starts with one), so "
                "every non-blank line must be {\"prompt\": \"...\"}; comments are not allowed"
            )
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{source}, line {number}: not valid JSON ({exc.msg}); fix the line")
        except RecursionError:
            raise InvalidInputError(f"{source}, line {number}: nested too deeply; fix the line")
        text = record.get("prompt") if isinstance(record, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(
                f"{source}, line {number}: needs a non-empty string under the key 'prompt'"
            )
        category = record.get("category", "custom")
        if not isinstance(category, str) or not category.strip():
            raise InvalidInputError(
                f"{source}, line {number}: 'category' must be a non-empty string (got {json.dumps(category)[:40]}); "
                "fix it or leave it out"
            )
        prompts.append(_checked(Prompt(text=text, category=category), source, number))
    return prompts


def encode_prompt(tokenizer, prompt: Prompt) -> list[int]:
    """Token ids for `prompt`, through the chat template when the tokenizer has one."""
    if getattr(tokenizer, "has_chat_template", False):
        messages = [{"role": "user", "content": prompt.text}]
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
    add_special = tokenizer.bos_token is None or not prompt.text.startswith(tokenizer.bos_token)
    return list(tokenizer.encode(prompt.text, add_special_tokens=add_special))
