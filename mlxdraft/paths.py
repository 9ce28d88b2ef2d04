"""Where mlxdraft keeps its state: one directory, MLXDRAFT_HOME or the platform's app dir."""

from __future__ import annotations

import os
from pathlib import Path


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
