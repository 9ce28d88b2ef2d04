"""More than one Mac: the process's place in an `mlx.launch` job, and the few collective steps
mlxdraft needs on top of MLX's own (rank 0's bytes to every rank, every rank's facts to every rank,
an agreement check on emitted tokens, a preflight before anything loads).

Outside `mlx.launch` the world is one process (rank 0 of 1) and every helper here returns its
input: code calls them unconditionally. Nothing here prints.

Every collective is entered by every rank in the same order; a rank that fails alone must say so
through `agree()` (a collective too) rather than skip one, or the others wait for it. A rank that
died closes its sockets, and the others' next collective then raises (PeerLostError)."""

from __future__ import annotations

import json
import os
import platform
import socket
import struct
from dataclasses import dataclass, field

from .errors import MlxdraftError

# Set by mlx.launch for every backend it starts: the ring's hostfile, JACCL's coordinator, NCCL's size.
_LAUNCH_VARIABLES = ("MLX_HOSTFILE", "MLX_JACCL_COORDINATOR", "MLX_IBV_DEVICES", "MLX_WORLD_SIZE")
CHECK_EVERY_ROUNDS = 16  # the token agreement check runs this often within a generation (and at its end)


class DistributedError(MlxdraftError):
    """The ranks of a distributed run cannot go on together; the message names the rank and host."""


class PreflightError(DistributedError):
    """A rank lacks a model's files or the memory for its share, found before anything loaded."""


class RanksDisagreeError(DistributedError):
    """Ranks emitted different tokens: a bug or a broken link, never a result to keep."""


class PeerLostError(KeyboardInterrupt):
    """A collective failed because another rank stopped (killed, crashed, its machine gone). It stops
    this rank the way Ctrl-C does (a sweep saves what it measured and says how to resume) rather than
    as one failed case among others: no later case can run without that rank."""


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank `rank` of `size`, over `backend` on `host`."""

    rank: int = 0
    size: int = 1
    backend: str = "none"
    host: str = field(default_factory=socket.gethostname)
    group: object = None  # the mlx.core.distributed.Group (None for one process)

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def where(self, rank: int | None = None, hosts: list[str] | None = None) -> str:
        """ "rank 1 (host mac-2)": how messages name a rank."""
        rank = self.rank if rank is None else rank
        host = hosts[rank] if hosts and rank < len(hosts) else (self.host if rank == self.rank else None)
        return f"rank {rank}" + (f" ({host})" if host else "")


_WORLD: World | None = None


def launched(environ=None) -> bool:
    """Whether mlx.launch (or mpirun) started this process as one rank of several."""
    environ = os.environ if environ is None else environ
    if "MLX_RANK" in environ:
        return any(environ.get(name) for name in _LAUNCH_VARIABLES)
    return int(environ.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1


def backend_of(environ=None) -> str:
    """The backend mlx.launch set this rank up for, from the variables it exports."""
    environ = os.environ if environ is None else environ
    if environ.get("MLX_JACCL_COORDINATOR") or environ.get("MLX_IBV_DEVICES"):
        return "jaccl"
    if environ.get("NCCL_HOST_IP"):
        return "nccl"
    if environ.get("MLX_HOSTFILE"):
        return "ring"
    if environ.get("OMPI_COMM_WORLD_SIZE"):
        return "mpi"
    return "any"


def world() -> World:
    """This process's world, set up once: `mx.distributed.init()` runs only when launched."""
    global _WORLD
    if _WORLD is None:
        if not launched():
            _WORLD = World()
        else:
            import mlx.core as mx

            backend = backend_of()
            try:
                group = mx.distributed.init(strict=True, backend=backend)
            except Exception as exc:  # noqa: BLE001 - mlx raises RuntimeError/ValueError for a bad setup
                raise DistributedError(f"rank {os.environ.get('MLX_RANK', '?')} ({socket.gethostname()}) could "
                                       f"not join the {backend} group: {exc}") from exc
            _WORLD = (World(group.rank(), group.size(), backend, socket.gethostname(), group)
                      if group.size() > 1 else World())
    return _WORLD


def _collective(function, *args):
    """Run one collective and wait for it; a lost peer becomes PeerLostError. Work queued before it
    (mlx-lm's loops queue the next forward pass, with its own collectives, before a round is
    returned) finishes first, so that every rank's collectives meet in the same order."""
    import mlx.core as mx
    from mlx_lm.generate import generation_stream

    try:
        mx.synchronize(generation_stream)  # where mlx-lm and mlxdraft's loops run the models
        mx.synchronize()
        result = function(*args)
        mx.eval(result)
        return result
    except RuntimeError as exc:
        raise PeerLostError(f"{world().where()} lost its connection to another rank ({exc}); "
                            "that rank stopped or its machine is unreachable") from exc


