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


def load_default_prompts() -> list[Prompt]:
    """The built-in suite: 12 prompts in 6 categories (code, structured, lists, prose, math, rewrite)."""
    text = resources.files("mlxdraft").joinpath("data/prompts.jsonl").read_text(encoding="utf-8")
    return _parse_jsonl(text.splitlines(), "the built-in prompt suite")


def load_prompts_file(path: str | Path) -> list[Prompt]:
    """Read prompts from a file: JSONL objects with `prompt` (and optional `category`), or plain
    text with one prompt per line. Blank lines are ignored."""
    path = Path(path)
    text = read_user_file(path, "prompts file", "pass an existing UTF-8 text file to --prompts")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InvalidInputError(
            f"prompts file {path} is empty; put one prompt per line (or JSONL with a 'prompt' key)"
        )
    if all(line.lstrip().startswith("{") for line in lines):
        return _parse_jsonl(lines, f"prompts file {path}")
    return [Prompt(text=line.strip()) for line in lines]


def _parse_jsonl(lines: list[str], source: str) -> list[Prompt]:
    prompts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{source}, line {number}: not valid JSON ({exc.msg}); fix the line")
        text = record.get("prompt") if isinstance(record, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(
                f"{source}, line {number}: needs a non-empty string under the key 'prompt'"
            )
        prompts.append(Prompt(text=text, category=str(record.get("category", "custom"))))
    return prompts


def encode_prompt(tokenizer, prompt: Prompt) -> list[int]:
    """Token ids for `prompt`, through the chat template when the tokenizer has one."""
    if getattr(tokenizer, "has_chat_template", False):
        messages = [{"role": "user", "content": prompt.text}]
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
    add_special = tokenizer.bos_token is None or not prompt.text.startswith(tokenizer.bos_token)
    return list(tokenizer.encode(prompt.text, add_special_tokens=add_special))
