"""Timing one generation, plain or speculative, with mlx-lm's own `stream_generate`, and
streaming interleaved measurements (A B A B ...) so that drift hits every variant alike.

This module owns every measured number: the clocks are read here and nowhere else.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from .errors import InvalidInputError
from .prompts import Prompt, encode_prompt

WARMUP_MAX_TOKENS = 8  # enough to run every code path (prefill, verify, decode) once
MAX_TOKENS_LIMIT = 100_000
MAX_RUNS = 1000
MAX_WARMUP = 100


@dataclass(frozen=True)
class MeasureSettings:
    """How every generation is run. Part of every results file."""

    max_tokens: int = 128  # tokens generated per run
    runs: int = 1  # passes over the prompt suite (each pass runs every prompt once per variant)
    warmup: int = 1  # generations per variant before measuring, discarded
    temp: float = 0.0  # 0 = greedy, which makes speculative output checkable for losslessness
    seed: int = 0  # mx.random seed set before every generation
    fixed_length: bool = True  # ignore EOS so every run generates exactly max_tokens

    def validate(self) -> None:
        if self.max_tokens < 1:
            raise InvalidInputError(f"--max-tokens must be at least 1 (got {self.max_tokens})")
        if self.max_tokens > MAX_TOKENS_LIMIT:
            raise InvalidInputError(f"--max-tokens can be at most {MAX_TOKENS_LIMIT} (got {self.max_tokens})")
        if self.runs < 1:
            raise InvalidInputError(f"--runs must be at least 1 (got {self.runs})")
        if self.runs > MAX_RUNS:
            raise InvalidInputError(f"--runs can be at most {MAX_RUNS} (got {self.runs})")
        if self.warmup < 0:
            raise InvalidInputError(f"--warmup cannot be negative (got {self.warmup})")
        if self.warmup > MAX_WARMUP:
            raise InvalidInputError(f"--warmup can be at most {MAX_WARMUP} (got {self.warmup})")
        if not math.isfinite(self.temp) or self.temp < 0:
            raise InvalidInputError(f"--temp must be a finite number, 0 or more (got {self.temp})")


def check_num_draft_tokens(values) -> list[int]:
    values = list(values)
    if not values:
        raise InvalidInputError("give at least one number of draft tokens (-k), for example -k 4")
    for k in values:
        if k < 1:
            raise InvalidInputError(f"--num-draft-tokens must be at least 1 (got {k})")
    return values


@dataclass
class RunSample:
    """One measured generation. Raw data: statistics are derived from lists of these."""

    num_draft_tokens: int  # 0 for the baseline (no draft)
    prompt_index: int
    category: str
    pass_index: int
    prompt_tokens: int
    generated_tokens: int
    ttft_s: float  # from the call until the first token (prefill and the first round)
    prefill_tps: float  # prompt_tokens / ttft_s
    decode_tokens: int  # tokens after the first round
    decode_s: float  # time from the end of the first round to the last token
    decode_tps: float | None  # decode_tokens / decode_s; None when there was no decode phase
    wall_s: float
    peak_memory_gb: float
    finish_reason: str
    token_ids: list[int]
    draft_tokens: int = 0  # emitted tokens that came from the draft
    # Verify-round counts cover complete rounds only: the full k proposed and the target's own token
    # emitted. A last round cut short by max-tokens or EOS says nothing about rejection; it is
    # counted in partial_rounds and left out of every round statistic (numerator and denominator).
    proposed_draft_tokens: int = 0
    accepted_draft_tokens: int = 0
    verify_rounds: int = 0
    accepted_length_counts: list[int] = field(default_factory=list)  # index = accepted per round
    partial_rounds: int = 0
    round_tokens: int | None = None  # tokens emitted by the complete rounds (None in schema-1 files)
    from_draft: list[bool] | None = None  # raw per-token flags, so rounds can be rebuilt later

    @property
    def is_baseline(self) -> bool:
        return self.num_draft_tokens == 0

    @property
    def draft_token_share(self) -> float | None:
        """Emitted tokens that came from the draft / all emitted tokens."""
        if self.is_baseline or not self.generated_tokens:
            return None
        return self.draft_tokens / self.generated_tokens

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted draft tokens / proposed draft tokens."""
        if self.is_baseline or not self.proposed_draft_tokens:
            return None
        return self.accepted_draft_tokens / self.proposed_draft_tokens

    @property
    def tokens_per_round(self) -> float | None:
        """Tokens emitted per complete verify round (at most k + 1)."""
        if self.is_baseline or not self.verify_rounds:
            return None
        tokens = self.generated_tokens if self.round_tokens is None else self.round_tokens
        return tokens / self.verify_rounds

    @property
    def e2e_tps(self) -> float | None:
        """End-to-end speed: generated tokens / time from the call to the last token."""
        if not self.generated_tokens or self.wall_s <= 0:
            return None
        return self.generated_tokens / self.wall_s


@dataclass(frozen=True)
class VerifyRound:
    proposed: int
    accepted: int
    complete: bool = True  # the full k was proposed and the round ended with the target's own token


def reconstruct_rounds(from_draft: list[bool], num_draft_tokens: int, max_tokens: int) -> list[VerifyRound]:
    """Rebuild the verify rounds of a speculative run from mlx-lm's `from_draft` flags.

    Each round emits its accepted draft tokens (True) and then one token of the target's own
    (False). mlx-lm asks the draft for min(k, tokens still allowed). A round is complete when it
    proposed the full k and ended with the target's token; a round that proposed fewer (cut by
    max_tokens) or stopped before the target's token (max_tokens or EOS reached among accepted
    drafts) is partial: it is returned, marked, so that round statistics can leave it out.
    """
    rounds = []
    emitted = 0
    accepted = 0
    for flag in from_draft:
        if flag:
            accepted += 1
            continue
        proposed = min(num_draft_tokens, max_tokens - emitted)
        rounds.append(VerifyRound(proposed, accepted, complete=proposed == num_draft_tokens))
        emitted += accepted + 1
        accepted = 0
    if accepted:
        rounds.append(VerifyRound(min(num_draft_tokens, max_tokens - emitted), accepted, complete=False))
    return rounds