def all_sum_ints(values, current: World | None = None) -> list[int]:
    """Every rank's `values` summed element by element (int32)."""
    return [int(v) for v in _all_sum_array(values, current).tolist()]


def _all_sum_array(values, current: World | None = None):
    import mlx.core as mx
    import numpy as np

    current = current or world()
    array = np.asarray(values, dtype=np.int32)
    if not current.distributed:
        return array
    summed = _collective(lambda: mx.distributed.all_sum(mx.array(array), group=current.group))
    return np.array(summed, dtype=np.int32)


def broadcast_bytes(data: bytes | None, current: World | None = None) -> bytes:
    """Rank 0's `data` on every rank (the others' argument is ignored): an all-sum in which the
    other ranks add zeros, first of the length, then of the bytes."""
    current = current or world()
    if not current.distributed:
        return data or b""
    mine = (data or b"") if current.is_leader else b""
    length = all_sum_ints([len(mine)], current)[0]
    if not length:
        return b""
    import numpy as np

    payload = np.frombuffer(mine, dtype=np.uint8) if current.is_leader else np.zeros(length, dtype=np.uint8)
    return _all_sum_array(payload, current).astype(np.uint8).tobytes()


def broadcast_floats(values: list[float], current: World | None = None) -> list[float]:
    """Rank 0's floats, exactly (as 64-bit bytes), on every rank."""
    current = current or world()
    if not current.distributed:
        return list(values)
    data = broadcast_bytes(struct.pack(f"<{len(values)}d", *values) if current.is_leader else None, current)
    return list(struct.unpack(f"<{len(data) // 8}d", data))


def broadcast_json(value, current: World | None = None):
    """Rank 0's JSON-able value on every rank."""
    current = current or world()
    if not current.distributed:
        return value
    data = broadcast_bytes(json.dumps(value).encode() if current.is_leader else None, current)
    return json.loads(data.decode())


def all_gather_json(value, current: World | None = None) -> list:
    """Every rank's JSON-able value, in rank order, on every rank."""
    current = current or world()
    if not current.distributed:
        return [value]
    mine = json.dumps(value).encode()
    lengths = all_sum_ints([len(mine) if r == current.rank else 0 for r in range(current.size)], current)
    import numpy as np

    width = max(lengths)
    rows = np.zeros(width * current.size, dtype=np.uint8)
    rows[current.rank * width: current.rank * width + len(mine)] = np.frombuffer(mine, dtype=np.uint8)
    summed = _all_sum_array(rows, current).astype(np.uint8).tobytes()
    return [json.loads(summed[r * width: r * width + lengths[r]].decode()) for r in range(current.size)]


def agree(error: BaseException | None, what: str, current: World | None = None) -> None:
    """A step every rank took alone (loading a file, checking memory) either worked everywhere or
    stops every rank with the same DistributedError, naming the first rank that failed and its host."""
    current = current or world()
    if not current.distributed:
        if error is not None:
            raise error
        return
    mine = None if error is None else (str(error) or type(error).__name__)
    reports = all_gather_json({"host": current.host, "error": mine}, current)
    failed = [(rank, report) for rank, report in enumerate(reports) if report["error"]]
    if not failed:
        return
    rank, report = failed[0]
    others = f" (and {len(failed) - 1} more rank(s))" if len(failed) > 1 else ""
    raise DistributedError(f"{what} failed on rank {rank} ({report['host']}){others}: {report['error']}")


