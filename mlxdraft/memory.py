"""Memory: this machine's budget for model weights, and what a target + draft pair will need
(weights plus KV caches), estimated from files before anything is loaded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .results import total_memory_gb

BYTES_PER_DTYPE = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class MemoryBudget:
    gb: float
    source: str  # where the number comes from, for the user


def machine_memory_budget() -> MemoryBudget:
    """The budget where the engine knows no better: total RAM."""
    return MemoryBudget(total_memory_gb() or 0.0, "total RAM")


WORKING_OVERHEAD = 1.1  # weights x this: room for activations, KV cache and buffers


def fits(size_gb: float, budget: MemoryBudget) -> bool:
    """Whether weights of `size_gb` (all models that run together) fit the budget."""
    return size_gb * WORKING_OVERHEAD <= budget.gb


def pairs_that_fit(entries, budget: MemoryBudget) -> list[dict]:
    """Target + draft pairs among catalog entries whose weights fit the budget together."""
    from .catalog import sensible_pair

    pairs = []
    for target in (e for e in entries if e.can_target):
        for draft in (e for e in entries if e.can_draft):
            if sensible_pair(target, draft) and fits(target.size_gb + draft.size_gb, budget):
                pairs.append({"target": target.name, "draft": draft.name,
                              "size_gb": round(target.size_gb + draft.size_gb, 2)})
    return pairs


def weights_gb(folder: Path) -> float:
    return sum(f.stat().st_size for f in Path(folder).glob("*.safetensors")) / 1e9


def kv_cache_gb(config: dict, tokens: int) -> float:
    """Keys and values for `tokens` positions in every layer, in the model's float dtype."""
    text = config.get("text_config", config)
    layers = int(text.get("num_hidden_layers", 0))
    heads = int(text.get("num_attention_heads", 1))
    kv_heads = int(text.get("num_key_value_heads", heads))
    head_dim = int(text.get("head_dim") or text.get("hidden_size", 0) // max(heads, 1))
    dtype = str(config.get("torch_dtype") or "float16")
    if config.get("quantization"):
        dtype = "float16"  # quantized checkpoints compute (and cache) in their scale dtype
    return 2 * layers * kv_heads * head_dim * tokens * BYTES_PER_DTYPE.get(dtype, 2) / 1e9


def read_config(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


@dataclass(frozen=True)
class PairEstimate:
    target_weights_gb: float
    draft_weights_gb: float
    kv_cache_gb: float
    overhead_gb: float

    @property
    def total_gb(self) -> float:
        return self.target_weights_gb + self.draft_weights_gb + self.kv_cache_gb + self.overhead_gb


def estimate_pair(target_folder: Path, draft_folder: Path | None, tokens: int) -> PairEstimate:
    """Memory for running target (+ draft) over `tokens` positions, with working room on top."""
    target_config = read_config(target_folder)
    target_weights = weights_gb(target_folder)
    draft_weights = weights_gb(draft_folder) if draft_folder else 0.0
    kv = kv_cache_gb(target_config, tokens)
    if draft_folder:
        kv += kv_cache_gb(read_config(draft_folder), tokens)
    overhead = (WORKING_OVERHEAD - 1) * (target_weights + draft_weights + kv)
    return PairEstimate(target_weights, draft_weights, kv, overhead)
