"""One process against two ranks on this machine (mlx.launch, ring over localhost), on a small random
Llama built with the test kit and a 4-bit copy of it as the draft: baseline and speculative decode
speed, tokens per round, and the share of a verify pass spent communicating, from `mlxdraft pair`
itself (the same command once plainly, once with --hostfile).

    PYTHONPATH=. python scripts/bench_distributed.py [--max-tokens 48] [-k 3] [--runs 2] [--out DIR]

Two ranks on ONE machine split its cores and memory bandwidth, and pay for loopback TCP: this
measures the cost of the machinery, not what two Macs gain (see the README's "More than one Mac").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlxdraft.testkit import TinyModelSpec, build_model_folder, train_tokenizer


def build(root: Path) -> tuple[Path, Path]:
    """An 8-layer target, and as its draft the same model cut to its first 2 layers (embeddings, final
    norm and head kept): random weights, but a draft that agrees with the target often enough."""
    import shutil

    import mlx.core as mx

    spec = TinyModelSpec(hidden_size=512, num_hidden_layers=8, intermediate_size=1536, num_attention_heads=8,
                         num_key_value_heads=4, seed=7)
    target = build_model_folder(root / "bench-target", spec, train_tokenizer())
    draft = root / "bench-draft"
    shutil.copytree(target, draft, dirs_exist_ok=True)
    weights = mx.load(str(target / "model.safetensors"))
    kept = {name: w for name, w in weights.items()
            if ".layers." not in name or int(name.split(".layers.")[1].split(".")[0]) < 2}
    mx.save_safetensors(str(draft / "model.safetensors"), kept, metadata={"format": "mlx"})
    config = json.loads((draft / "config.json").read_text())
    (draft / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 2}, indent=2))
    return target, draft


def measure(root: Path, target: Path, draft: Path, args, hostfile: Path | None) -> dict:
    out = root / ("two-ranks.json" if hostfile else "one-process.json")
    command = [sys.executable, "-m", "mlxdraft", "pair", str(target), str(draft), "--method", "draft",
               "-k", str(args.k), "--max-tokens", str(args.max_tokens), "-r", str(args.runs), "-w", "1",
               "--prompt", "Write a short story about a lighthouse keeper.", "-o", str(out), "--force"]
    if hostfile:
        command += ["--hostfile", str(hostfile)]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    data = json.loads(out.read_text())
    samples = [s for g in data["groups"].values() for s in g["samples"]]
    baseline = [s for s in samples if s["num_draft_tokens"] == 0]
    speculative = [s for s in samples if s["num_draft_tokens"]]
    rounds = [s["round_tokens"] / s["verify_rounds"] for s in speculative if s.get("verify_rounds")]
    model = data["models"][str(target)]
    share = None
    if model.get("communication_s"):
        n = str(args.k + 1)
        share = statistics.median(model["communication_s"][n]) / statistics.median(model["verify_s"][n])
    return {"setup": "2 ranks (ring, localhost)" if hostfile else "1 process",
            "baseline_tps": statistics.median(s["decode_tps"] for s in baseline),
            "speculative_tps": statistics.median(s["decode_tps"] for s in speculative),
            "tokens_per_round": statistics.median(rounds) if rounds else None,
            "verify_ms": {n: 1000 * statistics.median(v) for n, v in model.get("verify_s", {}).items()},
            "communication_share": share, "wall_s": time.monotonic() - started}


# -- on paper: Qwen2.5-72B fp16 on two 128 GB Macs over Thunderbolt 5, Qwen2.5-0.5B fp16 as the draft --------
# Stated inputs, not measurements (change them with the options below):
TARGET_PARAMS_B, TARGET_LAYERS = 72.7, 80  # Qwen2.5-72B: 72.7B parameters, 80 layers, hidden 8192
HIDDEN = 8192
DRAFT_PARAMS_B = 0.49  # Qwen2.5-0.5B
BANDWIDTH_GBS = 546.0  # M4 Max (the 128 GB Macs with Thunderbolt 5): unified memory bandwidth
EFFICIENCY = 0.8  # share of that bandwidth a decoding forward pass reaches
WIDTH_COST = 0.02  # T(n) = T(1) * (1 + WIDTH_COST * (n - 1)): memory-bound, a few more tokens cost little
LINK_GBS = 8.0  # Thunderbolt 5 payload bandwidth, per direction


def on_paper(alpha: float, allreduce_us: float, k_max: int = 8) -> list[tuple[int, float, float, float]]:
    """(k, tokens per round, decode tok/s, speedup over plain decoding on the same two Macs) from the
    speedup model (mlxdraft.prediction): R(k) = k t_d + T(k+1) + L(k+1); plain decoding T(1) + L(1);
    L(n) = 2 x layers x (allreduce_us + n x hidden x 2 bytes / link bandwidth), the per-pass latency
    term of tensor parallelism (one all-reduce after attention, one after the MLP, in every layer)."""
    from mlxdraft.prediction import AcceptanceProfile, SpeedupModel, VerifyCosts

    per_rank_gb = TARGET_PARAMS_B * 2 / 2  # fp16, half the weights on each Mac
    t1 = per_rank_gb / (BANDWIDTH_GBS * EFFICIENCY)
    draft_token_s = DRAFT_PARAMS_B * 2 / (BANDWIDTH_GBS * EFFICIENCY)

    def latency(n: int) -> float:
        return 2 * TARGET_LAYERS * (allreduce_us * 1e-6 + n * HIDDEN * 2 / (LINK_GBS * 1e9))

    verify = {n: [t1 * (1 + WIDTH_COST * (n - 1)) + latency(n)] for n in range(1, k_max + 2)}
    rounds = 100_000  # a geometric acceptance profile: each drafted token accepted with probability alpha
    counts = [round(rounds * alpha ** i * (1 - alpha)) for i in range(k_max)] + [round(rounds * alpha ** k_max)]
    model = SpeedupModel(AcceptanceProfile(k_max, {0: counts}), VerifyCosts(verify, [draft_token_s]))
    rows = []
    for k in range(1, k_max + 1):
        prediction = model.predict(k)
        rows.append((k, prediction.expected_tokens_per_round, prediction.expected_tokens_per_round
                     / prediction.round_s, prediction.decode_speedup))
    return rows, t1, latency(1), draft_token_s


def print_on_paper(alpha: float, allreduce_us: float) -> None:
    rows, t1, l1, draft_token_s = on_paper(alpha, allreduce_us)
    print(f"\nOn paper: Qwen2.5-72B fp16 over two 128 GB Macs (TB5, JACCL), Qwen2.5-0.5B fp16 draft on each; "
          f"T(1) = {1000 * t1:.0f} ms compute + L(1) = {1000 * l1:.1f} ms communication "
          f"({2 * TARGET_LAYERS} all-reduces x {allreduce_us:g} us); draft {1000 * draft_token_s:.1f} ms/token; "
          f"acceptance {alpha:g} per token")
    print(f"plain decoding: {1 / (t1 + l1):.2f} tok/s")
    best = max(rows, key=lambda row: row[3])
    for k, tokens, tps, speedup in rows:
        mark = "  <- best" if k == best[0] else ""
        print(f"  k={k}: {tokens:.2f} tokens/round, {tps:.2f} tok/s, {speedup:.2f}x{mark}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", help="Keep the results files here (default: a temp folder).")
    parser.add_argument("--on-paper-only", action="store_true", help="Only the on-paper Qwen2.5-72B prediction.")
    parser.add_argument("--alpha", type=float, default=0.7, help="On paper: per-token acceptance of the draft.")
    parser.add_argument("--allreduce-us", type=float, default=50.0,
                        help="On paper: latency of one small all-reduce between the two Macs, microseconds.")
    args = parser.parse_args()
    if args.on_paper_only:
        print_on_paper(args.alpha, args.allreduce_us)
        return
    root = Path(args.out or tempfile.mkdtemp(prefix="mlxdraft-bench-distributed-"))
    root.mkdir(parents=True, exist_ok=True)
    target, draft = build(root)
    hostfile = root / "hosts.json"
    local = {"ssh": "127.0.0.1", "ips": ["127.0.0.1"]}
    hostfile.write_text(json.dumps({"backend": "ring", "hosts": [local, local]}))
    rows = [measure(root, target, draft, args, None), measure(root, target, draft, args, hostfile)]
    print(f"{'setup':<28}{'baseline tok/s':>16}{'speculative tok/s':>19}{'speedup':>9}{'tokens/round':>14}"
          f"{'comm. share':>13}")
    for row in rows:
        share = f"{100 * row['communication_share']:.0f}%" if row["communication_share"] is not None else "-"
        per_round = f"{row['tokens_per_round']:.2f}" if row["tokens_per_round"] else "-"
        print(f"{row['setup']:<28}{row['baseline_tps']:>16.1f}{row['speculative_tps']:>19.1f}"
              f"{row['speculative_tps'] / row['baseline_tps']:>8.2f}x{per_round:>14}{share:>13}")
    print(json.dumps(rows, indent=2))
    print_on_paper(args.alpha, args.allreduce_us)


if __name__ == "__main__":
    main()
