"""Result records and their files: what a measurement stores (raw samples, the machine,
versions, settings) and how it is written (JSON, atomically)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from .measure import MeasureSettings, RunSample
from .schema import LEGACY_METHODS, read_results, unknown_method

# 2: pair files share the sweep layout; samples carry round details (0.2: and methods). 3: the file describes its
# methods and engines and records the commands that run each setup, so that it renders where they are not installed
SCHEMA_VERSION = 3


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _chip_name() -> str:
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            )
            if out.stdout.strip():
                return out.stdout.strip()
        except OSError:
            pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def total_memory_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return None


def machine_info() -> dict:
    """The machine, as far as the operating system tells (engines add their device and versions)."""
    return {
        "chip": _chip_name(),
        "arch": platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_gb": total_memory_gb(),
        "os": platform.platform(),
    }


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def sample_from_dict(data: dict) -> RunSample:
    names = {f.name for f in dataclasses.fields(RunSample)}
    return RunSample(**{k: v for k, v in data.items() if k in names})


@dataclass
class PlanRecord:
    """What a results file was asked to measure: equal plans may be resumed into each other."""

    settings: MeasureSettings
    num_draft_tokens: list[int]
    targets: list[str]
    drafts: list[str]
    prompts: list[dict]  # {"category": ..., "text": ...}
    methods: list[str] = field(default_factory=lambda: ["mlx-lm"])  # speculative methods, in order
    method_params: dict[str, dict] = field(default_factory=dict)  # method key -> its parameters
    engine: str = "mlx-lm"
    strategy: str = "exhaustive"  # or "smart": a race per group that measures only what can still win
    objective: str = "e2e"  # what the smart strategy races on ("e2e" or "decode")
    memory_budget_gb: float | None = None  # not part of the fingerprint: a larger one retries skips
    # the order of the variants within each unit: "random" (seeded per unit, each run's position recorded:
    # module `order`), or "fixed" (older files: the baseline first, then k ascending). Not part of the fingerprint:
    # an older file resumes, its new units in random order
    order: str = "fixed"
    engines: list[str] | None = None  # every engine measured side by side (older files: [engine])
    # how groups of different engines were measured: "sequential" (one engine's groups after the other's, on the
    # same prompts, not interleaved per prompt). Not part of the fingerprint
    engine_order: str = "sequential"

    def __post_init__(self):
        self.engines = list(self.engines or [self.engine])

    def fingerprint(self) -> dict:
        data = self.to_dict()
        data.pop("memory_budget_gb")
        data.pop("order")
        data.pop("engine_order")
        if self.strategy == "exhaustive":  # the objective only steers a race; reports choose their own
            data.pop("objective")
        return data

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["settings"] = dataclasses.asdict(self.settings)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> PlanRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["settings"] = MeasureSettings.from_dict(data["settings"])
        return cls(**values)


@dataclass
class GroupRecord:
    """A target measured with one draft (or alone): every variant's samples, interleaved."""

    target: str
    draft: str | None
    status: str = "pending"  # pending, done, skipped, failed
    reason: str | None = None
    retry: bool = True  # whether --resume tries a skipped or failed group again
    samples: list[RunSample] = field(default_factory=list)
    pruned: list[dict] = field(default_factory=list)  # smart strategy: setups it stopped measuring, and why
    engine: str | None = None  # the engine that measured it (older files: the plan's engine)
    methods: list[str] | None = None  # the plan's methods its engine runs (older files: all the plan's)
    # the speedup model's predictions, fitted once when the group was measured (estimates.fit_group_predictions):
    # [{"method", "draft", **Prediction}]; None when not stored (older files, a group not measured yet)
    predictions: list[dict] | None = None

    @property
    def key(self) -> str:
        return group_key(self.target, self.draft)

    def to_dict(self) -> dict:
        data = {"target": self.target, "draft": self.draft, "status": self.status, "reason": self.reason,
                "retry": self.retry, "samples": [dict(vars(sample)) for sample in self.samples],  # shallow: fast
                "pruned": self.pruned}
        if self.engine is not None:
            data["engine"] = self.engine
        if self.methods is not None:
            data["methods"] = list(self.methods)
        if self.predictions is not None:
            data["predictions"] = self.predictions
        return data

    @classmethod
    def from_dict(cls, data: dict) -> GroupRecord:
        return cls(data["target"], data["draft"], data["status"], data["reason"], data.get("retry", True),
                   [sample_from_dict(sample) for sample in data["samples"]], list(data.get("pruned") or []),
                   data.get("engine"), list(data["methods"]) if data.get("methods") is not None else None,
                   [dict(p) for p in data["predictions"]] if data.get("predictions") is not None else None)