class TokenCheck:
    """Every rank makes the same decisions over the same all-reduced logits, so every rank emits the
    same tokens; this checks it cheaply. `add(tokens)` after every round; every CHECK_EVERY_ROUNDS
    rounds and at `finish()`, one all-gather of (tokens so far, checksum) compares the ranks."""

    def __init__(self, current: World | None = None, every: int = CHECK_EVERY_ROUNDS):
        self.world = current or world()
        self.every = every
        self.count = 0
        self.checksum = 0
        self.rounds = 0

    def add(self, tokens: list[int]) -> None:
        for token in tokens:
            self.checksum = (self.checksum * 1000003 + int(token) + 1) % 2147483647
        self.count += len(tokens)
        self.rounds += 1
        if self.world.distributed and self.rounds % self.every == 0:
            self.compare()

    def finish(self) -> None:
        if self.world.distributed:
            self.compare()

    def compare(self) -> None:
        current = self.world
        rows = [0] * (2 * current.size)  # an all-sum in which each rank fills its own two slots
        rows[2 * current.rank: 2 * current.rank + 2] = [self.count, self.checksum]
        gathered = all_sum_ints(rows, current)
        pairs = [tuple(gathered[2 * r: 2 * r + 2]) for r in range(current.size)]
        differing = [r for r, pair in enumerate(pairs) if pair != pairs[0]]
        if differing:
            raise RanksDisagreeError(
                f"the ranks emitted different tokens (rank 0: {pairs[0][0]} tokens; "
                + ", ".join(f"rank {r}: {pairs[r][0]} tokens, other ids" if pairs[r][0] == pairs[0][0]
                            else f"rank {r}: {pairs[r][0]} tokens" for r in differing)
                + "); the results of this generation are not kept. Check that every Mac runs the same mlx, "
                  "mlx-lm and mlxdraft versions and the same model files")


# -- machines and the plan ----------------------------------------------------------------------------
def machine_facts(current: World | None = None) -> dict:
    """This rank's host, chip and memory."""
    from .results import machine_info

    current = current or world()
    info = machine_info()
    return {"rank": current.rank, "host": current.host, "chip": info.get("chip") or platform.machine(),
            "memory_gb": info.get("memory_gb")}


def gather_machines(current: World | None = None) -> list[dict]:
    """Every rank's machine_facts, in rank order."""
    current = current or world()
    return all_gather_json(machine_facts(current), current)


@dataclass
class RankCheck:
    """One rank's preflight: what it needs and has, and what stops it (None: nothing)."""

    rank: int
    host: str
    chip: str | None
    memory_gb: float | None  # the budget this rank measures against
    need_gb: float  # its target shard plus the whole draft, with working room
    problem: str | None = None

    def to_dict(self) -> dict:
        return {"rank": self.rank, "host": self.host, "chip": self.chip, "memory_gb": self.memory_gb,
                "need_gb": self.need_gb, "problem": self.problem}


@dataclass
class DistributedPlan:
    """What rank 0 reports before anything loads, and what results files record."""

    world_size: int
    backend: str
    sharding: str  # "tensor" (model.shard), "pipeline" (model.model.pipeline) or "none"
    ranks: list[RankCheck]

    def to_dict(self) -> dict:
        return {"world_size": self.world_size, "backend": self.backend, "sharding": self.sharding,
                "ranks": [r.to_dict() for r in self.ranks]}

    def lines(self) -> list[str]:
        head = (f"Distributed: {self.world_size} ranks over {self.backend}, target sharded "
                f"({self.sharding} parallel), draft whole on every rank")
        return [head] + [f"  rank {r.rank} ({r.host}, {r.chip or '?'}): needs ~{r.need_gb:.2f} GB of "
                         f"{r.memory_gb:.1f} GB" if r.memory_gb else
                         f"  rank {r.rank} ({r.host}, {r.chip or '?'}): needs ~{r.need_gb:.2f} GB"
                         for r in self.ranks]


def sharding_mode(config: dict) -> str:
    """How mlx-lm can split a model of this config across ranks: "tensor" when its Model class has
    `shard` (Llama, Qwen 2/3, ...), "pipeline" when only its inner model has `pipeline`, else "none"."""
    from mlx_lm.utils import _get_classes

    try:
        model_class, _ = _get_classes(config)
    except Exception:  # noqa: BLE001 - an unknown model type cannot be sharded (and loading will say why)
        return "none"
    if hasattr(model_class, "shard"):
        return "tensor"
    import inspect

    module = inspect.getmodule(model_class)
    inner = [c for _, c in inspect.getmembers(module, inspect.isclass) if hasattr(c, "pipeline")]
    return "pipeline" if inner else "none"


