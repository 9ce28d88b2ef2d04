"""The sweep report as JSON: verdicts per target, baselines and every case's statistics."""

from __future__ import annotations

import json

from ..analysis import SweepAnalysis
from ..crossengine import cross_engine
from .common import DEFINITIONS, ESTIMAND_LABELS, advice_line, is_anchor, plain_sentence, pruned_text


def render_json(analysis: SweepAnalysis, metric: str = "speedup") -> str:
    return json.dumps(_sweep_json(analysis), indent=2, allow_nan=False)


def _sweep_json(analysis: SweepAnalysis) -> dict:
    results = analysis.results
    data = {
        "schema_version": results.schema_version,
        "kind": "report",  # a rendering, not measurements: `report -o` may replace it
        "results_kind": results.kind,
        "machine": results.machine,
        "versions": results.versions,
        "plan": results.plan.to_dict(),
        "models": results.models,
        "objective": analysis.objective,
        "estimand": analysis.estimand,  # what verdicts and intervals are about (stats.ESTIMANDS)
        "estimand_label": ESTIMAND_LABELS[analysis.estimand],
        "verdicts": [_verdict(v, analysis) for v in analysis.verdicts()],
        "baselines": [{"target": t, "draft": d, "decode_tps": b["decode_tps"].to_dict() if b["decode_tps"] else None,
                       "e2e_tps": b["e2e_tps"].to_dict() if b["e2e_tps"] else None,
                       "target_alone_peak_memory_gb": analysis.alone_peak_memory_gb(t)}
                      for (t, d), b in analysis.baselines.items()],
        "cases": [
            {"target": c.target, "method": c.method, "draft": c.draft, "num_draft_tokens": c.num_draft_tokens,
             "status": c.status,
             "reason": c.reason, "summary": c.comparison.to_dict() if c.comparison else None,
             "prediction": c.prediction.to_dict() if c.prediction else None,
             # the speedup model is fitted to the runs at the largest k: its figures there are the measurement
             "prediction_is_anchor": is_anchor(c, analysis) if c.prediction else None,
             "pruned": {"after_units": c.pruned_after_units, "reason": c.pruned,
                        "text": pruned_text(c, analysis)} if c.pruned else None}
            for c in analysis.cases
        ],
        "definitions": dict(DEFINITIONS),
    }
    cross = cross_engine(analysis)
    if cross is not None:  # a file of several engines: each case says its engine, and the engines side by side
        for case, row in zip(analysis.cases, data["cases"]):
            row["engine"] = case.engine or results.plan.engine
        data["engines"] = analysis.engines
        data["cross_engine"] = cross.to_dict()
    return data


def _verdict(verdict, analysis: SweepAnalysis) -> dict:
    """A verdict with its plain sentence and what decided it."""
    explanation = analysis.explain(verdict)
    return {**verdict.to_dict(), "headline": plain_sentence(verdict, analysis, explanation),
            "advice": advice_line(verdict, analysis), "explanation": explanation.to_dict()}
