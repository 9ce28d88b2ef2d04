"""Result records and their files: what a measurement stores (raw samples, the machine,
versions, settings) and how it is written (JSON, atomically)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from .errors import InvalidInputError
from .measure import MeasureSettings, RunSample
from .paths import read_user_file
from .stats import Comparison, compare

SCHEMA_VERSION = 1


def _package_version(name: str) -> str | None:
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


def environment() -> dict:
    """The machine and software versions every result is recorded with."""
    import mlx.core as mx

    device = {"default_device": str(mx.default_device())}
    try:
        info = mx.device_info()
        device.update({k: v for k, v in info.items() if isinstance(v, (int, float, str))})
    except Exception:  # device_info is not available on every backend/version
        pass
    return {
        "machine": {
            "chip": _chip_name(),
            "arch": platform.machine(),
            "cpu_count": os.cpu_count(),
            "memory_gb": total_memory_gb(),
            "os": platform.platform(),
            "mlx_device": device,
        },
        "versions": {
            "python": platform.python_version(),
            "mlx": _package_version("mlx"),
            "mlx-lm": _package_version("mlx-lm"),
            "huggingface-hub": _package_version("huggingface-hub"),
            "mlxdraft": _package_version("mlxdraft"),
        },
    }


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def sample_to_dict(sample: RunSample) -> dict:
    return dataclasses.asdict(sample)


def sample_from_dict(data: dict) -> RunSample:
    names = {f.name for f in dataclasses.fields(RunSample)}
    return RunSample(**{k: v for k, v in data.items() if k in names})


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON so that a crash or kill -9 at any moment leaves the old or the new file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_results(path: Path) -> dict:
    """A results file written by mlxdraft, checked for its schema version."""
    text = read_user_file(path, "results file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"results file {path} cannot be read: {exc}")
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise InvalidInputError(f"{path} is not an mlxdraft results file of schema version {SCHEMA_VERSION}")
    return data


def model_record(loaded) -> dict:
    """What a results file says about a model (LoadedModel)."""
    record = loaded.source.describe()
    record.update(
        {
            "model_type": loaded.config.get("model_type"),
            "precision": loaded.precision,
            "weights_gb": loaded.weights_bytes / 1e9,
        }
    )
    return record


@dataclass
class PairResult:
    """One target/draft pairing measured by `mlxdraft pair`."""

    target: dict
    draft: dict
    num_draft_tokens: int
    settings: MeasureSettings
    prompts: list[dict]
    environment: dict
    created_at: str
    samples: list[RunSample] = field(default_factory=list)

    @property
    def baseline_samples(self) -> list[RunSample]:
        return [s for s in self.samples if s.is_baseline]

    @property
    def speculative_samples(self) -> list[RunSample]:
        return [s for s in self.samples if not s.is_baseline]

    def comparison(self) -> Comparison:
        return compare(
            self.baseline_samples,
            self.speculative_samples,
            self.num_draft_tokens,
            greedy=self.settings.temp == 0,
            seed=self.settings.seed,
        )

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "pair",
            "created_at": self.created_at,
            **self.environment,
            "target": self.target,
            "draft": self.draft,
            "num_draft_tokens": self.num_draft_tokens,
            "settings": dataclasses.asdict(self.settings),
            "prompts": self.prompts,
            "summary": self.comparison().to_dict(),
            "samples": [sample_to_dict(s) for s in self.samples],
        }
