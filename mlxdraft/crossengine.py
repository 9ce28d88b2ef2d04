"""Engines side by side: for each target size and bit width that more than one engine measured (mlx-lm's
smollm2:fp16 beside llama.cpp's smollm2:f16), each engine's baseline speed, its best speculative setup and that
setup's speedup, the memory it took, and the ratio between the engines with its interval.

The ratio between two engines comes from per-prompt paired log ratios like every speedup here (`stats`): per unit
(prompt, pass), engine B's speed / engine A's, then per prompt the median of its passes ("workload": prompts like
these) or per run ("suite"), and a t-interval on their logs. The two engines' runs of a unit are the same prompt
and pass, but they were measured one after the other (`PlanRecord.engine_order`), not back to back: drift between
the two engines' turns is in the ratio, and the report says so.

Read from the results file alone (an `analysis.SweepAnalysis`): this module imports neither methods nor engines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .analysis import SweepAnalysis, SweepCase, label, setup_label, unit_of
from .precision import bits_word
from .stats import RatioEstimate, Summary, estimate_ratio, per_prompt, ratio_digits, summarize

ORDER_TEXTS = {
    "sequential": "measured one engine after the other on the same prompts (not interleaved per prompt), so the "
                  "ratio between engines also holds any drift between their turns",
    "interleaved": "measured interleaved per prompt, both engines loaded",
}


@dataclass
class EngineFigures:
    """One engine's target in a row: its baseline, its best speculative setup and the memory they took."""

    engine: str
    target: str
    baseline_decode_tps: Summary | None
    baseline_e2e_tps: Summary | None
    best: SweepCase | None  # the verdict's chosen setup, else its leader (the highest geometric mean)
    best_speedup: RatioEstimate | None  # the verdict's estimate: widened for every setup compared
    verdict: str  # the target's verdict ("speculative", "no-gain", "inconclusive", "not measured")
    alone_peak_memory_gb: float | None
    best_peak_memory_gb: float | None

    @property
    def best_label(self) -> str:
        return self.best.label if self.best else "none measured"

    def to_dict(self) -> dict:
        best = self.best
        return {"engine": self.engine, "target": self.target,
                "baseline_decode_tps": self.baseline_decode_tps.to_dict() if self.baseline_decode_tps else None,
                "baseline_e2e_tps": self.baseline_e2e_tps.to_dict() if self.baseline_e2e_tps else None,
                "best": {"method": best.method, "draft": best.draft, "num_draft_tokens": best.num_draft_tokens}
                if best else None,
                "best_speedup": self.best_speedup.to_dict() if self.best_speedup else None,
                "verdict": self.verdict, "alone_peak_memory_gb": self.alone_peak_memory_gb,
                "best_peak_memory_gb": self.best_peak_memory_gb}


@dataclass
class EngineRatio:
    """Engine `engine`'s target against engine `versus`'s, paired by prompt: baseline against baseline, or best
    setup against best setup (each engine's own best: that choice is not accounted for in the interval)."""

    engine: str
    target: str
    versus: str
    versus_target: str
    what: str  # "baseline" or "best"
    objective: str  # "e2e" or "decode"
    estimate: RatioEstimate | None

    def to_dict(self) -> dict:
        return {"engine": self.engine, "target": self.target, "versus": self.versus,
                "versus_target": self.versus_target, "what": self.what, "objective": self.objective,
                "estimate": self.estimate.to_dict() if self.estimate else None}


@dataclass
class CrossEngineRow:
    """One target size and bit width, as each engine measured it."""

    size: str
    bits: str
    figures: list[EngineFigures] = field(default_factory=list)
    ratios: list[EngineRatio] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.size} {self.bits}"

    def ratio(self, what: str, objective: str) -> EngineRatio | None:
        return next((r for r in self.ratios if r.what == what and r.objective == objective), None)

    def to_dict(self) -> dict:
        return {"size": self.size, "bits": self.bits, "figures": [f.to_dict() for f in self.figures],
                "ratios": [r.to_dict() for r in self.ratios]}


@dataclass
class CrossEngine:
    """Every row, and what the ratios rest on."""

    engines: list[str]
    rows: list[CrossEngineRow]
    objective: str
    estimand: str
    order: str  # PlanRecord.engine_order

    @property
    def order_text(self) -> str:
        return ORDER_TEXTS.get(self.order, f"measured {self.order}")

    def unit(self) -> str:
        return "prompts" if self.estimand == "workload" else "runs"

    def to_dict(self) -> dict:
        return {"engines": self.engines, "objective": self.objective, "estimand": self.estimand,
                "order": self.order, "order_text": self.order_text,
                "interval": interval_text(self), "rows": [row.to_dict() for row in self.rows],
                "verdicts": [verdict_line(row, self) for row in self.rows]}


def _size_of(record: dict, target: str) -> str:
    """A target's size for the rows: the model lists' family and size label, else its parameters, else its name."""
    size = record.get("size_label") or (f"{record['params_b']:g}b" if record.get("params_b") else None)
    if size is None:
        return label(target)
    return f"{record['family']} {size}" if record.get("family") else size


