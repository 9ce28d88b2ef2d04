"""Rendering results for people: the `pair` block, and the sweep report in its formats.
Every figure shown carries its unit; nothing here measures or stores anything."""

from __future__ import annotations

import shlex

from tabulate import tabulate

from .stats import Comparison, Speedup, Summary


def format_summary(summary: Summary | None, unit: str = "", digits: int = 1, scale: float = 1.0) -> str:
    """'12.3 ± 0.4 tok/s (11.9 … 12.8, n=12)'."""
    if summary is None:
        return "n/a"
    unit = f" {unit}" if unit else ""
    text = (
        f"{summary.mean * scale:.{digits}f} ± {summary.stdev * scale:.{digits}f}{unit} "
        f"({summary.min * scale:.{digits}f} … {summary.max * scale:.{digits}f}, n={summary.n})"
    )
    if summary.outliers:
        text += f", {summary.outliers} outlier{'s' if summary.outliers > 1 else ''}"
    return text


def format_speedup(speedup: Speedup | None, with_ci: bool = True) -> str:
    if speedup is None:
        return "n/a"
    text = f"{speedup.ratio:.2f}x ± {speedup.stdev:.2f}"
    if with_ci and speedup.ci_low is not None:
        text += f" (95% CI {speedup.ci_low:.2f} … {speedup.ci_high:.2f})"
    return text


def format_lossless(comparison: Comparison) -> str:
    lossless = comparison.lossless
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


def mlx_lm_commands(target: dict, draft: dict, num_draft_tokens: int) -> list[str]:
    """Commands that use this setup with mlx-lm itself."""
    model = shlex.quote(target.get("repo_id") or target["path"])
    draft_model = shlex.quote(draft.get("repo_id") or draft["path"])
    return [
        f"mlx_lm.generate --model {model} --draft-model {draft_model} "
        f"--num-draft-tokens {num_draft_tokens} --prompt 'Hello'",
        f"mlx_lm.server --model {model} --draft-model {draft_model} --num-draft-tokens {num_draft_tokens}",
    ]


def _model_line(record: dict) -> str:
    return (
        f"{record['name']} ({record.get('model_type')}, {record.get('precision')}, "
        f"{record.get('weights_gb', 0):.2f} GB of weights)"
    )


def render_pair(result) -> str:
    """The compact human block printed by `mlxdraft pair`."""
    comparison = result.comparison()
    settings = result.settings
    mode = "fixed length, EOS ignored" if settings.fixed_length else "natural length, stops at EOS"
    sampling = "greedy" if settings.temp == 0 else f"temperature {settings.temp}"
    histogram = "  ".join(f"{n}:{count}" for n, count in enumerate(comparison.accepted_length_counts))
    rows = [
        ("Target", _model_line(result.target)),
        ("Draft", _model_line(result.draft)),
        (
            "Settings",
            f"k={result.num_draft_tokens} draft tokens, max {settings.max_tokens} tokens ({mode}), "
            f"{settings.runs} pass(es) x {len(result.prompts)} prompt(s), warmup {settings.warmup}, "
            f"{sampling}, seed {settings.seed}",
        ),
        ("Baseline", "decode " + format_summary(comparison.baseline_decode_tps, "tok/s")),
        ("Speculative", "decode " + format_summary(comparison.speculative_decode_tps, "tok/s")),
        ("Speedup", format_speedup(comparison.speedup) + " in decode tok/s vs the baseline"),
        (
            "Acceptance",
            format_summary(comparison.acceptance_rate, "%", scale=100)
            + " of proposed draft tokens accepted",
        ),
        (
            "Draft share",
            format_summary(comparison.draft_token_share, "%", scale=100)
            + " of emitted tokens came from the draft",
        ),
        ("Tokens/round", format_summary(comparison.tokens_per_round, "tokens", digits=2)),
        ("Accepted/round", f"{histogram}   (accepted drafts: number of verify rounds)"),
        (
            "TTFT",
            f"baseline {format_summary(comparison.baseline_ttft_s, 's', digits=3)}; "
            f"speculative {format_summary(comparison.speculative_ttft_s, 's', digits=3)}",
        ),
        (
            "Peak memory",
            f"baseline {format_summary(comparison.baseline_peak_memory_gb, 'GB', digits=2)}; "
            f"speculative {format_summary(comparison.speculative_peak_memory_gb, 'GB', digits=2)}",
        ),
        ("Lossless", format_lossless(comparison)),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"{label.ljust(width)}  {value}" for label, value in rows]
    if comparison.per_category:
        table = [
            (
                category,
                format_speedup(_speedup_from(values["speedup"]), with_ci=False),
                _percent(values["acceptance_rate"]),
            )
            for category, values in comparison.per_category.items()
        ]
        lines += ["", tabulate(table, headers=["category", "speedup", "acceptance"], tablefmt="simple")]
    lines += ["", "Use it with mlx-lm:"] + [
        "  " + cmd for cmd in mlx_lm_commands(result.target, result.draft, result.num_draft_tokens)
    ]
    return "\n".join(lines)


def _speedup_from(data: dict | None) -> Speedup | None:
    return Speedup(**data) if data else None


def _percent(data: dict | None) -> str:
    return "n/a" if not data else f"{data['mean'] * 100:.0f}% ± {data['stdev'] * 100:.0f}"
