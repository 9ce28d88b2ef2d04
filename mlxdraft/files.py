"""Writing the user's files: the one way mlxdraft writes a file (atomically), the lock that keeps
two sweeps out of one results file, and turning SIGTERM into the same clean stop as Ctrl-C.

An atomic write goes to `.{name}.{pid}.{random}.tmp` beside the file, is flushed and fsynced, and
then renamed over it, so a crash, Ctrl-C or kill -9 at any moment leaves the old or the new file
whole. A temp file left by a killed process names its pid, so the next writer can clean it up.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
import signal
import threading
import time
from pathlib import Path

from .errors import InvalidInputError, ResultsLockedError

RESULTS_PREFIX_BYTES = 64 * 1024  # how much of a file is_results_file looks at
_HINTS = {
    errno.ENOSPC: "free some disk space or choose another location",
    errno.EDQUOT: "free some space within your disk quota or choose another location",
    errno.EROFS: "choose a location on a writable disk",
    errno.EACCES: "choose a location you can write to",
    errno.EPERM: "choose a location you can write to",
}


def describe_os_error(path: Path, exc: OSError) -> str:
    """Why writing `path` failed, for a message: the OS reason, the file it concerns when that is
    not `path` itself, or which file stands where a folder should be."""
    reason = exc.strerror or str(exc)
    culprit = exc.filename
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        blocker = _first_non_folder(Path(culprit) if culprit else path)
        if blocker is not None:
            return f"{blocker} is a file, not a folder"
    if isinstance(exc, IsADirectoryError) and path.is_dir():
        return f"{path} is a folder"
    if culprit and str(culprit) not in (str(path), str(path.parent)) and not _is_temp_name(path, culprit):
        reason = f"{reason} ({culprit})"
    return reason


def _write_error(path: Path, exc: OSError) -> InvalidInputError:
    """`cannot write PATH: REASON; HINT` for an OSError met while writing `path`."""
    hint = _HINTS.get(exc.errno, "choose another location")
    return InvalidInputError(f"cannot write {path}: {describe_os_error(path, exc)}; {hint}")


def _first_non_folder(folder: Path) -> Path | None:
    """The first existing path on the way to `folder` (itself included) that is not a folder:
    what stops mkdir."""
    for part in reversed([folder, *folder.parents]):
        if part.exists() and not part.is_dir():
            return part
        if not part.exists():
            return None
    return None


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _temp_pid(path: Path, candidate: str) -> int | None:
    """The pid in the name of a temp file of `path` (None when `candidate` is not one)."""
    match = re.fullmatch(re.escape(f".{path.name}.") + r"(\d+)\.[0-9a-f]+\.tmp", candidate)
    return int(match.group(1)) if match else None


def _is_temp_name(path: Path, candidate) -> bool:
    return _temp_pid(path, Path(str(candidate)).name) is not None


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every system can open a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def real_path(path: str | Path) -> Path:
    """The file a path names after symlinks: writing replaces that file, never the link."""
    return Path(os.path.realpath(Path(path).expanduser()))


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` so that the old or the new file is always whole.

    Any OSError (no space, read-only disk, a file where a folder should be) becomes an
    InvalidInputError naming `path` and the reason; the previous file is left as it was, and the
    temp file is removed on every exception, Ctrl-C included (and SIGTERM, after
    install_sigterm_handler)."""
    shown, path = path, real_path(path)
    if path.is_dir():
        raise InvalidInputError(f"cannot write {shown}: {shown} is a folder; choose another location")
    if path.exists() and not path.is_file():
        raise InvalidInputError(f"cannot write {shown}: it is not a regular file; choose another location")
    if path.exists() and not path.stat().st_mode & 0o222:
        raise InvalidInputError(f"cannot write {shown}: it is read-only; make it writable (chmod u+w) to "
                                "replace it, or choose another location")
    data = text.encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(path, exc) from None
    tmp = _temp_name(path)
    fd = None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.fchmod(fd, 0o644)  # results are meant to be shared, whatever the umask
        closing, fd = fd, None  # closed even when close() reports an error: never close it twice
        os.close(closing)
        os.replace(tmp, path)
    except BaseException as exc:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from None
        raise
    _fsync_folder(path.parent)


