"""What every report format shares: figures formatted with their units and n, verdict lines,
the matrices (drafts as rows, targets as columns) and the header. Formats import from here."""

from __future__ import annotations

import math
import shlex
import statistics
from pathlib import Path

from ..analysis import (
    LOW_ACCEPTANCE,
    OBJECTIVE_NAMES,
    TEMPERATURE_NOTE,
    Explanation,
    SweepAnalysis,
    SweepCase,
    TargetVerdict,
    label,
    setup_label,
)
from ..order import order_effect
from ..results import command_line, measure_again_command, split_output
from ..stats import MIN_UNITS_FOR_INTERVAL, RatioEstimate, Summary, format_ratio, ratio_digits


def format_summary(summary: Summary | None, unit: str = "", digits: int = 1, scale: float = 1.0) -> str:
    """'12.3 tok/s ± 0.4 sd (11.9 … 12.8, n=12 runs)': mean ± the standard deviation across runs (never an
    interval: the word says so wherever it stands beside one); one run is shown as one run, never '± 0.0'.
    Raw values are never flagged as outliers: they legitimately differ by prompt (`outlier_lines`)."""
    if summary is None:
        return "n/a"
    unit = f" {unit}" if unit else ""
    if summary.n == 1:
        return f"{summary.mean * scale:.{digits}f}{unit} (n=1, one run)"
    return (
        f"{summary.mean * scale:.{digits}f}{unit} ± {summary.stdev * scale:.{digits}f} sd "
        f"({summary.min * scale:.{digits}f} … {summary.max * scale:.{digits}f}, n={summary.n} runs)"
    )


def _bounds(estimate: RatioEstimate) -> tuple[str, str, str]:
    """Geometric mean and bounds as printed: with enough digits that none on one side of 1.0 reads 1.00."""
    d = ratio_digits(estimate.geomean, estimate.low, estimate.high)
    return f"{estimate.geomean:.{d}f}", f"{estimate.low:.{d}f}", f"{estimate.high:.{d}f}"


def format_bracket(estimate: RatioEstimate | None) -> str:
    """'0.80x [0.74, 0.88], n=9': a speedup in a sentence."""
    if estimate is None:
        return "n/a"
    if estimate.low is None:
        return f"{format_ratio(estimate.geomean)} (n={estimate.n}, too few runs for an interval)"
    point, low, high = _bounds(estimate)
    return f"{point}x [{low}, {high}], n={estimate.n}"


def format_estimate(estimate: RatioEstimate | None, unit: str = "") -> str:
    """'1.42x (95% CI 1.31–1.55, n=12)', or 'n=2, no error bar' below three units; `unit` ("prompts", "runs")
    says what n counts."""
    if estimate is None:
        return "n/a"
    unit = unit.removesuffix("s") if estimate.n == 1 else unit
    n = f"n={estimate.n}" + (f" {unit}" if unit else "")
    if estimate.low is None:
        return f"{format_ratio(estimate.geomean)} ({n}, no error bar)"
    widened = f", widened for {estimate.candidates} setups" if estimate.candidates > 1 else ""
    point, low, high = _bounds(estimate)
    return f"{point}x ({estimate.confidence * 100:g}% CI {low}–{high}{widened}, {n})"


def n_unit(analysis: SweepAnalysis) -> str:
    """What n counts under the report's estimand: prompts (prompts like these) or runs (these exact prompts)."""
    return "prompts" if analysis.estimand == "workload" else "runs"


def format_prediction(prediction, objective: str = "decode") -> str:
    """'1.52x [1.40, 1.65]' for a speedup model's prediction; 'n/a' without one."""
    if prediction is None:
        return "n/a"
    point, low, high = ((prediction.decode_speedup, prediction.low, prediction.high) if objective == "decode"
                        else (prediction.e2e_speedup, prediction.e2e_low, prediction.e2e_high))
    if point is None:
        return "n/a"
    return f"{point:.2f}x" + (f" [{low:.2f}, {high:.2f}]" if low is not None else f" (n={prediction.units})")


def prediction_matrix(analysis: SweepAnalysis, target: str) -> tuple[list[str], list[list[str]]] | None:
    """Per setup (rows) and k (columns): 'predicted / measured' decode speedup, or None when the
    speedup model made no prediction for this target."""
    cases = [c for c in analysis.cases if c.target == target and c.prediction]
    if not cases:
        return None
    ks = analysis.plan.num_draft_tokens
    anchor = anchor_k(analysis)
    rows = []
    for setup in dict.fromkeys(c.setup for c in cases):
        row = [setup_label(*setup)]
        for k in ks:
            case = next((c for c in cases if c.setup == setup and c.num_draft_tokens == k), None)
            measured = case.comparison.decode_speedup if case and case.comparison else None
            predicted = "anchor" if k == anchor else f"{case.prediction.decode_speedup:.2f}x" if case else ""
            row.append(f"{predicted} / " + (f"{measured.geomean:.2f}x" if measured else "n/a") if case else "")
        rows.append(row)
    return ["setup \\ k"] + [f"k={k} (anchor: measured)" if k == anchor else f"k={k}" for k in ks], rows


def spans_one(estimate: RatioEstimate | None) -> bool:
    return bool(estimate and estimate.low is not None and estimate.low <= 1.0 <= estimate.high)


def format_cell(estimate: RatioEstimate | None) -> str:
    """Compact matrix cell: '1.42x [1.31, 1.55]', '?' when the interval spans 1.0."""
    if estimate is None:
        return "n/a"
    if estimate.low is None:
        return f"{format_ratio(estimate.geomean)} (n={estimate.n})"
    point, low, high = _bounds(estimate)
    return f"{point}x [{low}, {high}]" + (" ?" if spans_one(estimate) else "")


