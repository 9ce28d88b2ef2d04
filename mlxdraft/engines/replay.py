"""The replay engine: it serves a finished sweep's measured runs again instead of generating, so that
another strategy can be judged on exactly the same measurements (`scripts/bench_sweep.py` replays the
smart strategy on the exhaustive sweep's samples: no drift between the two, as there is between two sweeps
measured hours apart on a shared machine).

A generation of (target, draft, method, k, prompt) returns the recorded run of that setup on that prompt
in that group (a baseline run belongs to the group whose draft is loaded), its timings and round counts
unchanged; timed forward passes return the recorded timings. A sweep of one pass only: with more, which
pass a run stands for depends on the strategy (a catch-up pass replays a missed one), so it is refused.
A run asked for twice (a catch-up unit's baseline) is served twice: on the recorded sweep's own pairs,
the ratios are exactly its ratios. Finding, checking and encoding models is left to the engine that
measured them (files only, no weights are loaded). Nothing is slept: what a replayed sweep would have
cost is the sum of its samples' `wall_s`; the target's memory probe is served a baseline run (its peak
memory is the recorded baseline's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import MlxdraftError
from ..measure import MeasureSettings, RunSample, Trace, VerifyRound
from ..methods import Method
from ..prompts import Prompt
from ..results import Results
from ..sources import ModelSource
from .base import Engine, LoadedModel


class NotRecordedError(MlxdraftError):
    """The replayed sweep asked for a run the recorded sweep never measured."""


@dataclass
class ReplayedModel(LoadedModel):
    """A model "loaded" for replay: its record is the recorded sweep's."""

    recorded: dict = field(default_factory=dict)

    def record(self) -> dict:
        return dict(self.recorded)


class ReplayEngine:
    """Serves `recorded`'s samples; `files` (the engine that measured them) resolves, checks and encodes."""

    def __init__(self, recorded: Results, prompts: list[Prompt], files: Engine):
        if recorded.plan.settings.runs != 1:
            raise NotRecordedError(f"only a sweep of one pass can be replayed; this one has "
                                   f"{recorded.plan.settings.runs} (-r/--runs)")
        if [p.text for p in prompts] != [p["text"] for p in recorded.plan.prompts]:
            raise NotRecordedError("the replayed sweep's prompts are not the recorded sweep's")
        self.recorded = recorded
        self.prompts = prompts
        self.files = files
        self.name = files.name
        self._runs: dict[tuple, RunSample] = {}  # (target, group's draft, method, k, prompt) -> its run
        for record in recorded.groups.values():
            for sample in record.samples:
                key = (record.target, record.draft, sample.method, sample.num_draft_tokens, sample.prompt_index)
                self._runs[key] = sample
        self._prompt_index: dict[tuple, int] = {}  # (target name, prompt ids) -> index in `prompts`
        self._loaded: list[str] = []  # models loaded since the sweep last freed memory (it does between groups)

    def __getattr__(self, name):  # environment, memory_budget, supports, context_length, commands, ...
        return getattr(self.files, name)

    def resolve(self, name: str, allow_download: bool = True, progress=None) -> ModelSource:
        return self.files.resolve(name, allow_download=False, progress=progress)

    def encode(self, source: ModelSource, prompt: Prompt) -> list[int]:
        ids = self.files.encode(source, prompt)
        if prompt not in self.prompts:
            raise NotRecordedError(f"the recorded sweep has no prompt {prompt.text[:40]!r}")
        self._prompt_index[(source.name, tuple(ids))] = self.prompts.index(prompt)
        return ids

    def load(self, source: ModelSource) -> LoadedModel:
        self._loaded.append(source.name)
        return ReplayedModel(source, model=None, tokenizer=None, config={}, weights_bytes=0,
                             recorded=self.recorded.models.get(source.name, {}))

    def check_loaded(self, target: LoadedModel, draft: LoadedModel) -> None:
        pass

    def free_memory(self) -> None:
        self._loaded.clear()

    def time_forward(self, loaded: LoadedModel, context_ids: list[int], widths: list[int],
                     repeats: int = 5) -> dict[int, list[float]]:
        record = self.recorded.models.get(loaded.name, {})
        if widths == [1] and "token_s" in record:
            return {1: list(record["token_s"])}
        verify = record.get("verify_s", {})
        if not all(str(n) in verify for n in widths):
            raise NotRecordedError(f"{loaded.name}'s forward passes of {widths} tokens were not timed in the "
                                   "recorded sweep")
        return {n: list(verify[str(n)]) for n in widths}

    def generate(self, target: LoadedModel, prompt_ids: list[int], settings: MeasureSettings, method: Method,
                 draft: LoadedModel | None = None, num_draft_tokens: int = 0, max_tokens: int | None = None,
                 params: dict | None = None, on_round=None) -> Trace:
        if max_tokens is not None:  # a warm-up: unmeasured in the recorded sweep too
            return Trace([], [], [], [], 0.0, "length")
        prompt = self._prompt_index.get((target.name, tuple(prompt_ids)))
        k = num_draft_tokens if method.key != "baseline" else 0
        if method.needs_draft:
            group_draft = draft.name if draft is not None else None
        else:  # a baseline run (or a method without a draft) belongs to the group whose draft is loaded
            group_draft = next((name for name in reversed(self._loaded) if name != target.name), None)
        key = (target.name, group_draft, method.key, k, prompt)
        if key not in self._runs and method.key == "baseline" and group_draft is None:
            # the target's memory probe, before any draft is loaded: any of its baseline runs on that prompt
            key = next((other for other in self._runs if (other[0], *other[2:]) == (key[0], *key[2:])), key)
        if key not in self._runs:
            raise NotRecordedError(f"the recorded sweep has no run of {method.key} k={k} with target {target.name}"
                                   f"{f' and draft {group_draft}' if group_draft else ''} on prompt "
                                   f"{'?' if prompt is None else prompt + 1}")
        return trace_of(self._runs[key])


def trace_of(sample: RunSample) -> Trace:
    """A trace that `measure.sample_from_trace` turns back into `sample`'s figures."""
    first_round = sample.generated_tokens - sample.decode_tokens
    return Trace(
        token_ids=list(sample.token_ids),
        round_sizes=[first_round, sample.decode_tokens] if sample.decode_tokens else [first_round],
        round_end_s=[sample.ttft_s, sample.wall_s] if sample.decode_tokens else [sample.wall_s],
        rounds=[VerifyRound(proposed, accepted, bool(done)) for proposed, accepted, done in sample.rounds or []],
        peak_memory_gb=sample.peak_memory_gb,
        finish_reason=sample.finish_reason,
        draft_s=sample.draft_s,
        target_s=sample.target_s,
        token_texts=sample.token_texts,
    )
