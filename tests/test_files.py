"""files.py: atomic writes that never lose the previous file, the results lock, SIGTERM as Ctrl-C."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import contextmanager

import pytest

from mlxdraft import files
from mlxdraft.errors import InvalidInputError, ResultsLockedError
from mlxdraft.files import (
    ResultsLock,
    install_sigterm_handler,
    is_results_file,
    remove_stale_temp_files,
    same_file,
    write_json_atomic,
    write_text_atomic,
)

OLD = {"schema_version": 1, "kind": "sweep", "groups": {"a | b": {"samples": [1.5, 2, None]}}}


def temp_files(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


@pytest.fixture
def old_file(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomic(path, OLD)
    return path, path.read_bytes()


def test_writes_strict_json_readable_by_everyone(old_file):
    path, data = old_file
    assert data == (json.dumps(OLD, indent=1) + "\n").encode()
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert temp_files(path.parent) == []


def test_creates_missing_folders(tmp_path):
    path = tmp_path / "a" / "b" / "report.md"
    write_text_atomic(path, "héllo\n")
    assert path.read_text(encoding="utf-8") == "héllo\n"


def test_nan_is_a_bug_named_by_field_and_nothing_is_written(old_file):
    path, before = old_file
    with pytest.raises(ValueError, match=r'refusing to write .*: groups\["a \| b"\]\.samples\[1\] is NaN or infinite'):
        write_json_atomic(path, {"groups": {"a | b": {"samples": [1.0, float("nan")]}}})
    assert path.read_bytes() == before
    assert temp_files(path.parent) == []


def test_parent_is_a_file(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    path = blocker / "sub" / "results.json"
    with pytest.raises(InvalidInputError) as excinfo:
        write_json_atomic(path, OLD)
    assert str(excinfo.value) == f"cannot write {path}: {blocker} is a file, not a folder; choose another location"


def test_path_is_a_folder(tmp_path):
    with pytest.raises(InvalidInputError) as excinfo:
        write_text_atomic(tmp_path, "x")
    assert str(excinfo.value) == f"cannot write {tmp_path}: {tmp_path} is a folder; choose another location"
    assert temp_files(tmp_path.parent) == []


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_injected_full_disk_keeps_the_old_file_byte_for_byte(old_file, monkeypatch, failing):
    path, before = old_file

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, failing, full)
    with pytest.raises(InvalidInputError) as excinfo:
        write_json_atomic(path, {**OLD, "more": list(range(1000))})
    monkeypatch.undo()
    assert str(excinfo.value) == (
        f"cannot write {path}: No space left on device; free some disk space or choose another location"
    )
    assert path.read_bytes() == before
    assert temp_files(path.parent) == []


def test_keyboard_interrupt_mid_write_removes_the_temp_file(old_file, monkeypatch):
    path, before = old_file

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_json_atomic(path, {"new": True})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert temp_files(path.parent) == []


@contextmanager
def mounted_tmpfs(folder, options):
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_real_full_disk_keeps_the_old_file_byte_for_byte(tmp_path):
    with mounted_tmpfs(tmp_path / "small", "size=64k") as disk:
        path = disk / "results.json"
        write_json_atomic(path, OLD)
        before = path.read_bytes()
        with pytest.raises(InvalidInputError) as excinfo:
            write_json_atomic(path, {"big": "x" * 200_000})
        assert str(excinfo.value) == (
            f"cannot write {path}: No space left on device; free some disk space or choose another location"
        )
        assert path.read_bytes() == before
        assert temp_files(disk) == []


def test_read_only_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "ro", "ro,size=64k") as disk:
        path = disk / "results.json"
        with pytest.raises(InvalidInputError) as excinfo:
            write_text_atomic(path, "x")
        assert str(excinfo.value) == f"cannot write {path}: Read-only file system; choose a location on a writable disk"


def run_python(code, *args, **kwargs):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for_line(process, expected):
    line = process.stdout.readline().strip()
    assert line == expected, (line, process.stderr.read() if process.poll() is not None else "")


def test_sigterm_during_a_write_loop_leaves_a_whole_file_and_no_temp_files(tmp_path):
    path = tmp_path / "results.json"
    writer = run_python("""
        import sys
        from mlxdraft.files import install_sigterm_handler, write_json_atomic
        install_sigterm_handler()
        path, n = sys.argv[1], 0
        try:
            while True:
                write_json_atomic(path, {"n": n, "samples": list(range(200_000))})
                n += 1
                if n == 1:
                    print("ready", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(130)
    """, path)
    wait_for_line(writer, "ready")
    time.sleep(0.3)
    writer.send_signal(signal.SIGTERM)
    out, err = writer.communicate(timeout=30)
    assert writer.returncode == 130, err
    assert out.strip() == "interrupted"
    data = json.loads(path.read_text())
    assert data["samples"] == list(range(200_000)) and data["n"] >= 0
    assert temp_files(tmp_path) == []


def test_sigterm_handler_is_idempotent_and_main_thread_only():
    saved = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        install_sigterm_handler()
        handler = signal.getsignal(signal.SIGTERM)
        install_sigterm_handler()
        assert signal.getsignal(signal.SIGTERM) is handler
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGTERM, None)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        thread = threading.Thread(target=install_sigterm_handler)
        thread.start()
        thread.join()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # nohup-style: left alone
        install_sigterm_handler()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, saved)


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    path = tmp_path / "results.json"
    stale = tmp_path / f".results.json.{dead_pid()}.0badc0de.tmp"
    ours = tmp_path / f".results.json.{os.getpid()}.12345678.tmp"
    unrelated = [tmp_path / ".other.json.1.abcd.tmp", tmp_path / ".results.json.tmp", tmp_path / "results.json"]
    for file in [stale, ours, *unrelated]:
        file.write_text("x")
    assert remove_stale_temp_files(path) == 1
    assert not stale.exists() and ours.exists() and all(file.exists() for file in unrelated)
    assert remove_stale_temp_files(tmp_path / "missing" / "results.json") == 0


def holder(path):
    process = run_python("""
        import sys, time
        from mlxdraft.files import ResultsLock
        with ResultsLock(sys.argv[1]):
            print("locked", flush=True)
            time.sleep(60)
    """, path)
    wait_for_line(process, "locked")
    return process


def test_second_process_gets_the_exact_message_and_sigkill_does_not_block(tmp_path):
    path = tmp_path / "sweep.json"
    first = holder(path)
    try:
        with pytest.raises(ResultsLockedError) as excinfo:
            ResultsLock(path).acquire()
        assert str(excinfo.value) == (
            f"{path} is being written by another mlxdraft (pid {first.pid}); "
            "wait for it to finish or choose another --output"
        )
    finally:
        first.kill()
        first.wait()
    assert (tmp_path / "sweep.json.lock").exists()  # left behind by kill -9 ...
    stale = tmp_path / f".sweep.json.{first.pid}.deadbeef.tmp"
    stale.write_text("half")
    with ResultsLock(path) as lock:  # ... and no obstacle
        assert lock.held
        assert (tmp_path / "sweep.json.lock").read_text() == f"{os.getpid()}\n"
        assert not stale.exists()
    assert not (tmp_path / "sweep.json.lock").exists()


def test_lock_in_the_same_process_and_release(tmp_path):
    path = tmp_path / "sweep.json"
    with ResultsLock(path):
        with pytest.raises(ResultsLockedError, match=rf"\(pid {os.getpid()}\)"):
            ResultsLock(path).acquire()
    with ResultsLock(path):  # released
        pass
    lock = ResultsLock(path)
    lock.release()  # never acquired: nothing happens


def test_lock_beside_a_file_where_a_folder_should_be(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    path = blocker / "sweep.json"
    with pytest.raises(InvalidInputError) as excinfo:
        ResultsLock(path).acquire()
    assert str(excinfo.value) == (
        f"cannot write {path}.lock: {blocker} is a file, not a folder; choose another location"
    )


def test_same_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = tmp_path / "a.json"
    a.write_text("{}")
    (tmp_path / "link.json").symlink_to(a)
    os.link(a, tmp_path / "hard.json")
    (tmp_path / "b.json").write_text("{}")
    assert same_file("a.json", a)
    assert same_file(tmp_path / "link.json", "./a.json")
    assert same_file(tmp_path / "hard.json", a)
    assert not same_file(a, tmp_path / "b.json")
    assert same_file("new.json", tmp_path / "sub" / ".." / "new.json")
    assert not same_file("new.json", "other.json")


def pair_dict():
    return {"schema_version": 1, "kind": "pair", "samples": []}


def test_is_results_file(tmp_path):
    pair = tmp_path / "pair.json"
    pair.write_text(json.dumps(pair_dict()))
    other = tmp_path / "other.json"
    other.write_text('{"kind": "pair"}')
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(os.urandom(100_000))
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"schema_version": 1, "kind": "sweep", "groups": {"x": "y" * 200_000}}, indent=1))
    assert is_results_file(pair) and is_results_file(big)
    for path in (other, listing, binary, tmp_path / "missing.json", tmp_path, "/dev/zero"):
        assert not is_results_file(path), path
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert not is_results_file(fifo)  # returns at once instead of waiting for a writer
