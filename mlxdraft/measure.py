"""What one generation measured (RunSample), built from an engine's trace, and the stream of
interleaved measurements (A B C A B C ...) that lets slow drift hit every variant alike.

The engine reads the clocks; this module turns what it saw into the figures every result holds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import InvalidInputError
from .prompts import Prompt
from .sampling import Sampling

if TYPE_CHECKING:  # the measuring side's types; `results` and the report side import this module without `methods`
    from .methods import Method

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
    top_p: float = 1.0  # nucleus sampling at temp > 0 (1.0 = off), as mlx-lm's --top-p
    top_k: int = 0  # 0 = off, as mlx-lm's --top-k
    min_p: float = 0.0  # 0 = off, as mlx-lm's --min-p
    seed: int = 0  # every generation draws from its own random stream, mx.random.key(seed)
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
        if not 0 <= self.top_p <= 1:
            raise InvalidInputError(f"--top-p must be between 0 and 1 (got {self.top_p})")
        if self.top_k < 0:
            raise InvalidInputError(f"--top-k cannot be negative (got {self.top_k})")
        if not 0 <= self.min_p <= 1:
            raise InvalidInputError(f"--min-p must be between 0 and 1 (got {self.min_p})")

    @property
    def sampling(self) -> Sampling:
        return Sampling(temp=self.temp, top_p=self.top_p, top_k=self.top_k, min_p=self.min_p)

    @classmethod
    def from_dict(cls, data: dict) -> MeasureSettings:
        """Settings as stored; fields added later take their defaults in older files."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


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

    num_draft_tokens: int  # k; 0 for the baseline
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
    peak_memory_gb: float | None  # None: the engine does not measure it (capabilities.peak_memory)
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
    from_draft: list[bool] | None = None  # per-token flags (schema-1 files and mlx-lm runs of 0.2.0)
    method: str = ""  # the method key ("baseline", "mlx-lm", ...); "" in older files: see __post_init__
    rounds: list[list[int]] | None = None  # every round as [proposed, accepted, complete (0/1)]
    draft_s: float | None = None  # time a draft model spent drafting, when measured (None without one)
    target_s: float | None = None  # time spent in the target's verify passes, when measured
    # Each emitted token's piece of the text (joined: the generated text), so that a report can
    # show which tokens the draft supplied without a tokenizer (accepted.sample_segments). Kept
    # for the first pass of speculative runs only, to keep files small; None in older files.
    token_texts: list[str] | None = None
    # 0 for the first run of its unit (prompt x pass), 1 for the next, ...: the order the unit's variants ran in
    # (module `order`); None in files from before the order was randomised (the baseline ran first)
    position: int | None = None

    def __post_init__(self):
        if not self.method:  # files written before methods existed: k = 0 was the baseline
            self.method = "baseline" if self.num_draft_tokens == 0 else "mlx-lm"

    @property
    def is_baseline(self) -> bool:
        return self.method == "baseline"

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
    complete: bool = True  # not shortened by max-tokens, and ended with the target's own token


class RoundTokens(list):
    """One round's token ids as an engine passes them to `on_round` (a list, so callers that only count
    or read ids need nothing more); `texts`, when not None, is each token's piece of the text as the engine
    itself produced it (llama.cpp streams text for tokens whose ids it holds back until the run ends)."""

    def __init__(self, tokens, texts: list[str] | None = None):
        super().__init__(tokens)
        self.texts = texts


@dataclass
class Trace:
    """What an engine saw during one generation: the tokens, when each round ended, and each
    round's proposed and accepted counts as the method reported them."""

    token_ids: list[int]
    round_sizes: list[int]  # tokens emitted by each round (one per round for plain decoding)
    round_end_s: list[float]  # seconds from the call to the end of each round
    rounds: list[VerifyRound]  # speculative rounds (empty for plain decoding)
    peak_memory_gb: float | None  # None when the engine does not measure it
    finish_reason: str  # "length" or "stop" (EOS)
    draft_s: float | None = None  # drafting time summed over rounds, when the method measures it
    target_s: float | None = None  # the target's verify time summed over rounds, when measured
    token_texts: list[str] | None = None  # each token's piece of the text, when the engine decodes