def _speeds(samples, metric: str) -> dict:
    """{(prompt, pass): speed}: the geometric mean where a unit was measured more than once (a target's baseline
    beside each of its drafts)."""
    by_unit: dict = {}
    for sample in samples:
        value = getattr(sample, metric)
        if value and value > 0 and math.isfinite(value):
            by_unit.setdefault(unit_of(sample), []).append(math.log(value))
    return {unit: math.exp(sum(logs) / len(logs)) for unit, logs in by_unit.items()}


def _ratio(mine: dict, theirs: dict, estimand: str) -> RatioEstimate | None:
    runs = {unit: mine[unit] / theirs[unit] for unit in mine.keys() & theirs.keys()}
    return estimate_ratio(list((per_prompt(runs) if estimand == "workload" else runs).values()))


def _samples(analysis: SweepAnalysis, target: str, case: SweepCase | None) -> list:
    """A setup's runs (the target's baseline runs, in all its groups, when `case` is None)."""
    groups = [r for r in analysis.results.groups.values() if r.target == target]
    if case is None:
        return [s for r in groups for s in r.samples if s.is_baseline]
    draft = case.draft
    return [s for r in groups if r.draft == draft or (draft is None and analysis.results.kind == "pair")
            for s in r.samples if s.method == case.method and s.num_draft_tokens == case.num_draft_tokens]


def _figures(analysis: SweepAnalysis, target: str, engine: str) -> EngineFigures:
    baseline = _samples(analysis, target, None)
    verdict = analysis.verdict(target)
    best = verdict.chosen or verdict.leader
    peak = best.comparison.speculative_peak_memory_gb if best and best.comparison else None
    return EngineFigures(
        engine=engine, target=target,
        baseline_decode_tps=summarize(s.decode_tps for s in baseline),
        baseline_e2e_tps=summarize(s.e2e_tps for s in baseline),
        best=best, best_speedup=verdict.verdict.estimate if verdict.verdict else None, verdict=verdict.kind,
        alone_peak_memory_gb=analysis.alone_peak_memory_gb(target), best_peak_memory_gb=peak.max if peak else None)


def cross_engine(analysis: SweepAnalysis) -> CrossEngine | None:
    """The engines side by side, per target size and bit width; None for a file of one engine. Rows where only
    one engine measured a target are kept (with no ratio), so that every engine's figures are shown."""
    engines = analysis.engines
    if len(engines) < 2:
        return None
    rows: dict[tuple[str, str], CrossEngineRow] = {}
    for target in analysis.targets:
        if not _samples(analysis, target, None):
            continue
        record = analysis.results.models.get(target, {})
        bits = bits_word(record.get("precision")) or bits_word(record.get("list_precision")) or "?"
        key = (_size_of(record, target), bits)
        row = rows.setdefault(key, CrossEngineRow(*key))
        row.figures.append(_figures(analysis, target, analysis.engine_of(target)))
    rank = {engine: index for index, engine in enumerate(engines)}
    for row in rows.values():
        row.figures.sort(key=lambda f: rank.get(f.engine, len(engines)))
        reference = row.figures[0]
        for other in row.figures[1:]:
            if other.engine == reference.engine:
                continue
            for what in ("baseline", "best"):
                for objective in ("e2e", "decode"):
                    metric = f"{objective}_tps"
                    mine = _speeds(_samples(analysis, other.target, other.best if what == "best" else None), metric)
                    theirs = _speeds(_samples(analysis, reference.target,
                                              reference.best if what == "best" else None), metric)
                    row.ratios.append(EngineRatio(other.engine, other.target, reference.engine, reference.target,
                                                  what, objective, _ratio(mine, theirs, analysis.estimand)))
    return CrossEngine(engines, list(rows.values()), analysis.objective, analysis.estimand,
                       getattr(analysis.plan, "engine_order", None) or "sequential")


def _point(estimate: RatioEstimate) -> str:
    return f"{estimate.geomean:.{ratio_digits(estimate.geomean, estimate.low, estimate.high)}f}x"


def _interval(estimate: RatioEstimate, unit: str = "") -> str:
    """'[1.95, 2.26], n=8 prompts', or '(n=2 prompts, too few for an interval)'."""
    unit = f" {unit}" if unit else ""
    if estimate.low is None:
        return f"(n={estimate.n}{unit}, too few for an interval)"
    digits = ratio_digits(estimate.geomean, estimate.low, estimate.high)
    return f"[{estimate.low:.{digits}f}, {estimate.high:.{digits}f}], n={estimate.n}{unit}"


def _bracket(estimate: RatioEstimate | None) -> str:
    """'2.10x [1.95, 2.26], n=8'."""
    return "n/a" if estimate is None else f"{_point(estimate)} {_interval(estimate)}"


def ratio_cell(ratio: EngineRatio | None) -> str:
    """'2.10x [1.95, 2.26], n=8': engine / reference engine."""
    return _bracket(ratio.estimate) if ratio else "n/a"


