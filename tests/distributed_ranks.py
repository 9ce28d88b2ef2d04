"""One rank of the two-rank tests (tests/test_distributed.py starts it under mlx.launch): loads the
tiny kit's target sharded across the ranks (the draft whole) through the mlx-lm engine, runs every
method greedily and one speculative method over many seeds, and (rank 0) writes what it saw as JSON.

    mlx.launch -n 2 --backend ring -- python tests/distributed_ranks.py KIT OUT.json TEMP SEEDS
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GREEDY_PROMPT = [5, 9, 14, 5, 9, 22, 31, 5, 9]  # repeats, so prompt-lookup finds n-grams to propose
SAMPLED_PROMPT = [3, 17, 8]
GREEDY_METHODS = ("baseline", "mlx-lm", "draft", "draft-adaptive", "prompt-lookup")


def main(kit: str, out: str, temp: float, seeds: int) -> None:
    import mlx.core as mx
    import mlx_lm

    from mlxdraft import distributed
    from mlxdraft.engines import get_engine
    from mlxdraft.measure import MeasureSettings
    from mlxdraft.methods import get_method

    current = distributed.world()
    engine = get_engine("mlx-lm")
    plan = distributed.prepare(engine, [f"{kit}/tiny-target"], [f"{kit}/tiny-draft"])
    target = engine.load(engine.resolve(f"{kit}/tiny-target"))
    draft = engine.load(engine.resolve(f"{kit}/tiny-draft"))
    greedy = {}
    for key in GREEDY_METHODS:
        method = get_method(key)
        trace = engine.generate(target, GREEDY_PROMPT, MeasureSettings(max_tokens=16), method,
                                draft=draft if method.needs_draft else None, num_draft_tokens=3)
        greedy[key] = trace.token_ids
    # how far the sharded logits are from the whole model's along the greedy sequence (all-reduce order)
    whole, _ = mlx_lm.load(f"{kit}/tiny-target")
    sequence = mx.array([GREEDY_PROMPT + greedy["baseline"]])
    sharded_logits = target.model(sequence)[0].astype(mx.float32)
    whole_logits = whole(sequence)[0].astype(mx.float32)
    top2 = mx.sort(whole_logits, axis=-1)[:, -2:]
    deviation = mx.max(mx.abs(sharded_logits - whole_logits)).item()
    margin = mx.min(top2[:, 1] - top2[:, 0]).item()
    sampled = []
    method = get_method("draft")
    for seed in range(seeds):
        trace = engine.generate(target, SAMPLED_PROMPT, MeasureSettings(max_tokens=2, temp=temp, seed=seed), method,
                                draft=draft, num_draft_tokens=2)
        sampled.append(trace.token_ids[:2])
    if current.is_leader:
        Path(out).write_text(json.dumps({"world_size": current.size, "sharding": plan.sharding, "greedy": greedy,
                                         "max_logit_deviation": deviation, "min_argmax_margin": margin,
                                         "sampled": sampled}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