def preflight(folders: dict[str, tuple[str, object]], budget_gb: float | None,
              current: World | None = None) -> DistributedPlan:
    """Every rank checks, before anything loads, that it has each model's files and the memory for
    the largest target's shard plus the largest draft whole. `folders` maps a model name to (role,
    its local folder, or the error met resolving it here); role is "target" or "draft". The checks
    are gathered: any rank's problem raises one PreflightError naming the rank and its host, on every
    rank; otherwise every rank gets the plan."""
    from .memory import WORKING_OVERHEAD, weights_gb
    from .sources import read_model_config

    current = current or world()
    facts = machine_facts(current)
    problems, modes = [], set()
    target_gb, draft_gb = 0.0, 0.0
    for name, (role, folder) in folders.items():
        if isinstance(folder, BaseException):
            problems.append(f"{name}: {folder}")
            continue
        try:
            config = read_model_config(folder, name)
            if not any(folder.glob("*.safetensors")):
                raise MlxdraftError(f"{folder} holds no *.safetensors weights")
        except MlxdraftError as exc:
            problems.append(f"{name}: {exc}")
            continue
        size = weights_gb(folder)
        if role == "target":
            mode = sharding_mode(config) if current.distributed else "none"
            if current.distributed and mode == "none":
                problems.append(f"{name}: mlx-lm cannot shard a {config.get('model_type')} model across ranks "
                                "(neither tensor nor pipeline parallel); choose a Llama or Qwen target")
            heads = {key: config.get(key) for key in ("num_attention_heads", "num_key_value_heads")
                     if isinstance(config.get(key), int)}
            uneven = [f"{value} {key.replace('num_', '').replace('_', ' ')}" for key, value in heads.items()
                      if value % current.size]
            if current.distributed and mode == "tensor" and uneven:
                problems.append(f"{name}: tensor parallelism splits the attention heads evenly, and "
                                f"{' and '.join(uneven)} do not split over {current.size} ranks; use a number of "
                                "ranks that divides them")
            modes.add(mode)
            target_gb = max(target_gb, size / current.size)
        else:
            draft_gb = max(draft_gb, size)
    need = (target_gb + draft_gb) * WORKING_OVERHEAD
    if budget_gb is not None and need > budget_gb and not problems:
        problems.append(f"needs ~{need:.3g} GB (its share of the target plus the whole draft) but has "
                        f"{budget_gb:.3g} GB")
    mine = RankCheck(current.rank, current.host, facts["chip"], budget_gb, round(need, 4),
                     "; ".join(problems) or None)
    checks = [RankCheck(**item) for item in all_gather_json(mine.to_dict(), current)]
    failed = [c for c in checks if c.problem]
    if failed:
        first = failed[0]
        others = f" (and {len(failed) - 1} more rank(s))" if len(failed) > 1 else ""
        raise PreflightError(f"preflight refused rank {first.rank} ({first.host}){others} before loading "
                             f"anything: {first.problem}")
    modes_all = {m for item in all_gather_json(sorted(modes), current) for m in item}
    sharding = "tensor" if modes_all == {"tensor"} else ("pipeline" if "pipeline" in modes_all else "none")
    if modes_all == {"tensor", "pipeline"}:
        sharding = "tensor+pipeline"
    return DistributedPlan(current.size, current.backend, sharding if current.distributed else "none", checks)


def prepare(engine, targets: list[str], drafts: list[str], memory_gb: float | None = None,
            current: World | None = None) -> DistributedPlan | None:
    """Under mlx.launch, before anything loads: every rank finds the models' folders on its own disk
    (no downloads: each Mac must hold the files; `mlxdraft pull` there first), the preflight runs,
    and the engine learns which folders to shard. None in one process."""
    from .errors import InvalidInputError

    current = current or world()
    if not current.distributed:
        return None
    if not hasattr(engine, "distribute"):
        raise InvalidInputError(f"the {engine.name} engine cannot run across ranks; use the mlx-lm engine")
    folders: dict[str, tuple[str, object]] = {}
    for role, names in (("target", targets), ("draft", drafts)):
        for name in names:
            if name in folders:
                continue
            try:
                folders[name] = (role, engine.resolve(name, allow_download=False).path)
            except MlxdraftError as exc:
                folders[name] = (role, exc)
    plan = preflight(folders, engine.memory_budget(memory_gb).gb, current)
    engine.distribute(plan, [folder for role, folder in folders.values() if role == "target"])
    return plan


def private_output(path, resume: bool, current: World | None = None):
    """The results file this rank writes: rank 0's own; every other rank's a private temp file
    (their measurements are rank 0's, so only rank 0's file is kept), holding rank 0's file's
    content when resuming so that every rank continues from the same runs."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    current = current or world()
    if not current.distributed:
        return path
    content = None
    if current.is_leader:
        content = Path(path).read_bytes() if path is not None and resume and Path(path).exists() else b""
    content = broadcast_bytes(content, current)  # every rank, even without a file: collectives pair up
    if current.is_leader or path is None:
        return path
    path = Path(path)
    folder = Path(tempfile.mkdtemp(prefix=f"mlxdraft-rank{current.rank}-"))
    atexit.register(shutil.rmtree, folder, True)
    private = folder / path.name
    if content:
        private.write_bytes(content)
    return private
