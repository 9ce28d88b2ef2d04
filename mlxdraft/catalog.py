"""The curated model lists (`model_lists/*.toml`): which checkpoints a family has, their
size, precision and role, and the short names (`qwen2.5:7b-4bit`) users type.

File format (one family per file):

    family = "qwen2.5"                 # the name used with --family
    description = "..."
    source = "hub"                     # "hub": Hugging Face repos; "offline": built by mlxdraft
    engine = "mlx-lm"                  # default engine of the file's models ("mlx-lm" or "llama.cpp")

    [[models]]
    name = "qwen2.5:7b-4bit"           # short name, unique across all lists
    repo = "mlx-community/Qwen2.5-7B-Instruct-4bit"   # hub families
    variant = "fp32"                   # offline families: which locally built variant
    size = "7b"                        # optional size label for filters (default: from name)
    params_b = 7.62                    # parameters, billions
    precision = "4bit"                 # mlx-lm: bf16, fp16, fp32 or <n>bit
    role = "target"                    # target, draft or both
    size_gb = 4.29                     # estimated weight size, GB

    [[models]]                         # a GGUF model for the llama.cpp engine
    name = "qwen2.5:7b-q4_k_m"
    engine = "llama.cpp"               # overrides the file's engine
    repo = "bartowski/Qwen2.5-7B-Instruct-GGUF"
    files = ["Qwen2.5-7B-Instruct-Q4_K_M.gguf"]   # one .gguf, or every part of a split one
    precision = "q4_k_m"               # llama.cpp: the GGUF type in lower case (f16, q8_0, q6_k, ...)
    ...

Precision words (`precision_matches`) are the same across engines: `fp16` selects fp16 and F16,
`q8`/`8bit` 8bit and Q8_0, `q4`/`4bit` 4bit, Q4_0 and Q4_K_M; a GGUF type name (`q4_k_m`) selects
that type only.

Lists are read from $MLXDRAFT_MODEL_LISTS (folders or files, separated by the path
separator), the lists that ship inside the package (`model_lists/` of the checkout, installed as
the package data `mlxdraft.model_lists` and read through importlib.resources, so a wheel has them
too), and <app dir>/model_lists; a path to a .toml file works wherever a family name is expected.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import InvalidInputError, ModelNotFoundError
from .hub import REPO_ID
from .paths import app_dir, expand_user, read_user_file
from .suggest import did_you_mean

ROLES = ("target", "draft", "both")
ENGINES = ("mlx-lm", "llama.cpp")  # engine names a model list may give
DEFAULT_ENGINE = "mlx-lm"
BUNDLED_PACKAGE = "mlxdraft.model_lists"  # pyproject.toml maps it to the checkout's model_lists/


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    family: str
    source: str  # "hub" or "offline"
    params_b: float
    precision: str
    role: str
    size_gb: float
    repo: str | None = None
    variant: str | None = None
    size: str | None = None  # size label used by filters ("7b"); default from the short name
    engine: str = DEFAULT_ENGINE  # "mlx-lm" (a model folder) or "llama.cpp" (GGUF files)
    files: tuple[str, ...] | None = None  # llama.cpp hub models: the .gguf file, or all its parts

    @property
    def size_label(self) -> str:
        if self.size:
            return self.size.lower()
        return self.name.split(":", 1)[-1].split("-", 1)[0].lower()

    @property
    def can_target(self) -> bool:
        return self.role in ("target", "both")

    @property
    def can_draft(self) -> bool:
        return self.role in ("draft", "both")

    @property
    def bits(self) -> int:
        """Nominal bits per weight: 16 for bf16/fp16/f16, 32 for fp32/f32, n for nbit and for the
        GGUF types qn_* (q4_k_m: 4)."""
        return int(_precision_class(self.precision).removesuffix("bit").removeprefix("fp").removeprefix("bf"))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["files"] = list(self.files) if self.files is not None else None
        return data


GGUF_PRECISION = re.compile(r"f32|f16|bf16|q[1-8]_(0|1|k|k_s|k_m|k_l|k_xl)|iq[1-4]_(xxs|xs|s|m|nl)|tq[12]_0")
_FLOAT_WORDS = {"f16": "fp16", "float16": "fp16", "half": "fp16", "f32": "fp32", "float32": "fp32",
                "bfloat16": "bf16"}


def _precision_class(precision: str) -> str:
    """What a precision is across engines: fp16, fp32, bf16 or <n>bit (q4_k_m and 4bit: 4bit)."""
    text = precision.strip().lower()
    text = _FLOAT_WORDS.get(text, text)
    quant = re.fullmatch(r"(?:i?q|tq)(\d+)(?:_\w+)?", text)
    if quant:
        return f"{quant.group(1)}bit"
    return text


def precision_matches(entry: CatalogEntry, word: str) -> bool:
    """Whether a precision filter word selects `entry`, with the same words for every engine:
    fp16/f16 (fp16 and F16), fp32/f32, bf16, q8/8bit/8-bit (8bit and Q8_0), q4/4bit (4bit, Q4_0,
    Q4_K_M, ...); an exact precision (q4_k_m, q8_0) selects only that precision."""
    text = word.strip().lower().replace("-", "")
    if not text:
        return False
    if text == entry.precision.lower():
        return True
    if GGUF_PRECISION.fullmatch(text) and "_" in text:
        return False  # an exact GGUF type name (q4_k_m) selects that type only
    return _precision_class(text) == _precision_class(entry.precision)


def _user_list_files() -> tuple[list[Path], list[Path]]:
    """The list files named by $MLXDRAFT_MODEL_LISTS (read before the bundled lists) and those in
    <app dir>/model_lists (read after them)."""
    places = [expand_user(item, "MLXDRAFT_MODEL_LISTS entry")
              for item in os.environ.get("MLXDRAFT_MODEL_LISTS", "").split(os.pathsep) if item]

    def files_in(place: Path) -> list[Path]:
        if place.is_file():
            return [place]
        return sorted(place.glob("*.toml")) if place.is_dir() else []

    first = [path for place in places for path in files_in(place)]
    return first, files_in(app_dir() / "model_lists")


def bundled_lists() -> list[tuple[str, str]]:
    """(file name, text) of every model list that ships inside the package, sorted by name."""
    folder = resources.files(BUNDLED_PACKAGE)
    return sorted((item.name, item.read_text(encoding="utf-8")) for item in folder.iterdir()
                  if item.name.endswith(".toml") and item.is_file())


def _text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _positive(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value > 0)


def _shown(value) -> str:
    """A wrong TOML value as the user wrote it, roughly: "x", 3, nan, true, a list, a table."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value)[:60]
    return str(value)


