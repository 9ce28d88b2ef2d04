"""The sweep report as CSV: one row per (target, method, draft, k), pruned or not, both speedups with their
bounds and both variants' time to first token.

Each row's bounds are that setup's own 95% interval, not adjusted for the other rows (columns ending in
`_unadjusted`): with many rows, some exclude 1.0 by chance. `estimand` says what they are about and `n` what
they rest on: prompts ("workload", prompts like these) or runs ("suite", these exact prompts); `prompts` and
`runs` count the paired prompts and runs. The speedup model is fitted to the runs at the largest k: there
`predicted_is_anchor` is true and its figures are that measurement, not a prediction.

A file of several engines gets a first column `table` ("case" for the rows above, "cross-engine" for one row per
engine's target in each size and bit width: its baseline, its best setup and the ratios against the first engine
of that row, `crossengine`) and the columns `engine` and CROSS_COLUMNS after the others; a file of one engine is
written as before."""

from __future__ import annotations

import csv
import io

from ..analysis import SweepAnalysis
from ..crossengine import cross_engine
from .common import is_anchor


def render_csv(analysis: SweepAnalysis, metric: str = "speedup") -> str:
    return _sweep_csv(analysis)


CSV_COLUMNS = [
    "target", "method", "draft", "num_draft_tokens", "status", "reason", "estimand", "n", "prompts", "runs",
    "e2e_speedup", "e2e_speedup_low_unadjusted", "e2e_speedup_high_unadjusted",
    "decode_speedup", "decode_speedup_low_unadjusted", "decode_speedup_high_unadjusted",
    "baseline_decode_tps", "speculative_decode_tps", "baseline_e2e_tps", "speculative_e2e_tps",
    "acceptance_rate", "draft_token_share", "tokens_per_round", "partial_rounds", "lossless",
    "target_alone_peak_memory_gb", "speculative_peak_memory_gb",
    "baseline_ttft_s", "speculative_ttft_s", "pruned", "pruned_after_units", "pruned_reason",
    "e2e_outlier_runs", "decode_outlier_runs",
    "predicted_is_anchor", "predicted_decode_speedup", "predicted_decode_speedup_low_unadjusted",
    "predicted_decode_speedup_high_unadjusted", "predicted_e2e_speedup",
]


CROSS_COLUMNS = [
    "size", "bits", "versus_engine", "versus_target", "verdict", "best_speedup", "best_speedup_low",
    "best_speedup_high", "best_speedup_objective",
    *[f"{what}_ratio_{objective}{end}" for what in ("baseline", "best") for objective in ("e2e", "decode")
      for end in ("", "_low", "_high", "_n")],
    "engine_order",
]


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _runs(units) -> str:
    """Outlier runs as 'prompt:pass' (both counted from 1), separated by spaces."""
    return " ".join(f"{prompt + 1}:{pass_index + 1}" for prompt, pass_index in units)


def _sweep_csv(analysis: SweepAnalysis) -> str:
    buffer = io.StringIO()
    cross = cross_engine(analysis)
    plain = csv.writer(buffer, lineterminator="\n")
    writer = plain if cross is None else _CaseWriter(plain, analysis)
    plain.writerow(CSV_COLUMNS if cross is None else ["table", *CSV_COLUMNS, "engine", *CROSS_COLUMNS])
    for case in analysis.cases:
        if cross is not None:
            writer.case = case
        c = case.comparison
        mean = lambda s: _fmt(s.mean if s else None)  # noqa: E731
        estimate = lambda e: [_fmt(e.geomean), _fmt(e.low), _fmt(e.high)] if e else ["", "", ""]  # noqa: E731
        prompts = len({unit[0] if isinstance(unit, tuple) else unit for unit in case.ratios.get("e2e", {})})
        writer.writerow([
            case.target, case.method, case.draft or "", case.num_draft_tokens or "", case.status, case.reason or "",
            analysis.estimand, c.units if c else 0, prompts if c else 0, c.runs if c else 0,
            *estimate(c and c.e2e_speedup), *estimate(c and c.decode_speedup),
            mean(c and c.baseline_decode_tps), mean(c and c.speculative_decode_tps),
            mean(c and c.baseline_e2e_tps), mean(c and c.speculative_e2e_tps),
            mean(c and c.acceptance_rate), mean(c and c.draft_token_share), mean(c and c.tokens_per_round),
            c.partial_rounds if c else "",
            "" if not c or c.lossless.identical is None else str(c.lossless.identical).lower(),
            _fmt(analysis.alone_peak_memory_gb(case.target)),
            _fmt(c.speculative_peak_memory_gb.max if c and c.speculative_peak_memory_gb else None),
            mean(c and c.baseline_ttft_s), mean(c and c.speculative_ttft_s),
            "true" if case.pruned else "false",
            "" if case.pruned_after_units is None else case.pruned_after_units, case.pruned or "",
            _runs(c.outlier_runs.get("e2e", [])) if c else "", _runs(c.outlier_runs.get("decode", [])) if c else "",
            ("true" if is_anchor(case, analysis) else "false") if case.prediction else "",
            *[_fmt(getattr(case.prediction, name) if case.prediction else None)
              for name in ("decode_speedup", "low", "high", "e2e_speedup")],
        ])
    if cross is not None:
        _cross_rows(plain, cross, analysis)
    return buffer.getvalue()


class _CaseWriter:
    """A case row of a file of several engines: "case" first, its engine and empty cross-engine columns after."""

    def __init__(self, writer, analysis: SweepAnalysis):
        self.writer, self.analysis, self.case = writer, analysis, None

    def writerow(self, row: list) -> None:
        engine = self.case.engine or self.analysis.plan.engine
        self.writer.writerow(["case", *row, engine, *[""] * len(CROSS_COLUMNS)])


def _cross_rows(writer, cross, analysis: SweepAnalysis) -> None:
    estimate = lambda e: [_fmt(e.geomean), _fmt(e.low), _fmt(e.high)] if e else ["", "", ""]  # noqa: E731
    for row in cross.rows:
        reference = row.figures[0]
        for figures in row.figures:
            best, first = figures.best, figures is reference
            case = dict.fromkeys(CSV_COLUMNS, "")
            peak = lambda s: _fmt(s.mean if s else None)  # noqa: E731
            case.update(target=figures.target, method=best.method if best else "",
                        draft=(best.draft or "") if best else "", num_draft_tokens=best.num_draft_tokens or ""
                        if best else "", estimand=analysis.estimand,
                        baseline_decode_tps=peak(figures.baseline_decode_tps),
                        baseline_e2e_tps=peak(figures.baseline_e2e_tps),
                        target_alone_peak_memory_gb=_fmt(figures.alone_peak_memory_gb),
                        speculative_peak_memory_gb=_fmt(figures.best_peak_memory_gb))
            ratios = []
            for what in ("baseline", "best"):
                for objective in ("e2e", "decode"):
                    found = None if first else next(
                        (r for r in row.ratios if r.what == what and r.objective == objective
                         and r.target == figures.target), None)
                    e = found.estimate if found else None
                    ratios += [*estimate(e), e.n if e else ""]
            writer.writerow(["cross-engine", *case.values(), figures.engine, row.size, row.bits,
                             "" if first else reference.engine, "" if first else reference.target, figures.verdict,
                             *estimate(figures.best_speedup if best else None), cross.objective, *ratios,
                             cross.order])
