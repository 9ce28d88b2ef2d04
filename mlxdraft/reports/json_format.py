"""The sweep report as JSON: verdicts per target, baselines and every case's statistics."""

from __future__ import annotations

import json

from ..analysis import SweepAnalysis


def render_json(analysis: SweepAnalysis, metric: str = "speedup") -> str:
    return json.dumps(_sweep_json(analysis), indent=2, allow_nan=False)


def _sweep_json(analysis: SweepAnalysis) -> dict:
    results = analysis.results
    return {
        "schema_version": results.schema_version,
        "kind": "report",  # a rendering, not measurements: `report -o` may replace it
        "results_kind": results.kind,
        "machine": results.machine,
        "versions": results.versions,
        "plan": results.plan.to_dict(),
        "models": results.models,
        "objective": analysis.objective,
        "verdicts": [v.to_dict() for v in analysis.verdicts()],
        "baselines": [{"target": t, "draft": d, "decode_tps": b["decode_tps"].to_dict() if b["decode_tps"] else None,
                       "e2e_tps": b["e2e_tps"].to_dict() if b["e2e_tps"] else None,
                       "target_alone_peak_memory_gb": analysis.alone_peak_memory_gb(t)}
                      for (t, d), b in analysis.baselines.items()],
        "cases": [
            {"target": c.target, "method": c.method, "draft": c.draft, "num_draft_tokens": c.num_draft_tokens,
             "status": c.status,
             "reason": c.reason, "summary": c.comparison.to_dict() if c.comparison else None,
             "prediction": c.prediction.to_dict() if c.prediction else None, "pruned": c.pruned}
            for c in analysis.cases
        ],
    }
