#!/usr/bin/env python3
"""Does mlxdraft's measurement slow down what it measures?

Times the same model, prompt and length, side by side in one process: a bare
`mlx_lm.stream_generate` loop, and the mlx-lm engine's `generate` (the baseline method). Runs alternate
(A B A B ...) and the medians are compared. Target: mlxdraft tok/s / bare tok/s >= 0.97.

Usage: python scripts/bench_overhead.py [--model PATH_OR_NAME] [--repeats 10] [--max-tokens 64]
Without --model a ~20M-parameter random Llama is built in a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 0.97


def bare_tps(model, tokenizer, prompt_ids, max_tokens) -> float:
    import mlx.core as mx
    from mlx_lm import stream_generate

    saved = set(tokenizer.eos_token_ids)
    tokenizer.eos_token_ids = set()
    try:
        start = time.perf_counter()
        count = 0
        for _ in stream_generate(model, tokenizer, mx.array(prompt_ids), max_tokens=max_tokens):
            count += 1
        return count / (time.perf_counter() - start)
    finally:
        tokenizer.eos_token_ids = saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--model", help="model folder, repo id or short name (default: a built one)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    from mlxdraft.engines import get_engine
    from mlxdraft.measure import MeasureSettings
    from mlxdraft.methods import get_method
    from mlxdraft.prompts import Prompt, encode_prompt
    from mlxdraft.testkit import TinyModelSpec, build_model_folder

    with tempfile.TemporaryDirectory() as tmp:
        name = args.model
        if name is None:
            spec = TinyModelSpec(hidden_size=512, num_hidden_layers=6, intermediate_size=1536,
                                 num_attention_heads=8, num_key_value_heads=4)
            name = str(build_model_folder(Path(tmp) / "bench-model", spec))
        engine = get_engine("mlx-lm")
        target = engine.load(engine.resolve(name))
        settings = MeasureSettings(max_tokens=args.max_tokens, warmup=0)
        prompt_ids = encode_prompt(target.tokenizer, Prompt("Write a short story about a lighthouse."))
        bare_tps(target.model, target.tokenizer, prompt_ids, args.max_tokens)  # warmup
        bare, ours = [], []
        for _ in range(args.repeats):
            bare.append(bare_tps(target.model, target.tokenizer, prompt_ids, args.max_tokens))
            trace = engine.generate(target, prompt_ids, settings, get_method("baseline"))
            ours.append(len(trace.token_ids) / trace.round_end_s[-1])
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"model: {name}")
    print(f"bare stream_generate: {statistics.median(bare):.1f} tok/s (median of {len(bare)}, "
          f"{min(bare):.1f} … {max(bare):.1f})")
    print(f"mlxdraft measurement: {statistics.median(ours):.1f} tok/s (median of {len(ours)}, "
          f"{min(ours):.1f} … {max(ours):.1f})")
    verdict = "OK" if ratio >= TARGET_RATIO else "TOO SLOW"
    print(f"ratio mlxdraft/bare: {ratio:.3f} (target >= {TARGET_RATIO}) {verdict}")
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
