"""The order of runs within a unit (one prompt in one pass): randomised, seeded by the plan, and recorded on
every run (`RunSample.position`), so that a cold first run or a carry-over from the previous run lands on
every variant alike, as noise, instead of always on the baseline, as a bias no interval can see; and the
order-effect check that reads it back (first position against later ones, per variant).

The permutation of a unit depends only on the plan's seed, the group, the unit and the variants run in it, so
`--resume` measures a unit cut short again in the same order. Files from before the order was randomised have no
positions (their units ran the baseline first, then k ascending); they load and resume all the same, and the
check says nothing about them.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import asdict, dataclass

from .stats import t_quantile

DESIGN = "random"  # each unit's variants in a seeded random order (a permutation per unit)


def unit_order(seed: int, group: str, unit: tuple[int, int], variants: list) -> list:
    """`variants` (the baseline's and the setups', each a (method, k) key or anything with a stable repr) in the
    order to run them in this unit: a permutation drawn from the plan's seed, the group and the unit."""
    rng = random.Random(f"order|{seed}|{group}|{unit[0]}|{unit[1]}|{len(variants)}")
    order = list(variants)
    rng.shuffle(order)
    return order


@dataclass
class OrderEffect:
    """How much faster a variant's runs were in the first position of their unit than in later ones: the
    geometric-mean ratio first / later of each run's speed relative to its unit's (the mean log speed of all runs
    of that unit), with a 95% Welch t-interval. Below 1.00x: the first run of a unit is slower (a cold start)."""

    method: str  # "all" for every variant pooled
    num_draft_tokens: int
    first_runs: int
    later_runs: int
    ratio: float
    low: float | None
    high: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def _welch(first: list[float], later: list[float], confidence: float) -> tuple[float, float | None, float | None]:
    difference = statistics.fmean(first) - statistics.fmean(later)
    if len(first) < 2 or len(later) < 2:
        return math.exp(difference), None, None
    va, vb = statistics.variance(first) / len(first), statistics.variance(later) / len(later)
    if va + vb <= 0:
        return math.exp(difference), math.exp(difference), math.exp(difference)
    df = max(1, math.floor((va + vb) ** 2 / (va ** 2 / (len(first) - 1) + vb ** 2 / (len(later) - 1))))
    half = t_quantile(1.0 - (1.0 - confidence) / 2.0, df) * math.sqrt(va + vb)
    return math.exp(difference), math.exp(difference - half), math.exp(difference + half)


def order_effect(samples, metric: str = "decode_tps", confidence: float = 0.95) -> dict:
    """`samples`: one group's runs (a list of RunSamples, as `GroupRecord.samples`), or several groups' (a list of
    such lists: a unit is a prompt and pass within its group). Per variant ((method, k), the baseline
    ("baseline", 0)) and for all pooled (("all", 0)), an OrderEffect:
    its runs in the first position of their unit against its runs in later positions, each run's log speed taken
    relative to the mean log speed of its unit (which removes the prompt and the moment; under a random order the
    variants' own speeds cancel out too, and a first-run slowdown of d shows as about 1 - d). Only runs with a
    recorded position count, in units of two runs or more; a variant never (or always) first has no entry."""
    samples = list(samples)
    groups = samples if samples and isinstance(samples[0], (list, tuple)) else [samples]
    units: dict = {}
    for group, runs in enumerate(groups):
        for sample in runs:
            value = getattr(sample, metric, None)
            if getattr(sample, "position", None) is None or not value or value <= 0 or not math.isfinite(value):
                continue
            units.setdefault((group, sample.prompt_index, sample.pass_index), []).append(sample)
    residuals: dict = {}  # key -> ([first], [later])
    for runs in units.values():
        if len(runs) < 2:
            continue
        logs = [math.log(getattr(run, metric)) for run in runs]
        mean = statistics.fmean(logs)
        for run, log in zip(runs, logs):
            for key in ((run.method, run.num_draft_tokens), ("all", 0)):
                residuals.setdefault(key, ([], []))[0 if run.position == 0 else 1].append(log - mean)
    effects = {}
    for key, (first, later) in residuals.items():
        if first and later:
            ratio, low, high = _welch(first, later, confidence)
            effects[key] = OrderEffect(key[0], key[1], len(first), len(later), ratio, low, high)
    return effects
