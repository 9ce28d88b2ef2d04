"""Result records and their files: what a measurement stores (raw samples, the machine,
versions, settings) and how it is written (JSON, atomically)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from .measure import RunSample
from .schema import read_results

SCHEMA_VERSION = 2  # 2: pair files share the sweep layout; samples carry round details


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


def sample_from_dict(data: dict) -> RunSample:
    names = {f.name for f in dataclasses.fields(RunSample)}
    return RunSample(**{k: v for k, v in data.items() if k in names})


def load_results(path: Path) -> dict:
    """A results file written by mlxdraft (either schema), checked field by field, in the sweep
    layout: pair files of schema 1 are converted to a one-group sweep in memory."""
    data = read_results(path)
    if data.get("kind") == "pair" and "plan" not in data:
        data = _pair_v1_as_sweep(data)
    return data


def _pair_v1_as_sweep(data: dict) -> dict:
    """A schema-1 `pair` file (target, draft, settings, samples) in the sweep layout."""
    target, draft = data["target"], data["draft"]
    plan = {"settings": data["settings"], "num_draft_tokens": [data["num_draft_tokens"]],
            "targets": [target["name"]], "drafts": [draft["name"]], "prompts": data.get("prompts", [])}
    group = {"target": target["name"], "draft": draft["name"], "status": "done", "reason": None,
             "samples": data["samples"]}
    return {**{k: data[k] for k in ("schema_version", "created_at", "machine", "versions") if k in data},
            "kind": "pair", "plan": plan, "models": {target["name"]: target, draft["name"]: draft},
            "groups": {f"{target['name']} | {draft['name']}": group}}


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
