"""The human formats: the `pair` block, and the sweep report as a plain table or Markdown."""

from __future__ import annotations

from tabulate import tabulate

from ..analysis import TEMPERATURE_NOTE, SweepAnalysis, analyse_sweep, label, setup_label
from ..crossengine import CROSS_HEADERS, cross_engine, cross_rows, cross_title
from ..results import Results
from .common import (
    BEST_K_UNADJUSTED,
    CAUGHT_UP_TITLE,
    METRIC_TITLES,
    PRUNED_TITLE,
    SETUPS_TITLE,
    SPEEDUP_TITLES,
    UNADJUSTED,
    _model_line,
    _number,
    _percent,
    anchor_k,
    baseline_matrix,
    caught_up_lines,
    cross_lines,
    definition_lines,
    distributed_text,
    estimand_line,
    evidence_lines,
    format_cell,
    format_estimate,
    format_lossless,
    format_prediction,
    format_summary,
    header_lines,
    is_anchor,
    matrix,
    n_unit,
    objective_text,
    order_text,
    pass_spread,
    plain_sentence,
    prediction_matrix,
    problem_lines,
    pruned_lines,
    pruned_text,
    report_title,
    settings_text,
    setup_headers,
    setup_rows,
    ttft_text,
    verdict_lines,
    verdict_title,
)


def render_pair(results: Results | dict, objective: str = "e2e", estimand: str = "workload") -> str:
    """The compact human block printed by `mlxdraft pair` (a results file of one group)."""
    analysis = analyse_sweep(results, objective, estimand)
    target = analysis.targets[0]
    models = analysis.results.models
    verdict = analysis.verdict(target)
    cases = analysis.measured(target) or [c for c in analysis.pruned(target) if c.comparison]
    if not cases:
        return "No speculative runs were measured."
    case = verdict.chosen or verdict.leader or cases[0]
    c = case.comparison
    baseline = next(iter(analysis.baselines.values()), {})
    histogram = "  ".join(f"{n}:{count}" for n, count in enumerate(c.accepted_length_counts))
    partial = f"; {c.partial_rounds} partial round(s) cut by max-tokens or EOS left out" if c.partial_rounds else ""
    alone = analysis.alone_peak_memory_gb(target)
    peak = c.speculative_peak_memory_gb
    if alone is not None and peak and case.draft is None:
        memory = f"target alone {alone:.2f} GB; {case.method} {peak.max:.2f} GB ({peak.max - alone:+.2f} GB)"
    elif alone is not None and peak:
        memory = (f"target alone {alone:.2f} GB; with the draft {peak.max:.2f} GB "
                  f"({peak.max - alone:+.2f} GB for the draft)")
    elif peak:
        memory = f"with the draft {format_summary(peak, 'GB', 2)}"
    else:
        memory = "not measured (the engine does not report peak memory)"
    rows = [
        ("Target", _model_line(models.get(target, {"name": target}))),
        ("Method", f"{case.method} ({analysis.results.method_info(case.method)['summary']})"),
        ("Draft", _model_line(models.get(case.draft, {"name": case.draft})) if case.draft else "none"),
        ("Settings", settings_text(analysis)),
        ("Objective", objective_text(analysis)),
        ("Estimand", estimand_line(analysis).removeprefix("Estimand: ")),
        ("Verdict", "\n".join([line.removeprefix("verdict: ") for line in evidence_lines(verdict, analysis)]
                               + verdict.commands + ([verdict.commands_note] if verdict.commands_note else []))),
        ("Shown", f"k={case.num_draft_tokens}"),
        ("Baseline", f"decode {format_summary(baseline.get('decode_tps'), 'tok/s')}; "
                     f"end to end {format_summary(baseline.get('e2e_tps'), 'tok/s')}"),
        ("Speculative", f"decode {format_summary(c.speculative_decode_tps, 'tok/s')}; "
                        f"end to end {format_summary(c.speculative_e2e_tps, 'tok/s')}"),
        ("Speedup", f"end to end {format_estimate(c.e2e_speedup, n_unit(analysis))}; "
                    f"decode {format_estimate(c.decode_speedup, n_unit(analysis))}"),
        *([("Predicted", f"k={anchor_k(analysis)} (anchor: measured): the speedup model is fitted to these runs, "
                         "so it predicts only the smaller k")] if is_anchor(case, analysis) else
          [("Predicted", f"end to end {format_prediction(case.prediction, 'e2e')}; decode "
                         f"{format_prediction(case.prediction)} (speedup model: acceptance per draft position at "
                         f"k={anchor_k(analysis)} (anchor: measured), timed forward passes)")]
          if case.prediction else []),
        *([("Passes", spread)] if (spread := pass_spread(c)) else []),
        ("Order", order_text(analysis)),
        ("Acceptance", format_summary(c.acceptance_rate, "%", scale=100) + " of proposed draft tokens accepted"),
        ("Draft share", format_summary(c.draft_token_share, "%", scale=100) + " of emitted tokens came from the draft"),
        ("Tokens/round", format_summary(c.tokens_per_round, "tokens", digits=2) + " per complete verify round"
         + partial),
        ("Accepted/round", f"{histogram}   (accepted drafts: number of complete verify rounds)"),
        ("TTFT", f"baseline {format_summary(c.baseline_ttft_s, 's', digits=3)}; "
                 f"speculative {format_summary(c.speculative_ttft_s, 's', digits=3)} (time to first token)"),
        ("Peak memory", memory),
        ("Lossless", format_lossless(case)),
    ]
    if distributed_text(analysis.results):
        rows.append(("Distributed", distributed_text(analysis.results)))
    if analysis.settings.temp > 0:
        rows.append(("Note", TEMPERATURE_NOTE))
    if case.pruned:
        rows.insert(rows.index(next(r for r in rows if r[0] == "Shown")) + 1,
                    ("Pruned", f"{pruned_text(case, analysis)}: {case.pruned}"))
    width = max(len(name) for name, _ in rows)
    lines = [plain_sentence(verdict, analysis), ""]
    for name, value in rows:
        first, *rest = value.split("\n")
        lines.append(f"{name.ljust(width)}  {first}")
        lines += [" " * (width + 2) + line for line in rest]
    if len(cases) > 1:
        table = [(f"{setup_label(x.method, x.draft)} k={x.num_draft_tokens}", format_cell(x.comparison.e2e_speedup),
                  format_cell(x.comparison.decode_speedup), ttft_text(x),
                  "anchor (measured)" if is_anchor(x, analysis) else format_prediction(x.prediction),
                  _percent(x.comparison.acceptance_rate), _number(x.comparison.tokens_per_round, 2)) for x in cases]
        lines += ["", f"Every setup measured (speedups {UNADJUSTED}):",
                  tabulate(table, headers=["setup", "end-to-end speedup", "decode speedup", "time to first token",
                                           "predicted decode", "acceptance", "tokens/round"],
                           disable_numparse=True)]
    if c.per_category:
        table = [(category, format_cell(values["e2e_speedup"]), format_cell(values["decode_speedup"]),
                  _percent(values["acceptance_rate"])) for category, values in c.per_category.items()]
        lines += ["", f"Per category ({case.label}; {UNADJUSTED}):",
                  tabulate(table, headers=["category", "end-to-end speedup", "decode speedup", "acceptance"],
                           disable_numparse=True)]
    return "\n".join(lines)


