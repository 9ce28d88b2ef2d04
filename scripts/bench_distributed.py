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
    tokenizer = train_tokenizer()
    spec = TinyModelSpec(hidden_size=512, num_hidden_layers=8, intermediate_size=1536, num_attention_heads=8,
                         num_key_value_heads=4, seed=7)
    return (build_model_folder(root / "bench-target", spec, tokenizer),
            build_model_folder(root / "bench-draft", spec, tokenizer, quantize_bits=4))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", help="Keep the results files here (default: a temp folder).")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
