"""What a results file must hold, checked when it is loaded: every field that reports, analysis
and --resume rely on, so that a damaged or hand-edited file is one clear error naming the file
and the field, never a traceback or a silently wrong table.

The layout is described by small checker functions composed into tables (`SAMPLE`, `SETTINGS`,
`SWEEP`, `PAIR`, ...). Keys not in a table are allowed: newer versions add fields. Python's json
accepts NaN and Infinity, so numbers are checked for being finite here, and so is every other
float a results file holds (a sweep is written back whole when it is resumed).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import re
import shlex
from collections.abc import Callable
from pathlib import Path

from .errors import InvalidInputError
from .paths import MAX_RESULTS_FILE_BYTES, read_user_file

SCHEMA_VERSIONS = (1, 2, 3)  # versions this mlxdraft reads
KINDS = ("pair", "sweep")
STATUSES = ("pending", "done", "skipped", "failed")
DERIVED_KEYS = ("summary",)  # recomputed from the samples when rendering: not checked

Check = Callable[[object, str], None]  # raises _Damage(where, problem) when the value is wrong


class _Damage(Exception):
    def __init__(self, where: str, problem: str):
        super().__init__(where, problem)
        self.where = where
        self.problem = problem


def _shown(value) -> str:
    """A short rendering of a wrong value for a message: "x", 3, null, an object, a list."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    shown = json.dumps(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _not_finite(value: float) -> str:
    return "is NaN" if math.isnan(value) else ("is Infinity" if value > 0 else "is -Infinity")


# --- checkers for single values -----------------------------------------------------------------