def format_lossless(case: SweepCase) -> str:
    lossless = case.comparison.lossless
    if not lossless.checked:
        return "not checked (sampling with temperature > 0)"
    if lossless.runs_compared == 0:
        return "not checked (no paired runs)"
    if lossless.identical:
        return f"yes: identical token ids in {lossless.runs_compared} of {lossless.runs_compared} runs"
    where = lossless.first_divergence
    return (
        f"NO: {lossless.runs_diverged} of {lossless.runs_compared} runs differ; first at token "
        f"{where['token_index']} of prompt {where['prompt_index'] + 1}, pass {where['pass_index'] + 1}"
    )


def _model_line(record: dict) -> str:
    weights = record.get("weights_gb")
    size = f", {weights:.2f} GB of weights" if isinstance(weights, (int, float)) else ""
    return f"{record.get('name')} ({record.get('model_type')}, {record.get('precision')}{size})"


def settings_text(analysis: SweepAnalysis) -> str:
    plan, settings = analysis.plan, analysis.settings
    mode = "fixed length, EOS ignored" if settings.fixed_length else "natural length, stops at EOS"
    sampling = "greedy" if settings.temp == 0 else f"temperature {settings.temp:g}" + "".join(
        f", {name} {value:g}" for name, value, off in (("top-p", settings.top_p, 1.0), ("top-k", settings.top_k, 0),
                                                      ("min-p", settings.min_p, 0.0)) if value not in (off, 0))
    return (f"methods {', '.join(plan.methods)}, k in {plan.num_draft_tokens}, max {settings.max_tokens} tokens "
            f"({mode}), {settings.runs} pass(es) x {len(plan.prompts)} prompt(s), warmup {settings.warmup}, "
            f"{sampling}, seed {settings.seed}")


def objective_text(analysis: SweepAnalysis) -> str:
    if analysis.objective == "decode":
        return "decode speed (tokens after the first verify round; time to first token left out)"
    plan, settings = analysis.plan, analysis.settings
    return (f"end-to-end time of this workload ({len(plan.prompts)} prompt(s), up to {settings.max_tokens} "
            "tokens each, time to first token included)")


def setup_phrase(case: SweepCase) -> str:
    """'the q8 draft with k=3', 'prompt-lookup with k=4': a setup named in a sentence."""
    k = f"k={case.num_draft_tokens}" if case.num_draft_tokens else ""
    name = label(case.draft) if case.draft else ""
    name = name if "draft" in name.lower() else f"{name} draft"
    if case.method == "mlx-lm" and case.draft:
        return f"the {name}" + (f" with {k}" if k else "")
    draft = f" with the {name}" if case.draft else ""
    return f"{case.method}{draft}" + ((", " if draft else " with ") + k if k else "")


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if abs(value) < 1 else f"{value:.1f} s"


OBJECTIVE_WORDS = {"e2e": "end to end", "decode": "in decoding"}


