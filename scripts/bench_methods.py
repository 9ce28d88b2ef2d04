#!/usr/bin/env python3
"""The drafting methods side by side, each part one interleaved sweep (so every ratio compares runs
measured back to back on the same prompt), on the offline SmolLM2 family by default.

  (a) draft vs mlx-lm, same draft and k, temperature 0: decode speed ratio (target >= 0.98)
  (b) temperatures 0.7 and 1.0: acceptance of draft vs mlx-lm, each one's speedup over the baseline
  (c) prompt-lookup per prompt category: decode and end-to-end speedup
  (d) draft-adaptive vs the best fixed k of draft, per draft (target >= 0.97 of the best fixed k)

Parts a, b and d use the prompts of every category but the copy-heavy ones (summarise, repeat).
Every part is saved after every run (results/bench-methods-<part>.json) and resumes when run again.

Usage: python scripts/bench_methods.py [--parts a,b,c,d] [--max-tokens 24] [-r 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from mlxdraft.analysis import paired_ratios
from mlxdraft.engines import get_engine
from mlxdraft.measure import MeasureSettings
from mlxdraft.methods import parse_methods
from mlxdraft.prompts import load_prompts_file
from mlxdraft.results import Results
from mlxdraft.stats import estimate_ratio
from mlxdraft.sweep import SweepPlan, SweepRun, choice_for_name

ROOT = Path(__file__).resolve().parent.parent
OWN_LOOP_TARGET = 0.98
ADAPTIVE_TARGET = 0.97


def measure(name: str, targets, drafts, methods, ks, settings, prompts, out_dir: Path) -> Results:
    """One interleaved sweep, saved after every run and resumed if it was stopped."""
    engine = get_engine()
    plan = SweepPlan([choice_for_name(t) for t in targets], [choice_for_name(d) for d in drafts], ks, settings,
                     prompts, engine.memory_budget(), methods=parse_methods(methods))
    output = out_dir / f"bench-methods-{name}.json"
    run = SweepRun(plan, output, resume=True, progress=lambda line: print(line, file=sys.stderr, flush=True))
    for event in run.events():
        if event.kind == "run":
            sample = event.sample
            what = "baseline" if sample.is_baseline else f"{sample.method} k={sample.num_draft_tokens}"
            print(f"[{name}] run {event.runs_done}/{event.runs_total}: {what}, prompt {sample.prompt_index + 1}: "
                  f"{sample.decode_tps or 0:.2f} tok/s decode", file=sys.stderr, flush=True)
        elif event.kind in ("skipped", "failed"):
            raise SystemExit(f"[{name}] {event.group.key}: {event.kind}: {event.message}")
    return run.results


def samples_of(results: Results, method: str, k: int, draft: str | None = None, category: str | None = None):
    return [s for g in results.groups.values() if draft is None or g.draft == draft for s in g.samples
            if s.method == method and s.num_draft_tokens == (0 if method == "baseline" else k)
            and (category is None or s.category == category)]


def ratio(results: Results, a: tuple, b: tuple, metric: str = "decode_tps", **where) -> dict:
    """Paired geometric-mean ratio of method a over method b (each (method, k)), with its 95% interval."""
    estimate = estimate_ratio(list(paired_ratios(samples_of(results, *b, **where), samples_of(results, *a, **where),
                                                 metric).values()))
    return estimate.to_dict() if estimate else None


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


COPY_HEAVY = ("summarise", "repeat")  # only part (c), where copying is the point, uses these


def mixed(prompts):
    return [p for p in prompts if p.category not in COPY_HEAVY]


def part_a(args, settings, prompts):
    prompts = mixed(prompts)
    results = measure("a", [args.target], [args.drafts[0]], "mlx-lm,draft", [args.k], settings, prompts, args.out)
    own = ratio(results, ("draft", args.k), ("mlx-lm", args.k))
    return {"what": f"draft vs mlx-lm, {args.drafts[0]}, k={args.k}, temperature 0: decode speed ratio",
            "draft_over_mlx_lm_decode": own, "target": OWN_LOOP_TARGET,
            "met": bool(own and own["geomean"] >= OWN_LOOP_TARGET),
            "draft_speedup": ratio(results, ("draft", args.k), ("baseline", 0)),
            "mlx_lm_speedup": ratio(results, ("mlx-lm", args.k), ("baseline", 0))}


def part_b(args, settings, prompts):
    prompts = mixed(prompts)
    rows = []
    for temp in (0.7, 1.0):
        warm = MeasureSettings(**{**settings.__dict__, "temp": temp})
        results = measure(f"b-temp{temp:g}", [args.target], [args.drafts[0]], "mlx-lm,draft", [args.k], warm,
                          prompts, args.out)
        rows.append({"temp": temp, **{
            f"{key}_acceptance": mean(s.acceptance_rate for s in samples_of(results, method, args.k))
            for key, method in (("draft", "draft"), ("mlx_lm", "mlx-lm"))},
            "draft_speedup": ratio(results, ("draft", args.k), ("baseline", 0)),
            "mlx_lm_speedup": ratio(results, ("mlx-lm", args.k), ("baseline", 0))})
    return {"what": f"temperature > 0, {args.drafts[0]}, k={args.k}: acceptance and decode speedup", "rows": rows}


def part_c(args, settings, prompts):
    results = measure("c", [args.target], [], "prompt-lookup", [args.k], settings, prompts, args.out)
    categories = list(dict.fromkeys(p.category for p in prompts))
    rows = [{"category": category,
             "decode_speedup": ratio(results, ("prompt-lookup", args.k), ("baseline", 0), category=category),
             "e2e_speedup": ratio(results, ("prompt-lookup", args.k), ("baseline", 0), "e2e_tps", category=category),
             "acceptance": mean(s.acceptance_rate for s in samples_of(results, "prompt-lookup", args.k,
                                                                      category=category))}
            for category in categories]
    return {"what": f"prompt-lookup, k={args.k}, per category", "rows": rows,
            "all": ratio(results, ("prompt-lookup", args.k), ("baseline", 0))}


def part_d(args, settings, prompts):
    prompts = mixed(prompts)
    ks = [2, 4, 6]
    results = measure("d", [args.target], args.drafts, "draft,draft-adaptive", ks, settings, prompts, args.out)
    rows = []
    for draft in args.drafts:
        name = str(choice_for_name(draft).name)
        fixed = {k: ratio(results, ("draft", k), ("baseline", 0), draft=name) for k in ks}
        best = max(ks, key=lambda k: fixed[k]["geomean"] if fixed[k] else 0)
        adaptive = ratio(results, ("draft-adaptive", max(ks)), ("draft", best), draft=name)
        rows.append({"draft": draft, "fixed_k_speedups": fixed, "best_fixed_k": best,
                     "adaptive_speedup": ratio(results, ("draft-adaptive", max(ks)), ("baseline", 0), draft=name),
                     "adaptive_over_best_fixed": adaptive, "target": ADAPTIVE_TARGET,
                     "met": bool(adaptive and adaptive["geomean"] >= ADAPTIVE_TARGET),
                     "adaptive_acceptance": mean(s.acceptance_rate for s in samples_of(results, "draft-adaptive",
                                                                                       max(ks), draft=name)),
                     "adaptive_proposed_per_round": mean(
                         s.proposed_draft_tokens / s.verify_rounds for s in samples_of(results, "draft-adaptive",
                                                                                       max(ks), draft=name)
                         if s.verify_rounds)})
    return {"what": f"draft-adaptive (at most k={max(ks)}) vs draft's best fixed k of {ks}", "rows": rows}


PARTS = {"a": part_a, "b": part_b, "c": part_c, "d": part_d}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="a,b,c,d")
    parser.add_argument("--target", default="smollm2:fp16")
    parser.add_argument("--drafts", default="smollm2:q8,smollm2:q4")
    parser.add_argument("-k", type=int, default=4, help="k for parts a, b and c")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("-r", "--runs", type=int, default=1)
    parser.add_argument("--prompts", default=str(ROOT / "scripts" / "bench_methods_prompts.jsonl"))
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.drafts = [d.strip() for d in args.drafts.split(",") if d.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    settings = MeasureSettings(max_tokens=args.max_tokens, runs=args.runs, warmup=1)
    prompts = load_prompts_file(args.prompts)
    figures = {"target": args.target, "drafts": args.drafts, "max_tokens": args.max_tokens, "runs": args.runs,
               "prompts": len(prompts), "environment": get_engine().environment()}
    for part in args.parts.split(","):
        figures[part] = PARTS[part.strip()](args, settings, prompts)
        print(json.dumps({part: figures[part]}, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
