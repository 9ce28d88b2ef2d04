"""Where mlxdraft keeps its state: one directory, MLXDRAFT_HOME or the platform's app dir."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InvalidInputError


def app_dir() -> Path:
    override = os.environ.get("MLXDRAFT_HOME")
    if override:
        return Path(override).expanduser()
    import click

    return Path(click.get_app_dir("mlxdraft"))


def models_dir() -> Path:
    """Models mlxdraft builds itself (the offline SmolLM2 family)."""
    return app_dir() / "models"


def downloads_dir() -> Path:
    return app_dir() / "downloads"


def read_user_file(path: str | Path, what: str, hint: str = "") -> str:
    """Text of a file the user named, or an InvalidInputError that says what is wrong with it."""
    suffix = f"; {hint}" if hint else ""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(f"{what} {path} does not exist{suffix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{what} {path} cannot be read: {exc}{suffix}") from None
