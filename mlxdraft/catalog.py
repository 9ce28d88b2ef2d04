"""The curated model lists (`model_lists/*.toml`): which checkpoints a family has, their
size, precision and role, and the short names (`qwen2.5:7b-4bit`) users type.

File format (one family per file):

    family = "qwen2.5"                 # the name used with --family
    description = "..."
    source = "hub"                     # "hub": Hugging Face repos; "offline": built by mlxdraft

    [[models]]
    name = "qwen2.5:7b-4bit"           # short name, unique across all lists
    repo = "mlx-community/Qwen2.5-7B-Instruct-4bit"   # hub families
    variant = "fp32"                   # offline families: which locally built variant
    size = "7b"                        # optional size label for filters (default: from name)
    params_b = 7.62                    # parameters, billions
    precision = "4bit"                 # bf16, fp16, fp32 or <n>bit
    role = "target"                    # target, draft or both
    size_gb = 4.29                     # estimated weight size, GB

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
        """Bits per weight: 16 for bf16/fp16, 32 for fp32, n for nbit."""
        if self.precision.endswith("bit"):
            return int(self.precision[:-3])
        return 32 if self.precision == "fp32" else 16

    def to_dict(self) -> dict:
        return asdict(self)


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
# key: (required, test, what the value must be); keys not listed here are ignored
MODEL_FIELDS = {
    "name": (True, lambda v: _text(v) and ":" in v and "/" not in v, 'a short name like "family:variant"'),
    "params_b": (True, _positive, "a positive number (billions of parameters)"),
    "precision": (True, lambda v: isinstance(v, str) and PRECISION.fullmatch(v), "bf16, fp16, fp32 or <n>bit"),
    "size_gb": (True, _positive, "a positive number (GB of weights)"),
    "role": (False, lambda v: v in ROLES, f"one of {', '.join(ROLES)}"),
    "repo": (False, lambda v: isinstance(v, str) and REPO_ID.match(v), 'a Hub repo id like "owner/name"'),
    "variant": (False, _text, "a non-empty string"),
    "size": (False, _text, 'a size label like "7b"'),
}


def _check_model(model, where: str) -> None:
    if not isinstance(model, dict):
        raise InvalidInputError(f"{where} is {_shown(model)}, not a table; write each model as a [[models]] table")
    for key, (required, test, what) in MODEL_FIELDS.items():
        if key not in model:
            if required:
                raise InvalidInputError(f"{where}: missing key {key!r}")
        elif not test(model[key]):
            raise InvalidInputError(f"{where}: {key} must be {what}, not {_shown(model[key])}")


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
    models = data.get("models", [])
    if not _text(family):
        raise InvalidInputError(f"model list {path} needs a top-level family = \"name\"")
    if source not in ("hub", "offline"):
        raise InvalidInputError(f"model list {path}: source must be \"hub\" or \"offline\", not {_shown(source)}")
    if not isinstance(models, list):
        raise InvalidInputError(
            f"model list {path}: models is {_shown(models)}; write each model as a [[models]] table"
        )
    entries = []
    for index, model in enumerate(models, start=1):
        where = f"model list {path}, model {index}"
        _check_model(model, where)
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
