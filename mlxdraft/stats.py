"""Statistics derived from raw RunSamples: mean ± σ, ranges, speedups with error bars and
bootstrap intervals, outliers, losslessness. Pure functions; nothing here is measured."""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import asdict, dataclass, field

BOOTSTRAP_RESAMPLES = 2000


@dataclass
class Summary:
    mean: float
    stdev: float  # sample standard deviation; 0 when n == 1
    min: float
    max: float
    n: int
    outliers: int = 0  # values more than 3.5 robust z-scores from the median

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(values) -> Summary | None:
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    return Summary(
        mean=statistics.fmean(values),
        stdev=statistics.stdev(values) if len(values) > 1 else 0.0,
        min=min(values),
        max=max(values),
        n=len(values),
        outliers=len(find_outliers(values)),
    )


def find_outliers(values: list[float], threshold: float = 3.5) -> list[int]:
    """Indices whose modified z-score (median / MAD) exceeds `threshold`."""
    if len(values) < 3:
        return []
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    if mad == 0:
        return []
    return [i for i, v in enumerate(values) if 0.6745 * abs(v - median) / mad > threshold]


@dataclass
class Speedup:
    """speculative / baseline mean decode tok/s."""

    ratio: float
    stdev: float  # relative errors of both means added in quadrature
    ci_low: float | None = None  # 95% bootstrap interval, when both sides have >= 3 runs
    ci_high: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def compute_speedup(baseline: list[float], speculative: list[float], seed: int = 0) -> Speedup | None:
    """Ratio of means with its error bar. When the two lists are paired run by run (same length,
    same order), the bootstrap resamples pairs; otherwise each side independently."""
    base, spec = summarize(baseline), summarize(speculative)
    if base is None or spec is None or base.mean <= 0:
        return None
    ratio = spec.mean / base.mean
    relative = math.hypot(base.stdev / base.mean, spec.stdev / spec.mean if spec.mean else 0.0)
    result = Speedup(ratio=ratio, stdev=ratio * relative)
    if base.n >= 3 and spec.n >= 3:
        result.ci_low, result.ci_high = _bootstrap_ratio(list(baseline), list(speculative), seed)
    return result


def _bootstrap_ratio(baseline: list[float], speculative: list[float], seed: int) -> tuple[float, float]:
    rng = random.Random(seed)
    paired = len(baseline) == len(speculative)
    ratios = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        if paired:
            picks = [rng.randrange(len(baseline)) for _ in baseline]
            base = [baseline[i] for i in picks]
            spec = [speculative[i] for i in picks]
        else:
            base = rng.choices(baseline, k=len(baseline))
            spec = rng.choices(speculative, k=len(speculative))
        ratios.append(statistics.fmean(spec) / statistics.fmean(base))
    ratios.sort()
    return ratios[int(0.025 * len(ratios))], ratios[int(0.975 * len(ratios)) - 1]


@dataclass
class Losslessness:
    """Whether speculative token ids equal the baseline's, run for run."""

    checked: bool  # False when sampling (temp > 0) makes the comparison meaningless
    identical: bool | None
    runs_compared: int = 0
    runs_diverged: int = 0
    first_divergence: dict | None = None  # prompt_index, pass_index, token_index

    def to_dict(self) -> dict:
        return asdict(self)


def first_divergence(a: list[int], b: list[int]) -> int | None:
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def compare_outputs(baseline_samples, speculative_samples, greedy: bool) -> Losslessness:
    if not greedy:
        return Losslessness(checked=False, identical=None)
    reference = {(s.prompt_index, s.pass_index): s.token_ids for s in baseline_samples}
    result = Losslessness(checked=True, identical=True)
    for sample in speculative_samples:
        expected = reference.get((sample.prompt_index, sample.pass_index))
        if expected is None:
            continue
        result.runs_compared += 1
        index = first_divergence(expected, sample.token_ids)
        if index is not None:
            result.runs_diverged += 1
            if result.identical:
                result.identical = False
                result.first_divergence = {
                    "prompt_index": sample.prompt_index,
                    "pass_index": sample.pass_index,
                    "token_index": index,
                }
    return result


@dataclass
class Comparison:
    """Everything derived from the baseline and speculative samples of one (target, draft, k)."""

    num_draft_tokens: int
    baseline_decode_tps: Summary | None
    speculative_decode_tps: Summary | None
    speedup: Speedup | None
    acceptance_rate: Summary | None
    draft_token_share: Summary | None
    tokens_per_round: Summary | None
    accepted_length_counts: list[int]
    baseline_ttft_s: Summary | None
    speculative_ttft_s: Summary | None
    baseline_prefill_tps: Summary | None
    baseline_peak_memory_gb: Summary | None
    speculative_peak_memory_gb: Summary | None
    lossless: Losslessness
    per_category: dict = field(default_factory=dict)  # category -> {speedup, acceptance_rate}

    def to_dict(self) -> dict:
        return asdict(self)


def compare(baseline_samples, speculative_samples, num_draft_tokens: int, greedy: bool, seed: int = 0,
            with_categories: bool = True) -> Comparison:
    """Derive a Comparison; both sample lists are in run order (paired when interleaved)."""
    histogram = [0] * (num_draft_tokens + 1)
    for sample in speculative_samples:
        for accepted, count in enumerate(sample.accepted_length_counts):
            histogram[accepted] += count
    per_category = {}
    if with_categories:
        categories = sorted({s.category for s in speculative_samples})
        if len(categories) > 1:
            for category in categories:
                sub = compare(
                    [s for s in baseline_samples if s.category == category],
                    [s for s in speculative_samples if s.category == category],
                    num_draft_tokens, greedy, seed, with_categories=False,
                )
                per_category[category] = {
                    "speedup": sub.speedup.to_dict() if sub.speedup else None,
                    "acceptance_rate": sub.acceptance_rate.to_dict() if sub.acceptance_rate else None,
                }
    return Comparison(
        num_draft_tokens=num_draft_tokens,
        baseline_decode_tps=summarize(s.decode_tps for s in baseline_samples),
        speculative_decode_tps=summarize(s.decode_tps for s in speculative_samples),
        speedup=compute_speedup(
            [s.decode_tps for s in baseline_samples if s.decode_tps is not None],
            [s.decode_tps for s in speculative_samples if s.decode_tps is not None],
            seed,
        ),
        acceptance_rate=summarize(s.acceptance_rate for s in speculative_samples),
        draft_token_share=summarize(s.draft_token_share for s in speculative_samples),
        tokens_per_round=summarize(s.tokens_per_round for s in speculative_samples),
        accepted_length_counts=histogram,
        baseline_ttft_s=summarize(s.ttft_s for s in baseline_samples),
        speculative_ttft_s=summarize(s.ttft_s for s in speculative_samples),
        baseline_prefill_tps=summarize(s.prefill_tps for s in baseline_samples),
        baseline_peak_memory_gb=summarize(s.peak_memory_gb for s in baseline_samples),
        speculative_peak_memory_gb=summarize(s.peak_memory_gb for s in speculative_samples),
        lossless=compare_outputs(baseline_samples, speculative_samples, greedy),
        per_category=per_category,
    )
