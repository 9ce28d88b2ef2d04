"""Report formats: one module each, all built on `common`, and the registry the CLI reads.

Adding a format is one module with a `render_<name>(analysis, metric)` function and one line in
FORMATS.
"""

from __future__ import annotations

from ..analysis import analyse_sweep
from ..results import Results
from .common import METRICS
from .csv_format import render_csv
from .html import render_html
from .json_format import render_json
from .text import render_markdown, render_pair, render_table

FORMATS = {
    "table": render_table,
    "markdown": render_markdown,
    "csv": render_csv,
    "json": render_json,
    "html": render_html,
}

__all__ = ["FORMATS", "METRICS", "render_pair", "render_sweep"]


def render_sweep(results: Results, fmt: str = "table", metric: str = "speedup", objective: str = "e2e",
                 estimand: str = "workload") -> str:
    """A results file rendered in one of FORMATS; statistics are derived here, once. `estimand` (stats.ESTIMANDS):
    what the verdicts and intervals are about, prompts like these (the default) or these exact prompts."""
    if fmt not in FORMATS:
        raise ValueError(fmt)
    return FORMATS[fmt](analyse_sweep(results, objective, estimand), metric)