def sample_from_trace(trace: Trace, method: str, num_draft_tokens: int, prompt_tokens: int,
                      prompt_index: int = 0, category: str = "custom", pass_index: int = 0) -> RunSample:
    """The measured figures of one generation. The first round ends at the first token the target
    produced itself (prefill and the first verify); decode is everything after it."""
    generated = len(trace.token_ids)
    ttft_s = trace.round_end_s[0] if trace.round_end_s else 0.0
    wall_s = trace.round_end_s[-1] if trace.round_end_s else 0.0
    decode_tokens = generated - (trace.round_sizes[0] if trace.round_sizes else 0)
    decode_s = wall_s - ttft_s
    speculative = method != "baseline"
    sample = RunSample(
        num_draft_tokens=num_draft_tokens if speculative else 0,
        prompt_index=prompt_index,
        category=category,
        pass_index=pass_index,
        prompt_tokens=prompt_tokens,
        generated_tokens=generated,
        ttft_s=ttft_s,
        prefill_tps=prompt_tokens / ttft_s if ttft_s > 0 else 0.0,
        decode_tokens=decode_tokens,
        decode_s=decode_s,
        decode_tps=decode_tokens / decode_s if decode_tokens > 0 and decode_s > 0 else None,
        wall_s=wall_s,
        peak_memory_gb=trace.peak_memory_gb,
        finish_reason=trace.finish_reason,
        token_ids=list(trace.token_ids),
        method=method,
        draft_s=trace.draft_s,
        target_s=trace.target_s,
    )
    if speculative:
        add_round_counts(sample, trace.rounds, num_draft_tokens)
        sample.draft_tokens = sum(r.accepted for r in trace.rounds)
        sample.rounds = [[r.proposed, r.accepted, int(r.complete)] for r in trace.rounds]
        if pass_index == 0 and trace.token_texts is not None:
            sample.token_texts = list(trace.token_texts)
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
    """One way of generating with a target: a method, with its draft model and k when it takes them."""

    method: Method
    draft: object | None = None  # LoadedModel
    num_draft_tokens: int = 0

    @property
    def key(self) -> tuple[str, int]:
        return (self.method.key, self.num_draft_tokens)

    @property
    def label(self) -> str:
        return f"{self.method.key} k={self.num_draft_tokens}" if self.method.uses_k else self.method.key


def iter_interleaved_runs(engine, target, variants: list[Variant], prompts: list[Prompt],
                          encoded: list[list[int]], settings: MeasureSettings, skip: int = 0,
                          params: dict[str, dict] | None = None, watch=None, order=None) -> Iterator[RunSample]:
    """Yield RunSamples: warmups first (not yielded), then for every pass and prompt one run of each
    variant in turn (A B C A B C ...), so slow drift of the machine hits all of them alike. `order(unit,
    variants)`, when given, returns the variants in the order to run them in that unit (`order.unit_order`), and
    each sample records its position there; without it every unit runs them as given.
    `skip` leaves out the first runs of that order (already measured, when resuming); `params`
    holds each method's parameters by key; `watch(what)`, when given, returns a callback for the
    engine to call after every round of the generation described by `what` (progress)."""
    params = params or {}
    warm_up(engine, target, variants, encoded[0], settings, params, watch)
    slot = 0
    for pass_index in range(settings.runs):
        for prompt_index, (prompt, prompt_ids) in enumerate(zip(prompts, encoded)):
            ordered = order((prompt_index, pass_index), variants) if order else variants
            for position, variant in enumerate(ordered):
                slot += 1
                if slot <= skip:
                    continue
                sample = measure_run(engine, target, variant, prompt, prompt_ids, prompt_index, pass_index, settings,
                                     params.get(variant.method.key), watch)
                sample.position = position if order else None
                yield sample


def warm_up(engine, target, variants: list[Variant], prompt_ids: list[int], settings: MeasureSettings,
            params: dict[str, dict] | None = None, watch=None) -> None:
    """settings.warmup short, unmeasured generations of each variant, so that every code path runs once."""
    params, watch = params or {}, watch or (lambda what: None)
    for round_index in range(settings.warmup):
        for variant in variants:
            engine.generate(target, prompt_ids, settings, variant.method, variant.draft, variant.num_draft_tokens,
                            max_tokens=min(settings.max_tokens, WARMUP_MAX_TOKENS),
                            params=params.get(variant.method.key),
                            on_round=watch(f"warmup {round_index + 1}/{settings.warmup}, {variant.label}"))


def measure_run(engine, target, variant: Variant, prompt: Prompt, prompt_ids: list[int], prompt_index: int,
                pass_index: int, settings: MeasureSettings, params: dict | None = None, watch=None) -> RunSample:
    """One measured generation of one variant on one prompt."""
    on_round = watch(f"prompt {prompt_index + 1}, {variant.label}") if watch else None
    trace = engine.generate(target, prompt_ids, settings, variant.method, variant.draft, variant.num_draft_tokens,
                            params=params, on_round=on_round)
    return sample_from_trace(trace, variant.method.key, variant.num_draft_tokens, len(prompt_ids), prompt_index,
                             prompt.category, pass_index)