@contextlib.contextmanager
def eos_ignored(tokenizer, enabled: bool):
    """Temporarily make mlx-lm's stream_generate blind to EOS (fixed-length runs)."""
    if not enabled:
        yield
        return
    saved = set(tokenizer.eos_token_ids)
    tokenizer.eos_token_ids = set()
    try:
        yield
    finally:
        tokenizer.eos_token_ids = saved


def measure_generation(
    target,
    prompt_ids: list[int],
    settings: MeasureSettings,
    draft=None,
    num_draft_tokens: int = 0,
    prompt_index: int = 0,
    category: str = "custom",
    pass_index: int = 0,
    max_tokens: int | None = None,
) -> RunSample:
    """Run one generation through mlx-lm's stream_generate and measure it."""
    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    max_tokens = max_tokens or settings.max_tokens
    extra = {}
    if draft is not None:
        extra = {"draft_model": draft.model, "num_draft_tokens": num_draft_tokens}
    token_ids: list[int] = []
    flags: list[bool] = []
    stamps: list[float] = []
    finish_reason = "length"
    prompt = mx.array(prompt_ids)
    mx.random.seed(settings.seed)
    mx.reset_peak_memory()
    with eos_ignored(target.tokenizer, settings.fixed_length):
        start = time.perf_counter()
        for response in stream_generate(
            target.model,
            target.tokenizer,
            prompt,
            max_tokens=max_tokens,
            sampler=make_sampler(settings.temp),
            **extra,
        ):
            stamps.append(time.perf_counter())
            token_ids.append(int(response.token))
            flags.append(bool(response.from_draft))
            finish_reason = response.finish_reason or finish_reason
    peak_memory_gb = mx.get_peak_memory() / 1e9

    generated = len(stamps)
    # The first round ends at the first token the target produced itself.
    first_round_end = flags.index(False) if False in flags else generated - 1
    decode_tokens = generated - first_round_end - 1
    decode_s = stamps[-1] - stamps[first_round_end]
    ttft_s = stamps[0] - start
    sample = RunSample(
        num_draft_tokens=num_draft_tokens if draft is not None else 0,
        prompt_index=prompt_index,
        category=category,
        pass_index=pass_index,
        prompt_tokens=len(prompt_ids),
        generated_tokens=generated,
        ttft_s=ttft_s,
        prefill_tps=len(prompt_ids) / ttft_s if ttft_s > 0 else 0.0,
        decode_tokens=decode_tokens,
        decode_s=decode_s,
        decode_tps=decode_tokens / decode_s if decode_tokens > 0 and decode_s > 0 else None,
        wall_s=stamps[-1] - start,
        peak_memory_gb=peak_memory_gb,
        finish_reason=finish_reason,
        token_ids=token_ids,
    )
    if draft is not None:
        add_round_counts(sample, reconstruct_rounds(flags, num_draft_tokens, max_tokens), num_draft_tokens)
        sample.draft_tokens = sum(flags)
        sample.from_draft = flags
    return sample


def add_round_counts(sample: RunSample, rounds: list[VerifyRound], num_draft_tokens: int) -> None:
    """Fill a speculative sample's round statistics from its rounds (complete ones only)."""
    complete = [r for r in rounds if r.complete]
    counts = [0] * (num_draft_tokens + 1)
    for verify_round in complete:
        counts[verify_round.accepted] += 1
    sample.proposed_draft_tokens = sum(r.proposed for r in complete)
    sample.accepted_draft_tokens = sum(r.accepted for r in complete)
    sample.verify_rounds = len(complete)
    sample.accepted_length_counts = counts
    sample.partial_rounds = len(rounds) - len(complete)
    sample.round_tokens = sum(r.accepted + 1 for r in complete)


@dataclass(frozen=True)
class Variant:
    """One way of generating with a target: plain (draft None) or with a draft and k."""

    draft: object | None = None  # LoadedModel
    num_draft_tokens: int = 0


def iter_interleaved_runs(
    target, variants: list[Variant], prompts: list[Prompt], settings: MeasureSettings, skip: int = 0
) -> Iterator[RunSample]:
    """Yield RunSamples: warmups first (not yielded), then for every pass and prompt one run of
    each variant in turn (A B C A B C ...), so slow drift of the machine hits all of them.
    `skip` leaves out the first runs of that order (already measured, when resuming)."""
    encoded = [encode_prompt(target.tokenizer, prompt) for prompt in prompts]
    for _ in range(settings.warmup):
        for variant in variants:
            measure_generation(
                target, encoded[0], settings, variant.draft, variant.num_draft_tokens,
                max_tokens=min(settings.max_tokens, WARMUP_MAX_TOKENS),
            )
    slot = 0
    for pass_index in range(settings.runs):
        for prompt_index, (prompt, prompt_ids) in enumerate(zip(prompts, encoded)):
            for variant in variants:
                slot += 1
                if slot <= skip:
                    continue
                yield measure_generation(
                    target, prompt_ids, settings, variant.draft, variant.num_draft_tokens,
                    prompt_index=prompt_index, category=prompt.category, pass_index=pass_index,
                )