def check_writable(path: str | Path) -> None:
    """Raise the InvalidInputError write_text_atomic would raise for `path`, now, before a long
    measurement: a folder in its place, a parent that cannot be made, a read-only disk. Creates
    missing parent folders (the write would); leaves no file behind."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"cannot write {path}: {path} is a folder; choose another location")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(path, exc) from None
    tmp = _temp_name(path)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except OSError as exc:
        raise _write_error(path, exc) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _non_finite_at(data, where: str = "") -> str | None:
    """Where in `data` the first NaN or infinity is, as `a.b[3]`, or None."""
    if isinstance(data, float) and not math.isfinite(data):
        return where or "the value"
    if isinstance(data, dict):
        items = ((f"{where}.{key}" if where else str(key), value) if str(key).isidentifier()
                 else (f"{where}[{json.dumps(str(key))}]", value) for key, value in data.items())
    elif isinstance(data, (list, tuple)):
        items = ((f"{where}[{index}]", value) for index, value in enumerate(data))
    else:
        return None
    for place, value in items:
        found = _non_finite_at(value, place)
        if found:
            return found
    return None


def write_json_atomic(path: str | Path, data) -> None:
    """Write `data` as strict JSON (indent 1) with write_text_atomic.

    NaN and infinity are not JSON: one reaching here is a bug upstream, so it raises ValueError
    naming the field rather than writing a file that strict readers reject."""
    try:
        text = json.dumps(data, indent=1, allow_nan=False)
    except ValueError:
        raise ValueError(
            f"refusing to write {path}: {_non_finite_at(data)} is NaN or infinite, which JSON cannot hold "
            "(a bug in mlxdraft: the value should have been None)"
        ) from None
    write_text_atomic(path, text + "\n")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def remove_stale_temp_files(path: str | Path) -> int:
    """Remove temp files of `path` whose writer is gone (left by kill -9); returns how many."""
    path = Path(path)
    try:
        names = os.listdir(path.parent)
    except OSError:
        return 0
    removed = 0
    for name in names:
        pid = _temp_pid(path, name)
        if pid is None or pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            os.unlink(path.parent / name)
            removed += 1
    return removed


def _raise_keyboard_interrupt(signum, frame):
    """The first Ctrl-C or SIGTERM stops the work; further ones are ignored, so that cleanup (temp
    files, the lock, the final message) is never cut short by an impatient second signal."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, _ignore_signal)  # a Python no-op, not SIG_IGN: a signal already on
    raise KeyboardInterrupt  # its way would otherwise print "Signal N ignored due to race condition"


def _ignore_signal(signum, frame):
    pass


def install_sigterm_handler() -> None:
    """Make SIGTERM raise KeyboardInterrupt, so that it stops mlxdraft the way Ctrl-C does: temp
    files are removed and the "Interrupted, saved ..." message is printed. After the first of
    either signal, both are ignored while mlxdraft cleans up.

    Idempotent. Does nothing outside the main thread (only it may set handlers) or when SIGTERM
    is ignored (the parent asked for that)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for number in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(number) not in (signal.SIG_IGN, _raise_keyboard_interrupt, _ignore_signal):
            signal.signal(number, _raise_keyboard_interrupt)


class ResultsLock:
    """Held while one process writes a results file, so that a second one refuses to.

    The lock is `fcntl.flock` on `{path}.lock`, which holds the owner's pid. The OS releases it
    when the owner dies, even by kill -9, so a leftover lock file never blocks anybody. Acquiring
    also removes temp files left by dead writers of `path`.

        with ResultsLock(output):
            ...  # write output as often as needed
    """

    def __init__(self, path: str | Path):
        self.path = real_path(path)  # one lock per real file, however it is named
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._fd: int | None = None

    def __enter__(self) -> ResultsLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        try:
            import fcntl
        except ImportError:  # no flock on this system: write without a lock
            fcntl = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            while self._fd is None:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    if fcntl is not None:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    current = self._is_current(fd)
                except BaseException:
                    os.close(fd)
                    raise
                if current:
                    self._fd = fd
                else:  # the previous holder removed the file between our open and flock: again
                    os.close(fd)
            os.ftruncate(self._fd, 0)
            os.write(self._fd, f"{os.getpid()}\n".encode())
        except BlockingIOError:
            raise ResultsLockedError(
                f"{self.path} is being written by another mlxdraft (pid {self._holder()}); "
                "wait for it to finish or choose another --output"
            ) from None
        except OSError as exc:
            self.release()
            raise _write_error(self.lock_path, exc) from None
        remove_stale_temp_files(self.path)

    def _is_current(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
        except FileNotFoundError:
            return False

    def _holder(self) -> str:
        """The pid the holder wrote (it writes it right after locking, so wait a moment for it)."""
        for _ in range(20):
            try:
                text = self.lock_path.read_text(encoding="utf-8").strip()
            except OSError:
                text = ""
            if text.isdigit():
                return text
            time.sleep(0.05)
        return "unknown"

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._is_current(fd):  # ours: remove it while still holding the lock
                with contextlib.suppress(OSError):
                    os.unlink(self.lock_path)
        finally:
            os.close(fd)  # closing releases the flock


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file, however they are spelled (relative, symlinked,
    hard-linked); paths that do not exist yet are compared after resolving them."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        pass
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return os.path.abspath(a) == os.path.abspath(b)


_KIND = re.compile(rb'"kind"\s*:\s*"(pair|sweep)"')


def is_results_file(path: str | Path) -> bool:
    """Whether `path` is an existing mlxdraft results file (a JSON object with schema_version and
    kind "pair" or "sweep"). Looks at the first 64 KiB only, and never raises."""
    try:
        if not os.path.isfile(path):  # not a folder, FIFO or device: those could block or never end
            return False
        with open(path, "rb") as handle:
            prefix = handle.read(RESULTS_PREFIX_BYTES + 1)
    except (OSError, ValueError):
        return False
    if len(prefix) <= RESULTS_PREFIX_BYTES:  # the whole file: decide exactly
        try:
            data = json.loads(prefix.decode("utf-8-sig"))
        except (ValueError, RecursionError):
            return False
        return isinstance(data, dict) and "schema_version" in data and data.get("kind") in ("pair", "sweep")
    head = prefix.lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"{") and b'"schema_version"' in prefix and _KIND.search(prefix) is not None