def number(minimum: float | None = None, whole: bool = False) -> Check:
    """A JSON number (never a bool), finite, and at least `minimum`; `whole`: an integer."""

    def check(value, where):
        kind = int if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise _Damage(where, f"must be {'a whole number' if whole else 'a number'}, not {_shown(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise _Damage(where, _not_finite(value))
        if minimum is not None and value < minimum:
            raise _Damage(where, f"must be at least {minimum}, not {_shown(value)}")

    return check


def whole(minimum: int | None = None) -> Check:
    return number(minimum, whole=True)


def text(value, where) -> None:
    if not isinstance(value, str):
        raise _Damage(where, f"must be a string, not {_shown(value)}")


def boolean(value, where) -> None:
    if not isinstance(value, bool):
        raise _Damage(where, f"must be true or false, not {_shown(value)}")


def one_of(*choices) -> Check:
    def check(value, where):
        if isinstance(value, bool) or value not in choices:
            raise _Damage(where, f"must be one of {', '.join(map(str, choices))}, not {_shown(value)}")

    return check


def nullable(inner: Check) -> Check:
    """`inner`, or null."""

    def check(value, where):
        if value is not None:
            inner(value, where)

    return check


# --- checkers for containers --------------------------------------------------------------------

class Optional:
    """Marks a table entry whose key may be missing (when present, `inner` applies)."""

    def __init__(self, inner: Check):
        self.inner = inner


def _key(where: str, key: str) -> str:
    """where.key, or where["odd key"] for keys that are not identifiers."""
    if not key.isidentifier():
        return f"{where}[{json.dumps(key, ensure_ascii=False)}]"
    return f"{where}.{key}" if where else key


def table(fields: dict) -> Check:
    """A JSON object holding at least the `fields` (name -> checker, or Optional(checker))."""

    def check(value, where):
        if not isinstance(value, dict):
            raise _Damage(where or "the top level", f"must be an object, not {_shown(value)}")
        for key, rule in fields.items():
            if key in value:
                (rule.inner if isinstance(rule, Optional) else rule)(value[key], _key(where, key))
            elif not isinstance(rule, Optional):
                raise _Damage(_key(where, key), "is missing")

    return check


def list_of(item: Check) -> Check:
    def check(value, where):
        if not isinstance(value, list):
            raise _Damage(where, f"must be a list, not {_shown(value)}")
        for index, element in enumerate(value):
            item(element, f"{where}[{index}]")

    return check


def mapping_of(item: Check) -> Check:
    """An object with any keys, each value checked by `item` (shown as where["key"])."""

    def check(value, where):
        if not isinstance(value, dict):
            raise _Damage(where, f"must be an object, not {_shown(value)}")
        for key, element in value.items():
            item(element, f"{where}[{json.dumps(key, ensure_ascii=False)}]")  # always bracketed: data, not names

    return check


# --- what older files did not record ---------------------------------------------------------

def _legacy(key, label, summary, needs_draft, uses_k, fixed_k=True, by_mlx_lm=False, defaults=None) -> dict:
    return {"key": key, "label": label, "summary": summary, "needs_draft": needs_draft, "uses_k": uses_k,
            "defaults": dict(defaults or {}), "lossless_at_temp_0": True, "fixed_k": fixed_k, "native_engine": None,
            "speculative": uses_k, "by_mlx_lm": by_mlx_lm}


# The built-in methods as they were at schema 2, frozen: a file of schema 1 or 2 records no method metadata, so its
# methods are described by this table, never by what is installed now (a method changed or removed since then
# must not change how an old file reads). Schema 3 files carry their own.
LEGACY_METHODS = {m["key"]: m for m in (
    _legacy("baseline", "baseline", "the target alone, with mlx-lm's decoding loop", False, False, by_mlx_lm=True),
    _legacy("mlx-lm", "mlx-lm", "mlx-lm's own speculative loop: a draft model proposes k tokens per round", True,
            True, by_mlx_lm=True),
    _legacy("draft", "draft", "mlxdraft's own speculative loop: a draft model proposes k tokens per round, exact "
            "speculative sampling at temperature > 0", True, True),
    _legacy("draft-adaptive", "draft-adaptive", "a draft model proposes up to k tokens per round, stopping after a "
            "token it is less than `threshold` sure of (calibrated by recent acceptance)", True, True, fixed_k=False,
            defaults={"threshold": 0.4, "calibrate": True}),
    _legacy("prompt-lookup", "prompt lookup", "no draft model: proposes up to k tokens that followed the last n "
            "tokens' most recent earlier occurrence in prompt + output (n = 3, falling back to 2, 1)", False, True,
            fixed_k=False, defaults={"ngram_max": 3, "ngram_min": 1}),
)}


def unknown_method(key: str) -> dict:
    """What is assumed of a method a file names but does not describe (only a hand-made older file can): it takes
    a draft and k, and the speedup model does not apply."""
    return {"key": key, "label": key, "summary": "not described in this results file", "needs_draft": True,
            "uses_k": True, "defaults": {}, "lossless_at_temp_0": True, "fixed_k": False, "native_engine": None,
            "speculative": True}


# --- the tables ---------------------------------------------------------------------------------

HEADER = table({"schema_version": one_of(*SCHEMA_VERSIONS), "kind": one_of(*KINDS)})

SAMPLE = table({  # measure.RunSample
    "num_draft_tokens": whole(0),
    "prompt_index": whole(0),
    "category": text,
    "pass_index": whole(0),
    "prompt_tokens": whole(0),
    "generated_tokens": whole(0),
    "ttft_s": number(0),
    "prefill_tps": number(0),
    "decode_tokens": whole(0),
    "decode_s": number(0),
    "decode_tps": nullable(number(0)),
    "wall_s": number(0),
    "peak_memory_gb": nullable(number(0)),  # null: the engine does not measure it (schema 3)
    "finish_reason": nullable(text),
    "token_ids": list_of(whole(0)),
    "draft_tokens": Optional(whole(0)),
    "proposed_draft_tokens": Optional(whole(0)),
    "accepted_draft_tokens": Optional(whole(0)),
    "verify_rounds": Optional(whole(0)),
    "accepted_length_counts": Optional(list_of(whole(0))),
    "partial_rounds": Optional(whole(0)),  # schema 2
    "round_tokens": Optional(nullable(whole(0))),  # schema 2
    "from_draft": Optional(nullable(list_of(boolean))),  # schema 2
    "method": Optional(text),  # schema 2, from 0.2
    "rounds": Optional(nullable(list_of(list_of(whole(0))))),
    "draft_s": Optional(nullable(number(0))),
    "target_s": Optional(nullable(number(0))),
    "token_texts": Optional(nullable(list_of(text))),  # after 0.2.0; read by accepted.sample_segments
    "position": Optional(nullable(whole(0))),  # the run's place in its unit (order.unit_order); older files: none
})

SETTINGS = table({  # measure.MeasureSettings
    "max_tokens": whole(1),
    "runs": whole(1),
    "warmup": whole(0),
    "temp": number(0),
    "seed": whole(),
    "fixed_length": boolean,
    "top_p": Optional(number(0)),  # from 0.2
    "top_k": Optional(whole(0)),
    "min_p": Optional(number(0)),
})

PROMPT = table({"category": text, "text": text})

MODEL = table({  # results.model_record
    "name": text,
    "path": text,
    "repo_id": Optional(nullable(text)),
    "precision": Optional(nullable(text)),
    "weights_gb": Optional(nullable(number(0))),
    "alone_peak_memory_gb": Optional(nullable(number(0))),  # schema 2
    "verify_s": Optional(mapping_of(list_of(number(0)))),  # from 0.2: forward pass of n tokens -> seconds
    "token_s": Optional(list_of(number(0))),  # from 0.2: one token's forward pass, as a draft
})

ENVIRONMENT = {  # results.environment: what reports print about the machine
    "machine": Optional(table({
        "chip": Optional(nullable(text)),
        "os": Optional(nullable(text)),
        "memory_gb": Optional(nullable(number(0))),
    })),
    "versions": Optional(mapping_of(nullable(text))),
}

GROUP = table({  # one target + draft of a sweep
    "target": text,
    "draft": nullable(text),
    "status": one_of(*STATUSES),
    "reason": nullable(text),
    "samples": list_of(SAMPLE),
    "retry": Optional(boolean),
    "pruned": Optional(list_of(table({"method": text, "num_draft_tokens": whole(0), "after_units": whole(0),
                                      "reason": text}))),
    "engine": Optional(text),  # the engine that measured the group (sweeps of several engines)
    "methods": Optional(list_of(text)),  # the plan's methods that engine runs
    "predictions": Optional(nullable(list_of(table({  # schema 3: prediction.Prediction, fitted when measured
        "method": text, "draft": nullable(text), "k": whole(1), "decode_speedup": number(0),
        "low": nullable(number(0)), "high": nullable(number(0)), "e2e_speedup": nullable(number(0)),
        "e2e_low": nullable(number(0)), "e2e_high": nullable(number(0)),
        "expected_tokens_per_round": number(0), "round_s": number(0), "units": Optional(whole(0)),
        "confidence": Optional(number(0)),
    })))),
})

METHOD = table({  # Method.describe(), recorded when it was measured (schema 3)
    "key": text,
    "label": text,
    "summary": text,
    "needs_draft": boolean,
    "uses_k": boolean,
    "fixed_k": boolean,
    "lossless_at_temp_0": boolean,
    "defaults": Optional(mapping_of(lambda value, where: None)),  # parameters: any JSON value
    "native_engine": Optional(nullable(text)),
})

ENGINE = table({  # engine.describe() (schema 3)
    "name": text,
    "label": Optional(text),
    "capabilities": Optional(table({})),
})

METADATA = {  # schema 3: what the file's methods and engines were, and how to run each setup, when measured
    "methods": mapping_of(METHOD),
    "engines": mapping_of(ENGINE),
    "commands": mapping_of(list_of(text)),  # "target | draft | method | k" -> shell commands
}

SWEEP = table({  # sweeps, and pairs from schema 2 on
    "plan": table({
        "settings": SETTINGS,
        "num_draft_tokens": list_of(whole(1)),
        "targets": list_of(text),
        "drafts": list_of(text),
        "prompts": list_of(PROMPT),
        "memory_budget_gb": Optional(number(0)),
        "methods": Optional(list_of(text)),  # from 0.2
        "method_params": Optional(mapping_of(mapping_of(number()))),
        "engine": Optional(text),
        "engines": Optional(list_of(text)),  # every engine measured side by side
        "engine_order": Optional(text),  # how groups of different engines were measured ("sequential")
        "strategy": Optional(one_of("exhaustive", "smart")),
        "objective": Optional(one_of("e2e", "decode")),
        "order": Optional(one_of("fixed", "random")),  # within each unit; older files: fixed (baseline first)
    }),
    "models": Optional(mapping_of(MODEL)),
    "groups": mapping_of(GROUP),
    "command": Optional(nullable(list_of(text))),  # the command line that made the file (older files: none)
    **ENVIRONMENT,
})

PAIR = table({  # pairs of schema 1
    "target": MODEL,
    "draft": MODEL,
    "num_draft_tokens": whole(1),
    "settings": SETTINGS,
    "prompts": Optional(list_of(PROMPT)),
    "samples": list_of(SAMPLE),
    **ENVIRONMENT,
})


def _prompts_exist(samples: list, where: str, prompts: list) -> None:
    """Every sample's prompt_index points at one of the file's prompts."""
    for index, sample in enumerate(samples):
        if sample["prompt_index"] >= len(prompts):
            raise _Damage(f"{where}[{index}].prompt_index",
                          f"is {sample['prompt_index']}, but the file has only {len(prompts)} prompt(s)")


def _first_non_finite(value, where: str) -> None:
    """NaN or Infinity anywhere (in fields no table names, too)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _Damage(where, _not_finite(value))
    if isinstance(value, dict):
        for key, element in value.items():
            if not (where == "" and key in DERIVED_KEYS):
                _first_non_finite(element, _key(where, str(key)))
    elif isinstance(value, list):
        for index, element in enumerate(value):
            _first_non_finite(element, f"{where}[{index}]")


def _check(data: dict) -> None:
    if data["kind"] == "sweep" or data["schema_version"] >= 2:
        SWEEP(data, "")
        if data["schema_version"] >= 3:
            table(METADATA)(data, "")
        for key, record in data["groups"].items():
            _prompts_exist(record["samples"], f"groups[{json.dumps(key, ensure_ascii=False)}].samples",
                           data["plan"]["prompts"])
    else:
        PAIR(data, "")
        if "prompts" in data:
            _prompts_exist(data["samples"], "samples", data["prompts"])
    _first_non_finite(data, "")


def check_results(data, path: str | Path) -> None:
    """Raise InvalidInputError unless `data` (a parsed results file) is a results file this version
    reads, whole: it names `path` and the first wrong field, e.g.
    `groups["a | b"].samples[3].decode_tps is NaN`."""
    if not isinstance(data, dict) or "schema_version" not in data:
        raise InvalidInputError(
            f"{path} is not an mlxdraft results file (it has no schema_version); pass a file written by "
            "`mlxdraft pair -o` or `mlxdraft sweep`"
        )
    version = data["schema_version"]
    if isinstance(version, int) and not isinstance(version, bool) and version > max(SCHEMA_VERSIONS):
        raise InvalidInputError(
            f"results file {path} has schema version {version}, newer than this mlxdraft reads "
            f"({', '.join(map(str, SCHEMA_VERSIONS))}); upgrade mlxdraft"
        )
    try:
        HEADER(data, "")
        _check(data)
    except _Damage as damage:
        raise InvalidInputError(
            f"results file {path} is damaged: {damage.where} {damage.problem}; repair that field in the "
            "file, or measure again into a new file"
        ) from None


_RENDERINGS = (  # (what a file is, a pattern its start matches), for the formats of `mlxdraft report`
    ("an HTML report", re.compile(r"\A(<!doctype html|<html)", re.IGNORECASE)),
    ("a Markdown report", re.compile(r"\A# mlxdraft ")),
    ("a CSV report", re.compile(r"\Atarget,method,draft,num_draft_tokens,")),
    ("a text report", re.compile(r"\A(Machine: |Target {2,}\S|No speculative runs were measured)")),
)
SOURCE_GUESSES = 200  # .json files looked at when guessing which results file a report came from


def _rendering(content: str, data=None) -> str | None:
    """What kind of `mlxdraft report` output `content` is ("an HTML report"), or None."""
    if isinstance(data, dict) and data.get("kind") == "report":
        return "a JSON report"
    head = content.lstrip("\ufeff \t\r\n")[:200]
    return next((what for what, pattern in _RENDERINGS if pattern.match(head)), None)


def _guess_source(path: Path) -> Path | None:
    """A results file that a report at `path` may have been rendered from: the .json of the same
    name, else one in its folder, else one in ./results."""
    from .files import is_results_file, same_file

    candidates = [path.with_suffix(".json")]
    for folder in dict.fromkeys([path.parent, Path("results")]):
        with contextlib.suppress(OSError):
            candidates += sorted(itertools.islice(folder.glob("*.json"), SOURCE_GUESSES))
    return next((c for c in candidates if not same_file(c, path) and is_results_file(c)), None)


def _not_a_results_file(path: str | Path, what: str) -> InvalidInputError:
    source = _guess_source(Path(path))
    example = f", e.g. {shlex.quote(str(source))}" if source else ""
    return InvalidInputError(f"{path} is {what} rendered by mlxdraft report, not a results file; pass the results "
                             f"file it was rendered from (the .json written by sweep -o or pair -o){example}")


def read_results(path: str | Path) -> dict:
    """Read, parse and check a results file (at most MAX_RESULTS_FILE_BYTES). A report rendered
    from one is refused as what it is, with the results file to pass instead when one is near."""
    content = read_user_file(path, "results file", max_bytes=MAX_RESULTS_FILE_BYTES)
    what = _rendering(content)
    if what:
        raise _not_a_results_file(path, what)
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"results file {path} is damaged: it is not valid JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}); restore it from a copy, or measure again into a new file"
        ) from None
    except RecursionError:
        raise InvalidInputError(f"results file {path} is damaged: it is nested too deeply to be one") from None
    what = _rendering(content, data)
    if what:
        raise _not_a_results_file(path, what)
    check_results(data, path)
    return data
