"""`mlxdraft pair|sweep|generate ... --hostfile hosts.json`: start the same command under
`mlx.launch` for the user and watch it. Rank 0's output passes through; the other ranks are silent.
When a rank exits abnormally, mlx.launch stops the others; whatever still runs `timeout_s` later is
killed, and one `Error:` line names the rank and its host, the runs saved so far and the command
that resumes them.

The ranks tell the supervisor who they are (and rank 0 where it saves) in marker lines on stderr,
which it consumes; they write them only when MLXDRAFT_SUPERVISED is set."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InvalidInputError

MARKER = "mlxdraft-rank:"  # a marker line: MARKER + JSON
ARGV_VARIABLE = "MLXDRAFT_ARGV"  # the user's command line, --hostfile included (for resume commands)
SUPERVISED_VARIABLE = "MLXDRAFT_SUPERVISED"
STOP_TIMEOUT_S = 30.0  # after a rank fails, the longest the others may take to stop
_NODE_LINE = re.compile(r"Node with rank (\d+) (?:exited with code (-?\d+)|was killed)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
LAUNCH_OPTIONS = ("--hostfile", "--backend")


def tell_supervisor(**fields) -> bool:
    """One marker line for the supervisor, on this process's real stderr (not redirected); False
    when no supervisor started this process."""
    if not os.environ.get(SUPERVISED_VARIABLE):
        return False
    sys.__stderr__.write(MARKER + json.dumps(fields) + "\n")
    sys.__stderr__.flush()
    return True


def read_hostfile(path: str) -> list[dict]:
    """The hosts of an mlx.launch hostfile (a list, or {"hosts": [...], "backend", "envs"})."""
    try:
        data = json.loads(Path(path).expanduser().read_text())
    except OSError as exc:
        raise InvalidInputError(f"cannot read --hostfile {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--hostfile {path} is not JSON ({exc.msg} at line {exc.lineno})") from None
    hosts = data.get("hosts") if isinstance(data, dict) else data
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, dict) and h.get("ssh") for h in hosts):
        raise InvalidInputError(f"--hostfile {path} must list hosts, each with \"ssh\" (and \"ips\" for the "
                                "ring backend): see `mlx.launch --help` and the README's \"More than one Mac\"")
    return hosts


def strip_launch_options(argv: list[str]) -> list[str]:
    """argv without --hostfile F and --backend B (either spelling: separate or with =)."""
    args, rest = [], list(argv)
    while rest:
        arg = rest.pop(0)
        if arg in LAUNCH_OPTIONS:
            rest[:1] = []
        elif arg.split("=", 1)[0] in LAUNCH_OPTIONS and "=" in arg:
            continue
        else:
            args.append(arg)
    return args


def _free_port(count: int) -> int:
    """A port with `count - 1` free ones after it, for ranks all on this machine."""
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            start = probe.getsockname()[1]
        if start + count >= 65535:
            continue
        try:
            for port in range(start, start + count):
                with socket.socket() as check:
                    check.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
    return 32323  # mlx.launch's default


def _local(host: dict) -> bool:
    return host.get("ssh") in ("127.0.0.1", "localhost") and all(ip in ("127.0.0.1", "localhost")
                                                                for ip in host.get("ips", []) or [])


@dataclass
class Outcome:
    """How a supervised run ended: its exit status and the one Error line to print (None: rank 0's own)."""

    exit_code: int
    error: str | None = None
    failed: list[tuple[int, int | None]] = field(default_factory=list)  # (rank, exit code or None if killed)


def supervise(hostfile: str, backend: str | None, argv: list[str], out=None, err=None,
              timeout_s: float = STOP_TIMEOUT_S, runs_saved=None) -> Outcome:
    """Run `mlxdraft *argv` (without the launch options) on every host of `hostfile` under mlx.launch.
    `out`/`err` receive rank 0's output (bytes); `runs_saved(path)` counts the runs in a results file."""
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    hosts = read_hostfile(hostfile)
    inner = strip_launch_options(argv)
    command = [sys.executable, "-c", "from mlx._distributed_utils.launch import main; main()",
               "--hostfile", str(hostfile)]
    if backend:
        command += ["--backend", backend]
    if all(_local(h) for h in hosts):  # several ranks on this machine: ports nobody else uses
        command += ["--starting-port", str(_free_port(len(hosts) * 2))]
    command += ["--env", f"{SUPERVISED_VARIABLE}=1", "--env", f"{ARGV_VARIABLE}={json.dumps(['mlxdraft', *argv])}",
                "--", sys.executable, "-m", "mlxdraft", *inner]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    names = {rank: h.get("ssh") for rank, h in enumerate(hosts)}
    errors: dict[int, str] = {}
    failed: list[tuple[int, int | None]] = []
    output: list[str] = []
    leader_said: list[str] = []  # rank 0's own Error line, when it printed one
    first_failure = threading.Event()

    def pass_stdout():
        for chunk in iter(lambda: process.stdout.read1(65536), b""):
            out.write(chunk)
            out.flush()

    def watch_stderr():
        for raw in iter(process.stderr.readline, b""):
            line = _ANSI.sub("", raw.decode(errors="replace")).strip()
            if line.startswith(MARKER):
                try:
                    fields = json.loads(line[len(MARKER):])
                except json.JSONDecodeError:
                    fields = {}
                rank = fields.get("rank")
                if isinstance(rank, int):
                    names[rank] = fields.get("host") or names.get(rank)
                    if fields.get("error"):
                        errors[rank] = fields["error"]
                if fields.get("output"):
                    output.append(fields["output"])
                continue
            node = _NODE_LINE.search(line)
            if node:
                code = None if node.group(2) is None else int(node.group(2))
                failed.append((int(node.group(1)), code))
                first_failure.set()
                continue
            if line.startswith("Error:"):
                leader_said.append(line)
            err.write(raw)
            err.flush()

    readers = [threading.Thread(target=pass_stdout, daemon=True), threading.Thread(target=watch_stderr, daemon=True)]
    for reader in readers:
        reader.start()
    killed = False
    try:
        while process.poll() is None:
            if first_failure.wait(0.2):
                deadline = time.monotonic() + timeout_s
                while process.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.1)
                if process.poll() is None:
                    killed = True
                    _kill_group(process)
                break
        process.wait()
    except KeyboardInterrupt:
        _kill_group(process, signal.SIGINT)
        process.wait()
        raise
    for reader in readers:
        reader.join(5)
    if not failed and process.returncode:  # mlx.launch itself refused (a bad hostfile or backend): it said why
        return Outcome(process.returncode, None if leader_said else f"mlx.launch exited with status "
                       f"{process.returncode} (its message is above)")
    return _outcome(failed, errors, names, killed, output[-1] if output else None, argv, runs_saved, timeout_s,
                    bool(leader_said))


