"""Hand-made results files: sweep states built from synthetic samples with known speedups, so
that analysis and report code is tested on fixed inputs with known answers (no models, no timing
noise). `make_state` returns exactly what `mlxdraft sweep` would save."""

from __future__ import annotations

import dataclasses
import random

from mlxdraft.measure import RunSample, VerifyRound, add_round_counts

MACHINE = {"chip": "Test CPU", "arch": "x86_64", "cpu_count": 2, "memory_gb": 24.0, "os": "Linux-test",
           "mlx_device": {"default_device": "Device(cpu, 0)"}}
VERSIONS = {"python": "3.11", "mlx": "0.0", "mlx-lm": "0.0", "huggingface-hub": "0.0", "mlxdraft": "0.0"}


def sample(k: int, prompt_index: int, pass_index: int, decode_tps: float, ttft_s: float = 0.5,
           max_tokens: int = 32, acceptance: float = 0.8, peak_memory_gb: float = 1.0,
           category: str = "custom") -> RunSample:
    """A RunSample whose decode speed is `decode_tps` and whose rounds accept about `acceptance`."""
    decode_tokens = max_tokens - 1
    decode_s = decode_tokens / decode_tps
    run = RunSample(
        num_draft_tokens=k, prompt_index=prompt_index, category=category, pass_index=pass_index,
        prompt_tokens=20, generated_tokens=max_tokens, ttft_s=ttft_s, prefill_tps=20 / ttft_s,
        decode_tokens=decode_tokens, decode_s=decode_s, decode_tps=decode_tps, wall_s=ttft_s + decode_s,
        peak_memory_gb=peak_memory_gb, finish_reason="length", token_ids=list(range(max_tokens)))
    if k:
        accepted = round(acceptance * k)
        rounds = []
        emitted = 0
        while emitted + accepted + 1 <= max_tokens:
            rounds.append(VerifyRound(k, accepted))
            emitted += accepted + 1
        add_round_counts(run, rounds, k)
        run.draft_tokens = accepted * len(rounds)
    return run


def make_state(speedups: dict, *, targets=("big",), drafts=("small", "tiny"), ks=(2, 4), prompts: int = 12,
               runs: int = 1, noise: float = 0.0, seed: int = 0, baseline_tps: float = 10.0,
               spec_ttft_s: float = 0.5, temp: float = 0.0, statuses: dict | None = None,
               weights_gb: dict | None = None) -> dict:
    """A sweep state. `speedups[(target, draft, k)]` is the true decode speedup (default 1.0);
    `noise` the relative sd of every run's speed; `statuses[(target, draft)]` overrides a group's
    status ("failed", "skipped", "pending") with no samples."""
    rng = random.Random(seed)
    weights_gb = weights_gb or {}
    statuses = statuses or {}
    groups, models = {}, {}
    for name in (*targets, *drafts):
        models[name] = {"name": name, "path": f"/models/{name}", "kind": "local", "repo_id": None,
                        "revision": None, "model_type": "llama", "precision": "4bit",
                        "weights_gb": weights_gb.get(name, 1.0 if name in targets else 0.1)}
    for target in targets:
        models[target]["alone_peak_memory_gb"] = 1.0
        for draft in drafts:
            key = f"{target} | {draft}"
            status = statuses.get((target, draft), "done")
            record = {"target": target, "draft": draft, "status": status,
                      "reason": None if status == "done" else f"{status} on purpose", "samples": []}
            groups[key] = record
            if status != "done":
                continue
            for pass_index in range(runs):
                for prompt_index in range(prompts):
                    effect = 1 + 0.2 * (prompt_index % 3)
                    jitter = lambda: rng.gauss(0, noise) if noise else 0.0  # noqa: E731
                    base = baseline_tps * effect * (2.718281828 ** jitter())
                    record["samples"].append(dataclasses.asdict(
                        sample(0, prompt_index, pass_index, base, category=f"cat{prompt_index % 2}")))
                    for k in ks:
                        truth = speedups.get((target, draft, k), 1.0)
                        tps = truth * baseline_tps * effect * (2.718281828 ** jitter())
                        record["samples"].append(dataclasses.asdict(
                            sample(k, prompt_index, pass_index, tps, ttft_s=spec_ttft_s,
                                   peak_memory_gb=1.0 + models[draft]["weights_gb"],
                                   category=f"cat{prompt_index % 2}")))
    settings = {"max_tokens": 32, "runs": runs, "warmup": 0, "temp": temp, "seed": 0, "fixed_length": True}
    return with_metadata({
        "schema_version": 2, "kind": "sweep", "created_at": "2026-11-29T00:00:00+00:00",
        "updated_at": "2026-11-29T00:00:00+00:00", "machine": MACHINE, "versions": VERSIONS,
        "memory_budget": {"gb": 24.0, "source": "--memory-gb"},
        "plan": {"settings": settings, "num_draft_tokens": list(ks), "targets": list(targets),
                 "drafts": list(drafts),
                 "prompts": [{"category": f"cat{i % 2}", "text": f"prompt {i}"} for i in range(prompts)],
                 "memory_budget_gb": 24.0},
        "models": models, "groups": groups,
    })


def with_metadata(state: dict, engine: str = "mlx-lm") -> dict:
    """`state` as schema 3 saves it: its methods and engine described, the commands of every measured setup
    recorded (module `recording`, as the sweep records them), by the installed `engine`."""
    from mlxdraft.engines import get_engine
    from mlxdraft.methods import get_method
    from mlxdraft.recording import record_commands, record_methods
    from mlxdraft.results import Results

    results = Results.from_dict(state)
    record_methods(results, [get_engine(engine)], [get_method(key) for key in results.plan.methods])
    for record in results.groups.values():
        setups = dict.fromkeys((s.method, s.num_draft_tokens) for s in record.samples)
        record_commands(results, get_engine(engine), record.target, record.draft,
                        [(get_method(key), k) for key, k in setups])
    return {**state, "schema_version": 3, "methods": results.methods, "engines": results.engines,
            "commands": results.commands}