def interval_text(cross: CrossEngine) -> str:
    """What a ratio between engines and its interval are, and what they rest on."""
    unit = cross.unit()
    per = ("per prompt, the median of its passes" if cross.estimand == "workload" else "per run (prompt x pass)")
    return (f"ratio between engines = geometric mean of one engine's speed / the other's, paired {per}; [95% "
            f"t-interval on the log ratios], n = the {unit} both engines measured; it covers the spread between "
            f"{unit}, not the choice of each engine's best setup; {cross.order_text}")


def verdict_line(row: CrossEngineRow, cross: CrossEngine) -> str:
    """'llama.cpp's baseline is 2.10x mlx-lm's here [1.95, 2.26] (end to end); its best setup (...) adds 1.30x, ...'."""
    objective = cross.objective
    words = "end to end" if objective == "e2e" else "decode"
    if len(row.figures) < 2 or not row.ratios:
        only = ", ".join(dict.fromkeys(f.engine for f in row.figures))
        return f"{row.name}: only {only} measured this size and bit width; nothing to compare"
    reference = row.figures[0]
    lines = []
    for other in row.figures[1:]:
        if other.engine == reference.engine:  # a second target of the same engine and bit width: not compared here
            continue
        base = next((r for r in row.ratios if r.what == "baseline" and r.objective == objective
                     and r.target == other.target and r.versus_target == reference.target), None)
        best = next((r for r in row.ratios if r.what == "best" and r.objective == objective
                     and r.target == other.target and r.versus_target == reference.target), None)
        if base is None or base.estimate is None:
            lines.append(f"{row.name}: no prompt measured by both {other.engine} and {reference.engine}")
            continue
        unit = cross.unit()

        def adds(figures: EngineFigures, whose: str) -> str:
            if figures.best is None or figures.best_speedup is None:
                return f"{figures.engine} measured no speculative setup"
            return (f"{whose} best setup ({setup_label(figures.best.method, figures.best.draft)} "
                    f"k={figures.best.num_draft_tokens}) adds {_point(figures.best_speedup)} "
                    f"{_interval(figures.best_speedup)}")
        already = " already" if base.estimate.low is not None and base.estimate.low > 1.0 else ""
        text = (f"{row.name}, {words}: {other.engine}'s baseline is{already} {_point(base.estimate)} "
                f"{reference.engine}'s here {_interval(base.estimate, unit)}; {adds(other, 'its')}; "
                f"{adds(reference, reference.engine + chr(39) + 's')}")
        if best is not None and best.estimate is not None and (other.best or reference.best):
            text += (f"; best against best, {other.engine} is {_point(best.estimate)} {reference.engine}'s "
                     f"{_interval(best.estimate, unit)}")
        how = "one engine after the other, not interleaved" if cross.order == "sequential" else cross.order_text
        lines.append(f"{text} (measured {how})")
    return "; ".join(lines) or (f"{row.name}: only {reference.engine} measured this size and bit width; "
                                "nothing to compare")


def memory_text(figures: EngineFigures) -> str:
    """'4.01 GB / 4.51 GB': peak memory of the target alone / of its best setup; n/a where the engine measured none
    (an engine that cannot read its peak records none, or 0)."""
    shown = lambda gb: f"{gb:.2f} GB" if gb else "n/a"  # noqa: E731
    return f"{shown(figures.alone_peak_memory_gb)} / {shown(figures.best_peak_memory_gb)}"


def tps_text(figures: EngineFigures) -> str:
    """'decode / end to end' mean tok/s of the baseline."""
    decode, e2e = figures.baseline_decode_tps, figures.baseline_e2e_tps
    return f"{decode.mean:.1f} / {e2e.mean:.1f}" if decode and e2e else "n/a"


CROSS_HEADERS = ["size / bits", "engine", "target", "baseline tok/s (decode / e2e)", "best setup",
                 "its speedup (verdict's)", "peak memory alone / best", "baseline vs first engine",
                 "best vs first engine"]


def cross_rows(cross: CrossEngine) -> list[list[str]]:
    """One line per engine's target in each row: the table every human format shows."""
    rows = []
    for row in cross.rows:
        for figures in row.figures:
            base = next((r for r in row.ratios if r.what == "baseline" and r.objective == cross.objective
                         and r.target == figures.target), None)
            best = next((r for r in row.ratios if r.what == "best" and r.objective == cross.objective
                         and r.target == figures.target), None)
            ratios = (["1 (reference)"] * 2 if figures is row.figures[0] else [ratio_cell(base), ratio_cell(best)])
            rows.append([row.name, figures.engine, label(figures.target), tps_text(figures), figures.best_label,
                         _bracket(figures.best_speedup) if figures.best else "n/a", memory_text(figures), *ratios])
    return rows


def cross_title(cross: CrossEngine) -> str:
    words = "end to end" if cross.objective == "e2e" else "decode"
    return (f"Engines side by side ({', '.join(cross.engines)}; per target size and bit width; ratios {words}, "
            f"against the first engine listed in each row)")