def _runs_to(verdict: TargetVerdict, analysis: SweepAnalysis) -> str:
    """The -r that would likely decide an inconclusive verdict about these exact prompts, or '' (about prompts
    like these, passes do not decide it: `prompts_advice`)."""
    v = verdict.verdict
    if not (v and v.verdict == "inconclusive" and v.more_units_needed and v.estimate and v.estimand == "suite"):
        return ""
    prompts = max(len(analysis.plan.prompts), 1)
    return str(max(-(-(v.estimate.n + v.more_units_needed) // prompts), analysis.settings.runs + 1))


def plain_sentence(verdict: TargetVerdict, analysis: SweepAnalysis,
                   explanation: Explanation | None = None) -> str:
    """The verdict as advice a person acts on, with the measured reason that decided it: time to first
    token, acceptance, the verify pass's cost or memory. Every figure is measured, with its unit and n."""
    e = explanation or analysis.explain(verdict)
    words = OBJECTIVE_WORDS[verdict.objective]
    budget = f"{e.memory_budget_gb:.1f} GB" if e.memory_budget_gb else "the"
    skipped = len(e.memory_skipped)
    memory_note = (f" {skipped} draft{'s' if skipped > 1 else ''} {'were' if skipped > 1 else 'was'} not measured: "
                   f"{'they' if skipped > 1 else 'it'} would not fit the {budget} memory budget.") if skipped else ""
    if e.cause == "memory":
        return (f"Nothing to compare: every draft for this target was skipped because it would not fit the "
                f"{budget} memory budget ({skipped} skipped); raise the budget (--memory-gb) or choose smaller "
                "drafts.")
    if verdict.verdict is None or e.case is None:
        return _alone_text(verdict, analysis) or (
            "Nothing to compare: no speculative setup was measured for this target." + memory_note)
    case, v = e.case, verdict.verdict
    if e.cause == "gain":
        added = (f", {e.added_memory_gb:.2f} GB more memory" if e.added_memory_gb is not None
                 else ", memory added not measured")
        command = "; command below" if verdict.commands else ""
        e2e = e.e2e_speedup
        end_to_end = ""
        if verdict.objective == "decode" and e2e and e2e.high is not None and e2e.high < 1.0:
            later = (f": the first token comes {_seconds(e.ttft_delay_s)} later" if (e.ttft_delay_s or 0) > 0
                     else "")
            end_to_end = f" End to end it is slower, {format_bracket(e2e)}{later}."
        return (f"Use {setup_phrase(case)}: {format_ratio(v.estimate.geomean)} faster {words} "
                f"{format_bracket(v.estimate).split(' ', 1)[1]}{added}{command}." + end_to_end + memory_note)
    own = case.comparison.speedup(verdict.objective)
    best = f"{setup_phrase(case)}, {format_bracket(own)}"
    if v.verdict == "no-gain":
        opening = ("Don't use speculative decoding for this workload: "
                   + (f"every measured setup was slower {words} (best: {best})." if v.candidates > 1
                      else f"the one setup measured was slower {words} ({best})."))
    elif e.cause == "too-few":
        n = own.n if own else 0
        counted = f"{n} {'prompt' if v.estimand == 'workload' else 'run'}{'s' if n != 1 else ''}"
        return (f"No answer yet: {setup_phrase(case)} has {counted}, too few for an interval; "
                + _next_step(verdict, analysis) + "." + memory_note)
    else:
        opening = (f"No clear answer yet: the best setup, {setup_phrase(case)}, runs at {format_bracket(v.estimate)} "
                   f"{words}, not clearly faster or slower than the target alone; "
                   + _next_step(verdict, analysis) + ".")
    return " ".join(part for part in (opening, _because(verdict, e), memory_note.strip()) if part)


def _next_step(verdict: TargetVerdict, analysis: SweepAnalysis) -> str:
    """What would decide an open verdict, in a few words that agree with the evidence's advice line: nothing but
    the unfinished line's advice when the measurement stopped early; prompts about prompts like these (the
    default), passes about these exact prompts."""
    v = verdict.verdict
    if unfinished_line(analysis, verdict.target):
        return "the measurement stopped early: finish it first (below)"
    if v.estimand == "suite":
        runs = _runs_to(verdict, analysis)
        if runs:
            return f"measure again with -r {runs} to decide"
        return ("measure more passes (-r)" if v.estimate is None or v.estimate.low is None
                else "more runs are unlikely to make the difference matter")
    added = analysis.prompts_to_add(verdict)
    more = sum(added.values())
    prompts = f"{more} more prompt{'s' if more != 1 else ''} like these"
    if added and (v.estimate is None or v.estimate.low is None):
        return f"measure at least {prompts} (below)"
    if added:
        return f"about {prompts} would likely decide it (below)"
    return "more prompts are unlikely to make the difference matter"


def _categories(added: dict[str, int]) -> str:
    """' (code 4, json 2)', or '' for prompts of one category."""
    return f" ({', '.join(f'{category} {n}' for category, n in added.items())})" if len(added) > 1 else ""


def more_prompts_command(analysis: SweepAnalysis) -> str | None:
    """The command that made the file, measuring into a new results file from a prompts file (--prompts) instead
    of its prompts, or None when the file does not record its command. The prompts file is named after the
    results file (its -o), else prompts.jsonl; a sweep writes to NAME-more-prompts.json."""
    argv = analysis.results.command
    if not argv or len(argv) < 2:
        return None
    args, output = split_output(argv, drop=("--prompt", "--prompts"))
    if output:
        path = Path(output)
        prompts = path.with_name(f"{path.stem}-prompts.jsonl")
        new_output = path.with_name(f"{path.stem}-more-prompts.json")
    else:
        prompts = Path("prompts.jsonl")
        new_output = Path("results/sweep-more-prompts.json") if args[1:2] == ["sweep"] else None
    return shlex.join(args + ["--prompts", str(prompts)] + (["-o", str(new_output)] if new_output else []))


def prompts_advice(verdict: TargetVerdict, analysis: SweepAnalysis) -> str | None:
    """How to decide an open verdict about prompts like these: about N more prompts like them, spread over the
    suite's categories (`SweepAnalysis.prompts_to_add`), measured with the suite's own into a new file; None when
    prompts would not decide it, or the verdict is about these exact prompts."""
    added = analysis.prompts_to_add(verdict)
    if not added:
        return None
    more, prompts = sum(added.values()), len(analysis.plan.prompts)
    suite = "this prompt" if prompts == 1 else f"these {prompts} prompts"
    like = "it" if prompts == 1 else "them"
    command = more_prompts_command(analysis)
    how = f": {command}" if command else " with --prompts FILE"
    return (f"to decide it, measure again on a prompts file (JSONL with 'prompt' and 'category') holding {suite} and "
            f"about {more} more like {like}{_categories(added)}, into a new file{how}")


def _alone_text(verdict: TargetVerdict, analysis: SweepAnalysis) -> str | None:
    """A target measured only alone (no draft fits it): its baseline, or None."""
    alone = analysis.baselines.get((verdict.target, None))
    if not alone or not alone["decode_tps"]:
        return None
    return (f"measured alone, for its baseline (no draft other than itself and no larger than it): "
            f"decode {format_summary(alone['decode_tps'], 'tok/s')}; end to end "
            f"{format_summary(alone['e2e_tps'], 'tok/s')}")


def _decode_words(decode: RatioEstimate | None, gained: str, lost: str) -> str:
    if decode is None:
        return "decode speed was not measured"
    if decode.low is not None and decode.low > 1.0:
        return f"{gained} {format_ratio(decode.geomean)} faster [{_bounds(decode)[1]}, {_bounds(decode)[2]}]"
    if decode.high is not None and decode.high < 1.0:
        return f"{lost} {format_ratio(decode.geomean)} [{_bounds(decode)[1]}, {_bounds(decode)[2]}]"
    return f"{lost} {format_bracket(decode).rsplit(', n=', 1)[0]}, not clearly different from the target alone"


def _because(verdict: TargetVerdict, e: Explanation) -> str:
    """The sentence that names what decided a verdict that is not a gain."""
    case = e.case
    if e.cause == "ttft":
        origin = "the draft's prompt prefill" if case.draft else f"{case.method}'s work before the first token"
        tokens = f"these {e.answer_tokens:.0f}-token answers" if e.answer_tokens else "these answers"
        outcome = (f"which {tokens} cannot win back" if verdict.kind == "no-gain"
                   else f"which eats into the gain on {tokens}")
        return (f"{_decode_words(e.decode_speedup, 'Decoding got', 'Decoding ran at')}, but the first token came "
                f"{_seconds(e.ttft_delay_s)} later ({_seconds(e.speculative_ttft_s)} against "
                f"{_seconds(e.baseline_ttft_s)} for the target alone: {origin}), {outcome}.")
    if e.cause == "acceptance":
        return (f"The target accepted only {e.acceptance_rate * 100:.0f}% of the proposed draft tokens, so decoding "
                f"did not speed up ({_decode_words(e.decode_speedup, 'decoding got', 'decoding ran at')}).")
    if e.cause == "verify-cost":
        k = case.num_draft_tokens
        verify = f"verifying {k + 1} tokens per round" if k else "verifying each round"
        drafting = " and running the draft" if case.draft else ""
        return (f"The target accepted {e.acceptance_rate * 100:.0f}% of the proposed draft tokens, yet "
                f"{_decode_words(e.decode_speedup, 'decoding got', 'decoding ran at')}: {verify}{drafting} cost "
                "more time than the accepted tokens save.")
    return ""


def verdict_lines(verdict: TargetVerdict, analysis: SweepAnalysis, markdown: bool = False,
                  named: bool = True) -> list[str]:
    """A target's verdict: the plain sentence first, then the evidence under it: the statistical
    verdict, the setup's figures (with time to first token), ties, the other objective, the commands.
    In Markdown the evidence is a nested list, so that it does not run into one paragraph."""
    indent = "  - " if markdown else "    "
    name = (f"- **{label(verdict.target)}**: " if markdown else f"- {label(verdict.target)}: ") if named else ""
    lines = [f"{name}{plain_sentence(verdict, analysis)}"]
    lines += [indent + line for line in evidence_lines(verdict, analysis)]
    lines += [indent + (f"`{command}`" if markdown else command) for command in verdict.commands]
    lines += [indent + f"({verdict.commands_note})"] if verdict.commands_note else []
    return lines


def advice_line(verdict: TargetVerdict, analysis: SweepAnalysis) -> str | None:
    """The one thing to do next, or None: when the measurement stopped early, finish it (the unfinished line);
    else, for an open verdict, more prompts like these (the default estimand) or more passes (these exact
    prompts)."""
    unfinished = unfinished_line(analysis, verdict.target)
    if unfinished:
        return unfinished.strip()
    runs = _runs_to(verdict, analysis)
    if runs:
        return f"to decide it, measure again with -r {runs} (into a new file)"
    return prompts_advice(verdict, analysis)


def verdict_reason(verdict: TargetVerdict, analysis: SweepAnalysis) -> str:
    """The statistical reason of a verdict. When the measurement stopped early an open verdict keeps only its
    finding, not its advice (more prompts, more passes): the unfinished line's is the one thing to do."""
    v = verdict.verdict
    if v is None:
        return "no speculative setup was measured"
    if v.verdict == "inconclusive" and unfinished_line(analysis, verdict.target):
        return v.reason.split("; ", 1)[0]
    return v.reason


def tie_lines(verdict: TargetVerdict) -> list[str]:
    """The setups not shown different from the fastest, said by the rule that chose: "fastest" keeps the
    fastest (the others are not shown within the margin of it), "equivalent" chose the cheapest shown within
    the margin (an equivalence test). "Not shown different" is never "as fast"."""
    v = verdict.verdict
    if v is None:
        return []
    margin = f"{v.margin:.0%}"
    lines = []
    if v.rule == "equivalent":
        lines.append(f"chosen: the cheapest within {margin} of the fastest (equivalence test)")
    others = [c.label for c in verdict.tied if c is not verdict.chosen]
    if not others:
        return lines
    if v.verdict != "speculative":
        best = "the best setup"
    elif verdict.chosen is verdict.leader or v.rule == "equivalent":
        best = "the fastest"
    else:
        best = f"the fastest measured, {verdict.leader.label}"
    if v.rule == "fastest":
        lines.append(f"not shown different from {best} (and not shown within {margin} of it): " + ", ".join(others))
    else:
        lines.append(f"not shown different from {best}: " + ", ".join(others))
    return lines


def anchor_k(analysis: SweepAnalysis) -> int:
    """The k the speedup model is fitted to (the plan's largest): its figure there is the measurement itself."""
    return max(analysis.plan.num_draft_tokens)


def is_anchor(case: SweepCase, analysis: SweepAnalysis) -> bool:
    return bool(case.prediction) and case.num_draft_tokens == anchor_k(analysis)


def prediction_line(case: SweepCase, analysis: SweepAnalysis) -> str | None:
    """The speedup model's figures for a setup; at the anchor k it says so instead of showing the measurement it
    was fitted to as a prediction that confirms it."""
    if not case.prediction:
        return None
    k = anchor_k(analysis)
    if is_anchor(case, analysis):
        return (f"speedup model: k={k} (anchor: measured): the model is fitted to these runs, so its figure here "
                "is the measurement, not a check of it")
    return (f"speedup model: decode {format_prediction(case.prediction)}, end to end "
            f"{format_prediction(case.prediction, 'e2e')} predicted from the runs at k={k} (anchor: measured) and "
            "the timed forward passes")


def outlier_lines(case: SweepCase, analysis: SweepAnalysis) -> list[str]:
    """The runs whose paired speedup is unlike the other passes of their own prompt (Comparison.outlier_runs), with
    the advice their cause calls for. A prompt that gains more or less than others is never flagged."""
    c = case.comparison
    if not c:
        return []
    runs: dict[tuple, list[str]] = {}
    for objective, words in (("e2e", "end-to-end"), ("decode", "decode")):
        for unit in c.outlier_runs.get(objective, []):
            runs.setdefault(tuple(unit), []).append(words)
    either = " (with two passes, either may be the odd one)" if analysis.settings.runs == 2 else ""
    lines = []
    for (prompt, pass_index), objectives in sorted(runs.items()):
        what = " and ".join(objectives) + f" speedup{'s' if len(objectives) > 1 else ''}"
        lines.append(f"outlier: prompt {prompt + 1}, pass {pass_index + 1}: a run unlike the other passes of its "
                     f"prompt (its {what}; a stall?){either}: warm up more (-w) or quiet the machine")
    return lines


def pass_spread(comparison) -> str | None:
    """'end to end ± 2.1% sd, decode ± 1.8% sd between the passes of a prompt': how well passes agree
    (Comparison.pass_log_sd), or None with one pass."""
    parts = [f"{words} ± {(math.exp(sd) - 1) * 100:.1f}% sd" for objective, words in (("e2e", "end to end"),
                                                                                   ("decode", "decode"))
             if (sd := comparison.pass_log_sd.get(objective)) is not None]
    return ", ".join(parts) + " between the passes of a prompt (a run's speedup)" if parts else None


def evidence_lines(verdict: TargetVerdict, analysis: SweepAnalysis) -> list[str]:
    """The statistics under a verdict's plain sentence (no indent, no commands): the verdict with what it is
    about, the setup's figures, outliers, advice that agrees with the verdict's estimand, ties by the rule that
    chose. A measurement that stopped early gets one piece of advice: its unfinished line's."""
    unfinished = unfinished_line(analysis, verdict.target)
    unfinished = [unfinished.strip()] if unfinished else []
    if verdict.verdict is None:
        return ([] if _alone_text(verdict, analysis) else ["not measured"]) + unfinished
    v = verdict.verdict
    lines = [f"verdict: {v.verdict.upper()}: {verdict_reason(verdict, analysis)}", f"scope: {v.scope}"] + unfinished
    case = verdict.chosen or verdict.leader
    if case is not None:
        comparison = case.comparison
        pruned = f" ({pruned_text(case, analysis)})" if case.pruned else ""
        unit = n_unit(analysis)
        lines.append(f"{case.label}{pruned}: end to end {format_estimate(comparison.e2e_speedup, unit)}; "
                     f"decode {format_estimate(comparison.decode_speedup, unit)}; time to first token "
                     f"{ttft_text(case)}")
        lines += outlier_lines(case, analysis)
        prediction = prediction_line(case, analysis)
        if prediction:
            lines.append(prediction)
    advice = None if unfinished else advice_line(verdict, analysis)
    if advice:
        lines.append(advice)
    lines += tie_lines(verdict)
    other = verdict.other
    if other and other.verdict and (other.kind != verdict.kind or _setup(other) != _setup(verdict)):
        lines.append(f"by {OBJECTIVE_NAMES[other.objective]} alone: {other.kind}"
                     + (f", {other.chosen.label}" if other.chosen else "")
                     + f" ({verdict_reason(other, analysis)})")
    if v.verdict == "no-gain":
        lines.append("run the target without speculative decoding")
    return lines


def ttft_text(case: SweepCase) -> str:
    """'0.60 s alone, 2.00 s speculative (+1.40 s)': mean time to first token of both variants."""
    c = case.comparison
    if not c or not c.baseline_ttft_s or not c.speculative_ttft_s:
        return "n/a"
    base, spec = c.baseline_ttft_s.mean, c.speculative_ttft_s.mean
    return f"{base:.3f} s alone, {spec:.3f} s speculative ({spec - base:+.3f} s)"


def pruned_text(case: SweepCase, analysis: SweepAnalysis) -> str:
    """'pruned after 9 of 12 prompts': when the smart sweep stopped measuring a setup."""
    if not case.pruned:
        return ""
    prompts, runs = len(analysis.plan.prompts), analysis.settings.runs
    if case.pruned_after_units is None:
        return "pruned"
    if runs == 1:
        return f"pruned after {case.pruned_after_units} of {prompts} prompts"
    return f"pruned after {case.pruned_after_units} of {prompts * runs} units (prompt x pass)"


def unfinished_line(analysis: SweepAnalysis, target: str) -> str | None:
    """A warning when the target's measurement is not complete (pending pairs, runs missing)."""
    groups = [g for g in analysis.results.groups.values() if g.target == target and g.status == "pending"]
    if not groups:
        return None
    done = sum(len(g.samples) for g in groups)
    planned = sum(analysis.settings.runs * len(analysis.plan.prompts) * (1 + len(_setups_in(analysis, g)))
                  for g in groups)
    measured = f"{done} of their {planned} runs measured"
    if analysis.results.kind == "pair":  # a pair cannot be continued: it is measured again, whole, into a new file
        again = f": {measure_again_command(analysis.results.command)}" if analysis.results.command else ""
        return (f"    unfinished: stopped after {measured.replace(' of their ', ' of ')}; this verdict rests on those "
                f"runs only; to measure all of them, run the pair again{again}")
    again = f": {command_line(analysis.results.command, resume=True)}" if analysis.results.command else " --resume"
    return (f"    unfinished: {len(groups)} pair(s) still pending, {measured}; continue with{again} "
            "before trusting this")


def _setups_in(analysis: SweepAnalysis, group) -> list[SweepCase]:
    return [c for c in analysis.cases if c.target == group.target and c.method != "baseline"
            and (c.draft == group.draft or (c.draft is None and analysis.results.kind == "pair"))]


def _setup(verdict: TargetVerdict):
    return (verdict.chosen.method, verdict.chosen.draft, verdict.chosen.num_draft_tokens) if verdict.chosen else None


def _percent(summary: Summary | None) -> str:
    return "n/a" if not summary else f"{summary.mean * 100:.0f}%"


def _number(summary: Summary | None, digits: int = 1) -> str:
    return "n/a" if not summary else f"{summary.mean:.{digits}f}"


METRICS = ("speedup", "acceptance", "tokens-per-round")
SPEEDUP_TITLES = {"e2e": "End-to-end speedup", "decode": "Decode speedup"}
METRIC_TITLES = {"speedup": "Speedup", "acceptance": "Acceptance rate",
                 "tokens-per-round": "Tokens per complete verify round"}


def _cell(analysis: SweepAnalysis, target: str, method: str, draft: str | None, metric: str, objective: str) -> str:
    status = analysis.status(target, method, draft)
    if status is None:
        return ""
    case = analysis.best_k(target, method, draft, objective)
    if case is None and any(c.setup == (method, draft) for c in analysis.pruned(target)):
        return PRUNED_UNRUN
    if case is None:
        return {"skipped": "skipped", "failed": "failed", "pending": "not run"}.get(status, "n/a")
    comparison = case.comparison
    pruned = PRUNED_MARK if case.pruned else ""
    if metric == "speedup":
        text = f"{format_cell(analysis.best_k_estimate(target, method, draft, objective))} k={case.num_draft_tokens}"
        return text + (" (output differs)" if comparison.lossless.identical is False else "") + pruned
    if metric == "acceptance":
        return f"{_percent(comparison.acceptance_rate)} k={case.num_draft_tokens}{pruned}"
    return f"{_number(comparison.tokens_per_round, 2)} k={case.num_draft_tokens}{pruned}"


PRUNED_MARK = " (pruned)"  # a setup the smart sweep stopped measuring: its figures so far, out of the verdict
PRUNED_UNRUN = "pruned, not run"  # pruned on the speedup model's prediction before any run


def matrix(analysis: SweepAnalysis, metric: str, objective: str | None = None) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): setups (method and draft) as rows, targets as columns, cells at each
    setup's best k."""
    objective = objective or analysis.objective
    headers = ["setup \\ target"] + [label(t) for t in analysis.targets]
    rows = [[setup_label(method, draft)] + [_cell(analysis, target, method, draft, metric, objective)
                                            for target in analysis.targets]
            for method, draft in analysis.setups()]
    return headers, rows


def baseline_matrix(analysis: SweepAnalysis) -> tuple[list[str], list[list[str]]]:
    """Each pair's own baseline (decode / end-to-end tok/s), in the cell of that pair; a target
    measured alone in a row of its own."""
    headers = ["draft \\ target"] + [label(t) for t in analysis.targets]
    rows = []
    alone = [None] if any(draft is None for _, draft in analysis.baselines) else []
    for draft in analysis.drafts + alone:
        row = [label(draft) if draft else "(target alone)"]
        for target in analysis.targets:
            figures = analysis.baselines.get((target, draft))
            decode, e2e = (figures or {}).get("decode_tps"), (figures or {}).get("e2e_tps")
            row.append(f"{decode.mean:.1f} / {e2e.mean:.1f}" if decode and e2e else "")
        rows.append(row)
    return headers, rows


PRUNED_TITLE = "Pruned by the smart sweep (left out of the verdicts, unless a target has nothing else)"


def pruned_lines(analysis: SweepAnalysis) -> list[str]:
    """The setups a smart sweep stopped measuring, when, what they measured until then, and why (they
    take no part in the verdicts)."""
    lines = []
    for c in analysis.pruned():
        measured = (f"; its figures until then: end to end {format_cell(c.comparison.e2e_speedup)}, decode "
                    f"{format_cell(c.comparison.decode_speedup)}, n={c.comparison.units} {n_unit(analysis)}"
                    if c.comparison else "; never run")
        after = f"after {c.pruned_after_units} unit(s): " if c.pruned_after_units is not None else ""
        lines.append(f"{label(c.target)} + {c.label}: {after}{c.pruned}{measured}")
    return lines


UNADJUSTED = "each on its own, not adjusted for the cells shown"
"""Said once in the title or legend of every table whose cells carry their own intervals."""
BEST_K_UNADJUSTED = "each widened for its own setup's k values only, not adjusted for the cells shown"
SETUPS_TITLE = ("Every measured setup: end to end against decode, and time to first token (TTFT), "
                f"mean of each variant (speedups {UNADJUSTED})")
SETUP_HEADERS = ["target", "setup", "end-to-end speedup", "decode speedup", "TTFT alone", "TTFT speculative",
                 "acceptance", "memory added", "status"]


def setup_headers(analysis: SweepAnalysis) -> list[str]:
    """SETUP_HEADERS, with an engine column after the target's when the file measured several engines."""
    return SETUP_HEADERS[:1] + ["engine"] + SETUP_HEADERS[1:] if analysis.several_engines else list(SETUP_HEADERS)


def setup_rows(analysis: SweepAnalysis) -> list[list[str]]:
    """One row per measured (target, setup, k), pruned or not, with its own (not widened) figures (and the engine
    that measured it, when the file measured several: `setup_headers`)."""
    rows = []
    for case in analysis.cases:
        c = case.comparison
        if c is None:
            continue
        added = analysis.added_memory_gb(case)
        ttft = lambda summary: f"{summary.mean:.3f} s" if summary else "n/a"  # noqa: E731
        rows.append([label(case.target), case.label, format_cell(c.e2e_speedup), format_cell(c.decode_speedup),
                     ttft(c.baseline_ttft_s), ttft(c.speculative_ttft_s), _percent(c.acceptance_rate),
                     f"{added:+.2f} GB" if added is not None else "not measured",
                     pruned_text(case, analysis) if case.pruned else f"measured, n={c.units} {n_unit(analysis)}"])
        if analysis.several_engines:
            rows[-1].insert(1, case.engine or analysis.plan.engine)
    return rows


DEFINITIONS = [
    ("speedup", "speculative speed / speed of the target alone, per prompt measured back to back, summarised "
                "as a geometric mean; above 1.00x is faster"),
    ("end to end", "generated tokens / time from the call to the last token, time to first token (TTFT) "
                   "included: what a user waits for"),
    ("decode", "tokens generated after the first verify round / time from the end of that round to the last "
               "token: prefill and TTFT left out, on both sides alike"),
    ("TTFT", "time to first token: from the call to the first token (prefill, and for speculative runs the "
             "draft's prefill and the first round); a later first token can cancel a faster decode on short "
             "answers"),
    ("run", "one prompt in one pass, measured for the target alone and every setup back to back (a pair of runs "
            "gives one paired ratio)"),
    ("estimand", "what a verdict is about. 'prompts like these' (the default, --estimand workload): the prompt is "
                 "the unit, the median of its passes, n counts prompts, and to narrow an interval one adds prompts. "
                 "'these exact prompts' (--estimand suite): n counts runs, more passes narrow it, and nothing is "
                 "said about other prompts"),
    ("n", "the units an interval rests on: prompts (prompts like these) or runs (these exact prompts); beside a "
          "mean and its sd, the runs it summarises"),
    ("[low, high]", "95% interval of the speedup; '?' marks one that spans 1.00x (not clearly faster or "
                    "slower); none below 3 units"),
    ("unadjusted", "an interval computed for its own cell alone: with many cells shown, some exclude 1.00x by "
                   "chance even when no setup is faster, so read a single cell as a lead, not a finding; only a "
                   "verdict's intervals are widened for every setup compared (CSV bounds: *_unadjusted columns)"),
    ("widened", "an interval made wider because the figure is the best of several setups (or k values) "
                "compared, so that picking the best does not overstate it; a setup's own figures are not widened"),
    ("sd", "'12.3 ± 0.4 sd' is a mean with the standard deviation across runs: how much single runs vary (prompts "
           "included), not an interval and not the uncertainty of the mean"),
    ("outlier", "a run whose paired speedup is unlike the other passes of its own prompt (a stall or a cold run), "
                "judged on speedups within a prompt and never on raw tok/s, which legitimately differ between "
                "prompts; flagged only with 10 or more runs; warm up more (-w) or quiet the machine"),
    ("pruned", "a setup the smart sweep stopped measuring once it could no longer win; its figures so far "
               "are shown marked (pruned), and it takes no part in the verdict unless nothing else was measured"),
    ("acceptance rate", "accepted / proposed draft tokens, over complete verify rounds; below "
                        f"{LOW_ACCEPTANCE:.0%} a setup that did not speed decoding up is said to lose on "
                        "acceptance, at or above it on the cost of the verify pass (k + 1 tokens) and the draft"),
    ("draft-token share", "the share of emitted tokens that came from the draft"),
    ("memory added", "peak memory of the speculative runs minus the target's peak with no draft loaded"),
    ("speedup model", "a prediction of the speedup from the acceptance per draft position at the largest k "
                      "and the timed forward passes of target and draft"),
    ("anchor", "the largest k, whose measured runs the speedup model is fitted to: its figure there is the "
               "measurement itself, marked (anchor: measured), not a prediction that confirms it; only the "
               "predictions at smaller k can be checked against their measurements"),
]


def definition_lines() -> list[str]:
    return [f"{term}: {text}" for term, text in DEFINITIONS]


CAUGHT_UP_TITLE = "Settled by the smart sweep (measured again on the prompts they missed after the race's probe)"


def caught_up_lines(analysis: SweepAnalysis) -> list[str]:
    """The setups a smart sweep measured in a catch-up pass (module `settle`), and on how many prompts."""
    passes = analysis.settings.runs
    lines = []
    for record in analysis.results.groups.values():
        counts: dict[tuple[str, int], int] = {}
        for sample in record.samples:
            if sample.pass_index >= passes and not sample.is_baseline:
                key = (sample.method, sample.num_draft_tokens)
                counts[key] = counts.get(key, 0) + 1
        for (method, k), count in counts.items():
            lines.append(f"{label(record.target)} + {setup_label(method, record.draft)} k={k}: {count} catch-up "
                         f"run(s), each next to a baseline run of its own")
    return lines


def problem_lines(analysis: SweepAnalysis) -> list[str]:
    return [f"{label(r.target)} + {label(r.draft) if r.draft else '(target alone)'}: {r.status}: {r.reason}"
            for r in analysis.problems()]


def verdict_title(analysis: SweepAnalysis) -> str:
    """'Verdict per target (objective: end-to-end speed; about prompts like these)'."""
    return (f"Verdict per target (objective: {OBJECTIVE_NAMES[analysis.objective]}; about "
            f"{ESTIMAND_LABELS[analysis.estimand]})")


def report_title(analysis: SweepAnalysis) -> str:
    """What the file is: one target with its drafts (`mlxdraft pair`) or a sweep."""
    if analysis.results.kind == "pair":
        target = label(analysis.targets[0]) if analysis.targets else "?"
        return f"mlxdraft pair: {target}"
    return "mlxdraft sweep"


ESTIMAND_LABELS = {"workload": "prompts like these", "suite": "these exact prompts"}
"""How each estimand (stats.ESTIMANDS, `--estimand`) is named wherever a report shows it."""


def estimand_line(analysis: SweepAnalysis) -> str:
    """What every verdict and interval of the report is about, and what narrows it."""
    prompts = len(analysis.plan.prompts)
    if analysis.estimand == "suite":
        return (f"Estimand: these exact prompts (--estimand suite): n counts runs (prompt x pass) of these {prompts} "
                "prompt(s), so passes narrow an interval, but nothing is said about other prompts.")
    these = "prompts like this one" if prompts == 1 else f"prompts like these {prompts}"
    return (f"Estimand: {these} (the default, --estimand workload): the prompt is the unit of "
            "replication, the median of its passes; n counts prompts and an interval includes how much the gain "
            "differs from prompt to prompt (prompts narrow it, passes do not).")


def order_text(analysis: SweepAnalysis, target: str | None = None) -> str:
    """The run order within a unit and, where positions were recorded, the order-effect check: first-position
    runs against later ones (each relative to its unit), pooled over every variant of `target` (or all)."""
    groups = [g.samples for g in analysis.results.groups.values() if target is None or g.target == target]
    metric = "e2e_tps" if analysis.objective == "e2e" else "decode_tps"
    effect = order_effect(groups, metric=metric).get(("all", 0))
    if effect is None:
        return ("fixed within each prompt (the baseline first, then k ascending: a file from before the order was "
                "randomised), so an order effect cannot be checked" if analysis.plan.order == "fixed"
                else "random within each prompt; too few runs to check for an order effect")
    interval = (f" [{format_ratio(effect.low)}, {format_ratio(effect.high)}]" if effect.low is not None else "")
    return (f"random within each prompt (seeded, recorded per run); {OBJECTIVE_NAMES[analysis.objective]} of the "
            f"first run of a prompt against the later ones: {format_ratio(effect.ratio)}{interval} "
            f"(n={effect.first_runs} first, {effect.later_runs} later runs; below 1.00x a cold first run, which "
            "the random order spreads over every variant as noise)")


def distributed_text(results) -> str | None:
    """The distributed setup a results file records (None for one process): ranks, backend, sharding,
    each host's chip and memory, and the share of a verify pass spent communicating where measured."""
    setup = (results.machine or {}).get("distributed")
    if not setup:
        return None
    hosts = "; ".join(f"rank {r['rank']} {r['host']} ({r.get('chip') or '?'}, "
                      f"{r['memory_gb']:.0f} GB)" if r.get("memory_gb") else f"rank {r['rank']} {r['host']}"
                      for r in setup.get("ranks", []))
    text = (f"{setup['world_size']} ranks over {setup['backend']}, target sharded ({setup['sharding']} parallel), "
            f"draft whole on every rank: {hosts}")
    shares = []
    for name, model in sorted(results.models.items()):
        communication, verify = model.get("communication_s"), model.get("verify_s")
        if not communication or not verify:
            continue
        widths = sorted(communication, key=int)
        parts = [f"{100 * statistics.median(communication[n]) / statistics.median(verify[n]):.0f}% at n={n}"
                 for n in dict.fromkeys([widths[0], widths[-1]]) if n in verify and statistics.median(verify[n]) > 0]
        if parts:
            shares.append(f"{name}: {', '.join(parts)}")
    if shares:
        text += ("; share of a verify pass of n tokens spent communicating (the all-reduces alone, median): "
                 + "; ".join(shares))
    return text


def cross_order_text(analysis: SweepAnalysis) -> str:
    from ..crossengine import ORDER_TEXTS

    order = getattr(analysis.plan, "engine_order", None) or "sequential"
    return ORDER_TEXTS.get(order, f"measured {order}")


def cross_lines(analysis: SweepAnalysis, cross) -> list[str]:
    """Below the cross-engine table: a verdict line per size and bit width, and what the ratios rest on."""
    from ..crossengine import interval_text, verdict_line

    return [verdict_line(row, cross) for row in cross.rows] + [f"How to read it: {interval_text(cross)}."]


def versions_text(versions: dict) -> str:
    """The versions a results file recorded (every engine's libraries, whichever measured), Python left out."""
    shown = [f"{name} {value}" for name, value in versions.items() if name != "python" and value]
    return ", ".join(shown) or "versions not recorded"


def header_lines(analysis: SweepAnalysis) -> list[str]:
    results = analysis.results
    machine, versions = results.machine, results.versions
    lines = [
        f"Machine: {machine.get('chip')}, {machine.get('memory_gb') or 0:.0f} GB RAM, {machine.get('os')}; "
        f"{versions_text(versions)}",
        f"Settings: {settings_text(analysis)}, memory budget {results.plan.memory_budget_gb or 0:.1f} GB, "
        + (f"engines {', '.join(analysis.engines)} (each on its own models; {cross_order_text(analysis)})"
           if analysis.several_engines else f"engine {results.plan.engine}"),
        f"Objective: {objective_text(analysis)}",
        estimand_line(analysis),
        f"Order: {order_text(analysis)}",
        *([f"Distributed: {distributed_text(results)}"] if distributed_text(results) else []),
        "Speedup = geometric mean over prompts of speculative / baseline speed, each prompt measured back to "
        f"back; [95% interval]; '?' marks an interval that spans 1.0; no interval below {MIN_UNITS_FOR_INTERVAL} "
        f"{'prompts' if analysis.estimand == 'workload' else 'runs'}. At a pair's best k the interval is widened "
        "for the k values tried, and a verdict's for every setup compared, so choosing the best does not overstate "
        "it; every other interval is a cell's own, not adjusted for the cells shown. '± x sd' is the standard "
        "deviation across runs, never an interval.",
    ]
    if analysis.settings.temp > 0:
        lines.append(f"Note: {TEMPERATURE_NOTE}.")
    return lines