def _kill_group(process, first=signal.SIGTERM) -> None:
    for number in (first, signal.SIGKILL):
        try:
            os.killpg(process.pid, number)
        except ProcessLookupError:
            return
        try:
            process.wait(3)
            return
        except subprocess.TimeoutExpired:
            continue


def _why(code: int | None) -> str:
    if code is None:
        return "was killed"
    if code < 0:
        try:
            return f"was killed ({signal.Signals(-code).name})"
        except ValueError:
            return f"was killed (signal {-code})"
    return f"exited with status {code}"


def _outcome(failed, errors, names, killed, output, argv, runs_saved, timeout_s, leader_said=False) -> Outcome:
    from .results import command_line

    leader = next((code for rank, code in failed if rank == 0), 0)
    culprit = next(((rank, code) for rank, code in failed if rank != 0), None)
    # rank 0 said why itself (its own Error line, naming the rank for an error every rank raised together),
    # or failed first; or the run ended normally
    if culprit is None or leader_said or (failed[0][0] == 0 and culprit[0] not in errors):
        code = leader if leader is not None else 1
        return Outcome(code if code >= 0 else 1, None, failed)
    rank, code = culprit
    host = names.get(rank) or "?"
    why = f"stopped: {errors[rank]}" if rank in errors else _why(code)
    text = f"rank {rank} (host {host}) {why}"
    if killed:
        text += f"; the other ranks did not stop within {timeout_s:g} s and were killed"
    if output and Path(output).exists():
        count = runs_saved(output) if runs_saved else None
        saved = f"the {count} run(s) measured so far are saved in {output}" if count is not None \
            else f"what was measured so far is saved in {output}"
        again = (f"continue with: {command_line(['mlxdraft', *argv], resume=True)}" if argv[:1] == ["sweep"]
                 else f"measure again with: {command_line(['mlxdraft', *argv])}")
        text += f"; {saved}; {again}"
    else:
        text += "; nothing was saved"
    return Outcome(1, text, failed)
