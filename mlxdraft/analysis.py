"""What a sweep's raw samples say: statistics per (target, draft, k), each pair's best k, and
each target's best setup with the mlx-lm commands that use it. Derived once per report."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from .results import sample_from_dict
from .stats import Comparison, Summary, compare, summarize


@dataclass
class SweepCase:
    """One (target, draft, k) of a sweep, with its statistics when it was measured."""

    target: str
    draft: str | None
    num_draft_tokens: int | None
    status: str  # done, pending, skipped, failed
    reason: str | None
    comparison: Comparison | None


@dataclass
class Recommendation:
    target: str
    case: SweepCase | None  # the fastest measured setup, if any
    commands: list[str] = field(default_factory=list)  # mlx-lm commands, when it beats the baseline

    @property
    def beats_baseline(self) -> bool:
        return bool(self.case and self.case.comparison.speedup.ratio > 1.0)

    def to_dict(self) -> dict:
        if self.case is None:
            return {"target": self.target, "draft": None}
        return {"target": self.target, "draft": self.case.draft, "num_draft_tokens": self.case.num_draft_tokens,
                "speedup": self.case.comparison.speedup.to_dict(),
                "lossless": self.case.comparison.lossless.identical,
                "beats_baseline": self.beats_baseline, "commands": self.commands}


@dataclass
class SweepAnalysis:
    state: dict
    cases: list[SweepCase]
    best: dict[tuple[str, str], SweepCase]  # (target, draft) -> case with the highest mean speedup
    baselines: dict[str, Summary | None]  # target -> baseline decode tok/s pooled over its pairs
    statuses: dict[tuple[str, str | None], str]

    @property
    def targets(self) -> list[str]:
        return self.state["plan"]["targets"]

    @property
    def drafts(self) -> list[str]:
        return self.state["plan"]["drafts"]

    def problems(self) -> list[dict]:
        return [r for r in self.state["groups"].values() if r["status"] in ("skipped", "failed")]

    def recommendations(self) -> list[Recommendation]:
        models = self.state.get("models", {})
        out = []
        for target in self.targets:
            candidates = [case for (t, _), case in self.best.items() if t == target]
            if not candidates:
                out.append(Recommendation(target, None))
                continue
            case = max(candidates, key=lambda c: c.comparison.speedup.ratio)
            recommendation = Recommendation(target, case)
            if recommendation.beats_baseline:
                recommendation.commands = mlx_lm_commands(
                    models.get(target, {"path": target}), models.get(case.draft, {"path": case.draft}),
                    case.num_draft_tokens)
            out.append(recommendation)
        return out


def analyse_sweep(state: dict) -> SweepAnalysis:
    settings = state["plan"]["settings"]
    greedy = settings["temp"] == 0
    cases = []
    pooled: dict[str, list[float]] = {}
    for record in state["groups"].values():
        samples = [sample_from_dict(s) for s in record["samples"]]
        baseline = [s for s in samples if s.is_baseline]
        pooled.setdefault(record["target"], []).extend(s.decode_tps for s in baseline)
        if record["draft"] is None:
            cases.append(SweepCase(record["target"], None, None, record["status"], record["reason"], None))
            continue
        for k in state["plan"]["num_draft_tokens"]:
            speculative = [s for s in samples if s.num_draft_tokens == k]
            comparison = compare(baseline, speculative, k, greedy, settings["seed"]) if speculative and baseline \
                else None
            cases.append(SweepCase(record["target"], record["draft"], k, record["status"], record["reason"],
                                   comparison))
    best: dict[tuple[str, str], SweepCase] = {}
    for case in cases:
        if case.draft is None or not case.comparison or not case.comparison.speedup:
            continue
        key = (case.target, case.draft)
        if key not in best or case.comparison.speedup.ratio > best[key].comparison.speedup.ratio:
            best[key] = case
    return SweepAnalysis(
        state=state,
        cases=cases,
        best=best,
        baselines={target: summarize(values) for target, values in pooled.items()},
        statuses={(r["target"], r["draft"]): r["status"] for r in state["groups"].values()},
    )


def label(name: str) -> str:
    """Short display name: model lists' short names and repo ids as they are, folders by name."""
    return Path(name).name if name.startswith(("/", ".", "~")) else name


def mlx_lm_commands(target: dict, draft: dict, num_draft_tokens: int) -> list[str]:
    """Commands that use this setup with mlx-lm itself (model records: repo id, else local path)."""
    model = shlex.quote(target.get("repo_id") or target["path"])
    draft_model = shlex.quote(draft.get("repo_id") or draft["path"])
    return [
        f"mlx_lm.generate --model {model} --draft-model {draft_model} "
        f"--num-draft-tokens {num_draft_tokens} --prompt 'Hello'",
        f"mlx_lm.server --model {model} --draft-model {draft_model} --num-draft-tokens {num_draft_tokens}",
    ]