def group_key(target: str, draft: str | None) -> str:
    return f"{target} | {draft if draft else '-'}"


def setup_key(target: str, draft: str | None, method: str, k: int) -> str:
    """How `Results.commands` names a setup: "target | draft | method | k" (draft "-" for a method that takes
    none, whichever group it was measured in)."""
    return f"{group_key(target, draft)} | {method} | {k}"


@dataclass
class Results:
    """A results file: the plan, the machine, the models and every group's raw samples.
    Statistics are never stored; they are derived when a report is rendered."""

    kind: str  # "sweep" or "pair"
    plan: PlanRecord
    groups: dict[str, GroupRecord] = field(default_factory=dict)
    models: dict[str, dict] = field(default_factory=dict)  # name -> LoadedModel.record() (+ alone peak)
    machine: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    memory_budget: dict | None = None  # {"gb": ..., "source": ...}
    sessions: list[dict] = field(default_factory=list)  # each start or resume, with its environment
    command: list[str] | None = None  # the command line that made the file (argv, "mlxdraft" first)
    # schema 3, recorded when measured, so that reports need neither `methods` nor `engines` installed:
    methods: dict[str, dict] = field(default_factory=dict)  # method key -> Method.describe() (baseline included)
    engines: dict[str, dict] = field(default_factory=dict)  # engine name -> engine.describe()
    commands: dict[str, list[str]] = field(default_factory=dict)  # setup_key -> shell commands that run it
    created_at: str = field(default_factory=lambda: now_iso())
    updated_at: str = field(default_factory=lambda: now_iso())
    schema_version: int = SCHEMA_VERSION
    # the schema version of the file it was read from (None: made in this process); files before 3 recorded no
    # commands (commands_recorded False until `recording.fill_commands`), their methods are schema.LEGACY_METHODS
    read_version: int | None = field(default=None, compare=False)
    commands_recorded: bool = field(default=True, compare=False)

    @property
    def settings(self) -> MeasureSettings:
        return self.plan.settings

    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version, "kind": self.kind, "created_at": self.created_at,
            "updated_at": self.updated_at, "machine": self.machine, "versions": self.versions,
            "memory_budget": self.memory_budget, "plan": self.plan.to_dict(), "models": self.models,
            "groups": {key: group.to_dict() for key, group in self.groups.items()}, "sessions": self.sessions,
            "command": self.command, "methods": self.methods, "engines": self.engines, "commands": self.commands,
        }

    def method_info(self, key: str) -> dict:
        """A method's metadata as the file records it (Method.describe()): key, label, summary, needs_draft,
        uses_k, fixed_k, lossless_at_temp_0, ... Files before schema 3 use the built-in methods of schema 2."""
        return self.methods.get(key) or unknown_method(key)


    @classmethod
    def from_dict(cls, data: dict) -> Results:
        """A checked results file's data (schema 2, or 1 converted) as typed records."""
        if data.get("kind") == "pair" and "plan" not in data:
            data = _pair_v1_as_sweep(data)
        methods = dict(data.get("methods") or {})
        if data.get("schema_version", SCHEMA_VERSION) < 3:  # no metadata recorded: the built-ins of schema 2
            used = ["baseline", *data["plan"].get("methods", ["mlx-lm"])]
            used += [s.get("method") or ("baseline" if s["num_draft_tokens"] == 0 else "mlx-lm")
                     for g in data["groups"].values() for s in g["samples"]]
            methods = {key: dict(LEGACY_METHODS[key]) for key in dict.fromkeys(used) if key in LEGACY_METHODS}
        engine = data["plan"].get("engine", "mlx-lm")
        return cls(
            kind=data["kind"],
            plan=PlanRecord.from_dict(data["plan"]),
            groups={key: GroupRecord.from_dict(group) for key, group in data["groups"].items()},
            models=dict(data.get("models") or {}),
            machine=dict(data.get("machine") or {}),
            versions=dict(data.get("versions") or {}),
            memory_budget=data.get("memory_budget"),
            sessions=list(data.get("sessions") or []),
            command=list(data["command"]) if data.get("command") else None,
            methods=methods,
            engines=dict(data.get("engines") or {name: {"name": name, "label": name}
                                                 for name in data["plan"].get("engines") or [engine]}),
            commands={key: list(value) for key, value in (data.get("commands") or {}).items()},
            created_at=data.get("created_at") or "",
            updated_at=data.get("updated_at") or "",
            schema_version=SCHEMA_VERSION,
            read_version=data.get("schema_version"),
            commands_recorded=data.get("schema_version", SCHEMA_VERSION) >= 3,
        )


