"""The sweep report as CSV: one row per (target, method, draft, k), pruned or not, both speedups with their
bounds and both variants' time to first token.

Each row's bounds are that setup's own 95% interval, not adjusted for the other rows (columns ending in
`_unadjusted`): with many rows, some exclude 1.0 by chance. `estimand` says what they are about and `n` what
they rest on: prompts ("workload", prompts like these) or runs ("suite", these exact prompts); `prompts` and
`runs` count the paired prompts and runs. The speedup model is fitted to the runs at the largest k: there
`predicted_is_anchor` is true and its figures are that measurement, not a prediction."""

from __future__ import annotations

import csv
import io

from ..analysis import SweepAnalysis
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


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _runs(units) -> str:
    """Outlier runs as 'prompt:pass' (both counted from 1), separated by spaces."""
    return " ".join(f"{prompt + 1}:{pass_index + 1}" for prompt, pass_index in units)


def _sweep_csv(analysis: SweepAnalysis) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for case in analysis.cases:
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
    return buffer.getvalue()