def render_text(analysis: SweepAnalysis, metric: str = "speedup", markdown: bool = False) -> str:
    table_format = "github" if markdown else "simple"
    section = (lambda title: ["", f"## {title}", ""]) if markdown else (lambda title: ["", f"{title}:"])
    lines = ([f"# {report_title(analysis)}", ""] + [f"- {line}" for line in header_lines(analysis)]) if markdown \
        else header_lines(analysis)
    lines += section(verdict_title(analysis))
    for index, verdict in enumerate(analysis.verdicts()):
        lines += ([""] if markdown and index else []) + verdict_lines(verdict, analysis, markdown)
    cross = cross_engine(analysis)
    if cross is not None:
        lines += section(cross_title(cross))
        lines.append(tabulate(cross_rows(cross), headers=CROSS_HEADERS, tablefmt=table_format, disable_numparse=True))
        lines += [""] + [f"- {line}" for line in cross_lines(analysis, cross)]
    if metric == "speedup":
        other = "decode" if analysis.objective == "e2e" else "e2e"
        tables = [(f"{SPEEDUP_TITLES[analysis.objective]} at each pair's best k "
                   f"(rows: setups, columns: targets; {BEST_K_UNADJUSTED})", matrix(analysis, metric)),
                  (f"{SPEEDUP_TITLES[other]} at each pair's best k ({BEST_K_UNADJUSTED})",
                   matrix(analysis, metric, other)),
                  ("Baseline tok/s measured beside each pair (decode / end to end)", baseline_matrix(analysis))]
    else:
        tables = [(f"{METRIC_TITLES[metric]} at each pair's best k (rows: setups, columns: targets)",
                   matrix(analysis, metric))]
    for target in analysis.targets:
        predicted = prediction_matrix(analysis, target)
        if predicted:
            tables.append((f"Decode speedup of {label(target)}, predicted by the speedup model / measured "
                           f"(k={anchor_k(analysis)}: the anchor, measured, not predicted)",
                           predicted))
    setups = setup_rows(analysis)
    if setups:
        tables.insert(min(2, len(tables)), (SETUPS_TITLE, (setup_headers(analysis), setups)))
    for title, (headers, rows) in tables:
        lines += section(title)
        lines.append(tabulate(rows, headers=headers, tablefmt=table_format, disable_numparse=True))
    pruned = pruned_lines(analysis)
    if pruned:
        lines += section(PRUNED_TITLE)
        lines += [f"- {p}" for p in pruned]
    caught_up = caught_up_lines(analysis)
    if caught_up:
        lines += section(CAUGHT_UP_TITLE)
        lines += [f"- {line}" for line in caught_up]
    problems = problem_lines(analysis)
    if problems:
        lines += section("Skipped or failed")
        lines += [f"- {p}" for p in problems]
    lines += section("Definitions")
    lines += [f"- {line}" for line in definition_lines()]
    return "\n".join(lines)


def render_table(analysis: SweepAnalysis, metric: str = "speedup") -> str:
    return render_text(analysis, metric)


def render_markdown(analysis: SweepAnalysis, metric: str = "speedup") -> str:
    return render_text(analysis, metric, markdown=True)