PRECISION = re.compile(r"bf16|fp16|fp32|[1-9]\d?bit")
SPLIT_PART = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)  # gguf-split
GGUF_FILE = re.compile(r"^(?!/)(?!.*(?:^|/)\.\.(?:/|$))[^\\:*?\"<>|]+\.gguf$")  # a relative path in the repo
# key: (required, test, what the value must be); keys not listed here are ignored
MODEL_FIELDS = {
    "name": (True, lambda v: _text(v) and ":" in v and "/" not in v, 'a short name like "family:variant"'),
    "params_b": (True, _positive, "a positive number (billions of parameters)"),
    "precision": (True, lambda v: isinstance(v, str), "bf16, fp16, fp32 or <n>bit (mlx-lm) or a GGUF type "
                  "(llama.cpp)"),  # and per engine below
    "size_gb": (True, _positive, "a positive number (GB of weights)"),
    "role": (False, lambda v: v in ROLES, f"one of {', '.join(ROLES)}"),
    "repo": (False, lambda v: isinstance(v, str) and REPO_ID.match(v), 'a Hub repo id like "owner/name"'),
    "variant": (False, _text, "a non-empty string"),
    "size": (False, _text, 'a size label like "7b"'),
    "engine": (False, lambda v: v in ENGINES, f"one of {', '.join(ENGINES)}"),
    "files": (False, lambda v: isinstance(v, list) and bool(v) and all(isinstance(f, str) and GGUF_FILE.match(f)
                                                                           for f in v),
              'a list of .gguf file names in the repo, like ["Model-Q4_K_M.gguf"]'),
}
PRECISION_RULES = {  # engine: (test, what the precision must be)
    "mlx-lm": (PRECISION.fullmatch, "bf16, fp16, fp32 or <n>bit"),
    "llama.cpp": (GGUF_PRECISION.fullmatch, "a GGUF type in lower case (f16, q8_0, q6_k, q5_k_m, q4_k_m, ...)"),
}


def _check_model(model, where: str, engine: str, source: str) -> None:
    if not isinstance(model, dict):
        raise InvalidInputError(f"{where} is {_shown(model)}, not a table; write each model as a [[models]] table")
    for key, (required, test, what) in MODEL_FIELDS.items():
        if key not in model:
            if required:
                raise InvalidInputError(f"{where}: missing key {key!r}")
        elif not test(model[key]):
            raise InvalidInputError(f"{where}: {key} must be {what}, not {_shown(model[key])}")
    engine = model.get("engine", engine)
    test, what = PRECISION_RULES[engine]
    if not test(model["precision"]):
        raise InvalidInputError(f"{where}: precision must be {what}, not {_shown(model['precision'])}")
    if engine == "llama.cpp" and source == "hub" and "files" not in model:
        raise InvalidInputError(f'{where}: llama.cpp hub models need files = ["name.gguf"] (every part of a '
                                "split GGUF)")
    if "files" in model and _split_problem(model["files"]):
        raise InvalidInputError(f"{where}: {_split_problem(model['files'])}")
    if engine != "llama.cpp" and "files" in model:
        raise InvalidInputError(f"{where}: files are only for llama.cpp models (GGUF); mlx-lm downloads the "
                                "whole model folder")


