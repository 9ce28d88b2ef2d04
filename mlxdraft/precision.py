"""One word per bit width across engines, so that an MLX model and a GGUF file of the same width meet in one row:
fp16 for fp16/F16/float16, q8 for 8bit/Q8_0, q4 for 4bit/Q4_0/Q4_K_M. Used by the sweep (to measure such models
one right after the other) and by the cross-engine comparison; imports nothing of mlxdraft."""

from __future__ import annotations

import re


def bits_word(precision: str | None) -> str | None:
    """One word per bit width across engines: fp16 for fp16/F16/float16, q8 for 8bit/Q8_0, q4 for
    4bit/Q4_0/Q4_K_M, bf16, fp32; None when unknown."""
    if not precision:
        return None
    text = str(precision).strip().lower().replace("-", "")
    if text in ("fp16", "f16", "float16", "half"):
        return "fp16"
    if text in ("fp32", "f32", "float32"):
        return "fp32"
    if text in ("bf16", "bfloat16"):
        return "bf16"
    match = re.fullmatch(r"(\d+)bits?", text) or re.fullmatch(r"i?q(\d+)(?:_[a-z0-9_]*)?", text)
    return f"q{match.group(1)}" if match else text