def command_line(argv: list[str], resume: bool = False) -> str:
    """A command line to paste into a shell, from an argv ("mlxdraft", "sweep", ...) without
    --force and --resume; with --resume added when `resume`."""
    args = [arg for arg in argv if arg not in ("--force", "--resume")]
    return shlex.join(args + (["--resume"] if resume else []))


FREE_TEXT_OPTIONS = ("--prompt", "--param")  # options whose value is free text


def split_output(argv: list[str], drop: tuple[str, ...] = ()) -> tuple[list[str], str | None]:
    """A recorded argv without its output option (-o F, -oF, --output F, --output=F), --force, --resume and
    the options in `drop` (with their values), and the output it named (None when it named none)."""
    args, output, rest = [], None, list(argv)
    while rest:
        arg = rest.pop(0)
        name = arg.split("=", 1)[0]
        if arg in ("--force", "--resume"):
            continue
        if arg in ("-o", "--output") or arg in drop:
            value = rest.pop(0) if rest else None
            output = value if arg in ("-o", "--output") else output
        elif arg in FREE_TEXT_OPTIONS:  # its value may start with anything, "-o" included
            args += [arg] + rest[:1]
            del rest[:1]
        elif name == "--output" or name in drop:
            output = arg.split("=", 1)[1] if name == "--output" else output
        elif arg.startswith("-o") and not arg.startswith("--"):
            output = arg[2:]
        else:
            args.append(arg)
    return args, output


def measure_again_command(argv: list[str]) -> str:
    """The recorded command, measuring everything again into a new file beside the old one (never over it:
    what was measured stays), or to no file when it wrote none."""
    args, output = split_output(argv)
    if output is None:
        return shlex.join(args)
    path, number = Path(output), 2
    while path.with_name(f"{path.stem}-{number}{path.suffix}").exists():
        number += 1
    return shlex.join(args + ["-o", str(path.with_name(f"{path.stem}-{number}{path.suffix}"))])


def load_results(path: Path) -> Results:
    """A results file written by mlxdraft (either schema), checked field by field, as typed
    records: pair files of schema 1 are converted to a one-group sweep in memory."""
    return Results.from_dict(read_results(path))


def _pair_v1_as_sweep(data: dict) -> dict:
    """A schema-1 `pair` file (target, draft, settings, samples) in the sweep layout."""
    target, draft = data["target"], data["draft"]
    plan = {"settings": data["settings"], "num_draft_tokens": [data["num_draft_tokens"]],
            "targets": [target["name"]], "drafts": [draft["name"]], "prompts": data.get("prompts", [])}
    group = {"target": target["name"], "draft": draft["name"], "status": "done", "reason": None,
             "samples": data["samples"]}
    return {**{k: data[k] for k in ("schema_version", "created_at", "machine", "versions") if k in data},
            "kind": "pair", "plan": plan, "models": {target["name"]: target, draft["name"]: draft},
            "groups": {group_key(target["name"], draft["name"]): group}}
