"""Where mlxdraft keeps its state (one directory: MLXDRAFT_HOME or the platform's app dir), and
how it reads the files a user names: bounded in size, UTF-8, with one clear error each."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from .errors import InvalidInputError

MiB = 1024 * 1024
MAX_USER_FILE_BYTES = 16 * MiB  # default bound for a file the user names (model lists, ...)
MAX_RESULTS_FILE_BYTES = 512 * MiB  # a results file holds every raw sample: allow many


def expand_user(path: str | Path, what: str, error: type[Exception] = InvalidInputError) -> Path:
    """`path` with a leading ~ or ~user expanded; an unknown user raises `error` saying so."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # pathlib's answer to ~nobody-by-that-name or an unknown home
        user = str(path).split("/", 1)[0]
        reason = (f"there is no user {user[1:]!r} on this machine for {user} to stand for" if user != "~"
                  else "the home folder is unknown (HOME is not set)")
        raise error(f"{what} {path} cannot be used: {reason}; write the path out in full") from None


def app_dir() -> Path:
    override = os.environ.get("MLXDRAFT_HOME")
    if override:
        return expand_user(override, "MLXDRAFT_HOME")
    import click

    return Path(click.get_app_dir("mlxdraft"))


def models_dir() -> Path:
    """Models mlxdraft builds itself (the offline SmolLM2 family)."""
    return app_dir() / "models"


def downloads_dir() -> Path:
    return app_dir() / "downloads"


def describe_size(num_bytes: int) -> str:
    """'1 MiB', '512 MiB', '300 KiB', '12 bytes': for limits in messages."""
    for unit, size in (("GiB", 1024 * MiB), ("MiB", MiB), ("KiB", 1024)):
        if num_bytes >= size:
            return f"{num_bytes / size:g} {unit}"
    return f"{num_bytes} bytes"


def read_user_file(path: str | Path, what: str, hint: str = "", max_bytes: int = MAX_USER_FILE_BYTES) -> str:
    """Text of a file the user named, or an InvalidInputError that says what is wrong with it.

    Reads at most `max_bytes` + 1 bytes, so `/dev/zero` or a huge file is refused quickly and
    without filling memory. A UTF-8 byte-order mark is dropped."""
    suffix = f"; {hint}" if hint else ""
    with contextlib.suppress(OSError, ValueError):
        if stat.S_ISFIFO(os.stat(path).st_mode):  # reading a pipe nobody writes to would wait forever
            raise InvalidInputError(f"{what} {path} is a pipe, not a file{suffix}")
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise InvalidInputError(f"{what} {path} does not exist{suffix}") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{what} {path} is a folder, not a file{suffix}") from None
    except OSError as exc:
        raise InvalidInputError(f"{what} {path} cannot be read: {exc.strerror or exc}{suffix}") from None
    if len(data) > max_bytes:
        raise InvalidInputError(
            f"{what} {path} is larger than {describe_size(max_bytes)}, the most mlxdraft reads; pass a smaller file"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{what} {path} cannot be read: it is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}){suffix}"
        ) from None