def split_parts(first: str) -> list[str] | None:
    """Every part of the split GGUF whose part 1 is `first` (None when it is not split)."""
    match = SPLIT_PART.match(first.rsplit("/", 1)[-1])
    if not match:
        return None
    folder = first[: len(first) - len(match.group(0))]
    count = int(match["count"])
    return [f"{folder}{match['stem']}-{i:05d}-of-{match['count']}.gguf" for i in range(1, count + 1)]


def _split_problem(files: list[str]) -> str | None:
    """What is wrong with the files of a split GGUF as a list gives them, if anything: llama.cpp
    loads part 1 and needs every other part beside it."""
    parts = split_parts(files[0])
    if parts is None:
        if len(files) > 1:
            return ("files name several .gguf files, but the first is not part 1 of a split GGUF "
                    "(<name>-00001-of-0000N.gguf); list one model per entry")
        return None
    if files != parts:
        return f"files must list every part of the split GGUF in order, {parts[0]} to {parts[-1]}"
    return None


def load_list_file(path: Path) -> list[CatalogEntry]:
    """Parse and validate one list file: every problem is one InvalidInputError naming the file,
    the model's position (1-based) and the field."""
    return load_list_text(read_user_file(path, "model list"), path)


def load_list_text(text: str, path: Path | str) -> list[CatalogEntry]:
    """Parse and validate the text of a list file; `path` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"model list {path} cannot be read: {exc}")
    family = data.get("family")
    source = data.get("source", "hub")
    engine = data.get("engine", DEFAULT_ENGINE)
    models = data.get("models", [])
    if not _text(family):
        raise InvalidInputError(f"model list {path} needs a top-level family = \"name\"")
    if source not in ("hub", "offline"):
        raise InvalidInputError(f"model list {path}: source must be \"hub\" or \"offline\", not {_shown(source)}")
    if engine not in ENGINES:
        raise InvalidInputError(f"model list {path}: engine must be one of {', '.join(ENGINES)}, not {_shown(engine)}")
    if not isinstance(models, list):
        raise InvalidInputError(
            f"model list {path}: models is {_shown(models)}; write each model as a [[models]] table"
        )
    entries = []
    for index, model in enumerate(models, start=1):
        where = f"model list {path}, model {index}"
        _check_model(model, where, engine, source)
        if source == "hub" and "repo" not in model:
            raise InvalidInputError(f"{where}: hub models need repo = \"owner/name\"")
        if source == "offline" and "variant" not in model:
            raise InvalidInputError(f"{where}: offline models need variant = \"...\"")
        if any(model["name"] == entry.name for entry in entries):
            raise InvalidInputError(f"{where}: the name {model['name']!r} is already used by another model")
        entries.append(CatalogEntry(
            name=model["name"],
            family=family,
            source=source,
            params_b=float(model["params_b"]),
            precision=model["precision"],
            role=model.get("role", "both"),
            size_gb=float(model["size_gb"]),
            repo=model.get("repo"),
            variant=model.get("variant"),
            size=model.get("size"),
            engine=model.get("engine", engine),
            files=tuple(model["files"]) if "files" in model else None,
        ))
    if not entries:
        raise InvalidInputError(f"model list {path} has no [[models]] entries")
    return entries


def load_catalog() -> dict[str, list[CatalogEntry]]:
    """Every family from every list file; the first file naming a family wins."""
    families: dict[str, list[CatalogEntry]] = {}
    first, last = _user_list_files()
    user = lambda paths: [(read_user_file(path, "model list"), path) for path in paths]  # noqa: E731
    bundled = [(text, f"{BUNDLED_PACKAGE}/{name}") for name, text in bundled_lists()]
    for text, where in user(first) + bundled + user(last):
        entries = load_list_text(text, where)
        families.setdefault(entries[0].family, entries)
    return families


def sensible_pair(target, draft) -> bool:
    """Whether `draft` is worth trying for `target` (anything with .name and .params_b): not the
    model itself, and not more parameters than the target (unknown sizes are given the benefit)."""
    if draft.name == target.name:
        return False
    return draft.params_b is None or target.params_b is None or draft.params_b <= target.params_b


def family_entries(family: str) -> list[CatalogEntry]:
    """Entries of a family name, or of a list file given by path."""
    if family.endswith(".toml") or os.sep in family:
        return load_list_file(expand_user(family, "model list"))
    families = load_catalog()
    if family not in families:
        known = ", ".join(sorted(families)) or "none"
        raise InvalidInputError(f"unknown family {family!r}{did_you_mean(family, families)}known families: {known}")
    return families[family]


def find_entry(name: str) -> CatalogEntry:
    families = load_catalog()
    for entries in families.values():
        for entry in entries:
            if entry.name == name:
                return entry
    family = name.split(":", 1)[0]
    if family in families:
        names = [e.name for e in families[family]]
        raise ModelNotFoundError(f"no model {name!r} in the {family} list{did_you_mean(name, names)}"
                                 f"choose one of: {', '.join(names)}")
    suggestion = did_you_mean(name, [e.name for entries in families.values() for e in entries])
    raise ModelNotFoundError(
        f"no model list knows {name!r}{suggestion}see `mlxdraft models` for short names, "
        "or pass a model folder or a Hub repo id"
    )
