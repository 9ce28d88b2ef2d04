"""The sweep: every sensible target x draft x number-of-draft-tokens, measured side by side,
saved after every run (atomically) and resumable after a crash, a Ctrl-C or kill -9."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import CatalogEntry, family_entries, sensible_pair
from .errors import InvalidInputError, MlxdraftError, ResumeMismatchError
from .measure import MeasureSettings, RunSample, Variant, iter_interleaved_runs
from .memory import MemoryBudget, estimate_pair, fits
from .prompts import Prompt
from .results import SCHEMA_VERSION, environment, load_results, model_record, now_iso, write_json_atomic

CHAT_TEMPLATE_TOKENS = 64  # room for the chat template around the longest prompt, in the KV estimate


@dataclass(frozen=True)
class ModelChoice:
    """A model named for the sweep; catalog facts when it came from a model list."""

    name: str
    params_b: float | None = None
    precision: str | None = None
    size_gb: float | None = None

    @classmethod
    def from_entry(cls, entry: CatalogEntry) -> ModelChoice:
        return cls(entry.name, entry.params_b, entry.precision, entry.size_gb)


def _matches(entry: CatalogEntry, sizes: list[str], precisions: list[str]) -> bool:
    return (not sizes or entry.size_label in sizes) and (not precisions or entry.precision in precisions)


def choose_models(families: list[str], targets: list[str], drafts: list[str], target_sizes=(),
                  target_precisions=(), draft_sizes=(), draft_precisions=()):
    """(targets, drafts) as ModelChoices from families (filtered by size and precision) plus
    explicitly named models."""
    if not families and not (targets and drafts):
        raise InvalidInputError("name what to sweep: --family F, or both --targets and --drafts")
    chosen_targets: list[ModelChoice] = []
    chosen_drafts: list[ModelChoice] = []
    for family in families:
        for entry in family_entries(family):
            if entry.can_target and _matches(entry, list(target_sizes), list(target_precisions)):
                chosen_targets.append(ModelChoice.from_entry(entry))
            if entry.can_draft and _matches(entry, list(draft_sizes), list(draft_precisions)):
                chosen_drafts.append(ModelChoice.from_entry(entry))
    chosen_targets += [_choice_for_name(name) for name in targets]
    chosen_drafts += [_choice_for_name(name) for name in drafts]
    if not chosen_targets:
        raise InvalidInputError("no targets left to sweep; loosen --target-sizes/--target-precisions")
    if not chosen_drafts:
        raise InvalidInputError("no drafts left to sweep; loosen --draft-sizes/--draft-precisions")
    return _unique(chosen_targets), _unique(chosen_drafts)


def _choice_for_name(name: str) -> ModelChoice:
    if ":" in name and "/" not in name:
        from .catalog import find_entry

        return ModelChoice.from_entry(find_entry(name))
    return ModelChoice(name)


def _unique(choices: list[ModelChoice]) -> list[ModelChoice]:
    seen, out = set(), []
    for choice in choices:
        if choice.name not in seen:
            seen.add(choice.name)
            out.append(choice)
    return out


@dataclass(frozen=True)
class Group:
    """A target measured with one draft (all k interleaved with its baseline), or alone."""

    target: ModelChoice
    draft: ModelChoice | None

    @property
    def key(self) -> str:
        return f"{self.target.name} | {self.draft.name if self.draft else '-'}"


@dataclass
class SweepPlan:
    targets: list[ModelChoice]
    drafts: list[ModelChoice]
    num_draft_tokens: list[int]
    settings: MeasureSettings
    prompts: list[Prompt]
    budget: MemoryBudget

    def groups(self) -> list[Group]:
        """Each target with every draft that is not itself and not larger than it; a target
        with no such draft is still measured alone, for its baseline."""
        groups = []
        for target in self.targets:
            drafts = [draft for draft in self.drafts if sensible_pair(target, draft)]
            groups += [Group(target, draft) for draft in drafts] or [Group(target, None)]
        return groups

    def variants_per_group(self, group: Group) -> int:
        return 1 + (len(self.num_draft_tokens) if group.draft else 0)

    def total_runs(self) -> int:
        return sum(self.settings.runs * len(self.prompts) * self.variants_per_group(g) for g in self.groups())

    def fingerprint(self) -> dict:
        """Everything that must be equal for a resumed sweep to continue the same measurement."""
        return {
            "settings": dataclasses.asdict(self.settings),
            "num_draft_tokens": list(self.num_draft_tokens),
            "targets": [t.name for t in self.targets],
            "drafts": [d.name for d in self.drafts],
            "prompts": [{"category": p.category, "text": p.text} for p in self.prompts],
            "memory_budget_gb": round(self.budget.gb, 3),
        }


@dataclass
class SweepEvent:
    """Progress of a sweep, one per measured run or group decision."""

    kind: str  # "loading", "run", "skipped", "failed", "done"
    group_index: int
    groups_total: int
    group: Group
    runs_done: int
    runs_total: int
    elapsed_s: float
    eta_s: float | None = None
    message: str = ""
    sample: RunSample | None = None


def _new_state(plan: SweepPlan) -> dict:
    env = environment()
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "sweep",
        "created_at": now_iso(),
        "updated_at": now_iso(),
        **env,
        "memory_budget": {"gb": plan.budget.gb, "source": plan.budget.source},
        "plan": plan.fingerprint(),
        "models": {},
        "groups": {},
    }


def _describe_difference(saved: dict, wanted: dict) -> str:
    for key in wanted:
        if saved.get(key) != wanted[key]:
            if isinstance(wanted[key], dict):
                for sub in wanted[key]:
                    if saved.get(key, {}).get(sub) != wanted[key][sub]:
                        return f"{sub} is {saved.get(key, {}).get(sub)!r} there, {wanted[key][sub]!r} now"
            if key == "prompts":
                return "the prompts differ"
            return f"{key} is {saved.get(key)!r} there, {wanted[key]!r} now"
    return "the settings differ"


def open_state(plan: SweepPlan, output: Path, resume: bool) -> dict:
    """The results to continue: a fresh state, or the saved one after checking its settings."""
    output = Path(output)
    if not output.exists():  # --resume on a missing file simply starts the sweep
        return _new_state(plan)
    if not resume:
        raise InvalidInputError(
            f"{output} already exists; pass --resume to continue it, or choose another --output"
        )
    state = load_results(output)
    if state.get("kind") != "sweep":
        raise InvalidInputError(f"{output} holds a {state.get('kind')} result, not a sweep")
    wanted = plan.fingerprint()
    if state.get("plan") != wanted:
        raise ResumeMismatchError(
            f"cannot resume {output}: it was made with different settings "
            f"({_describe_difference(state.get('plan', {}), wanted)}); rerun with the same options "
            "or choose another --output"
        )
    return state


def _free_memory() -> None:
    """Give memory of models no longer referenced back before the next one loads."""
    import gc

    import mlx.core as mx

    gc.collect()
    mx.clear_cache()


@dataclass
class _Clock:
    start: float = field(default_factory=time.perf_counter)
    measured_runs: int = 0
    measured_s: float = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def eta(self, remaining_runs: int) -> float | None:
        if not self.measured_runs:
            return None
        return self.measured_s / self.measured_runs * remaining_runs


def iter_sweep(plan: SweepPlan, output: Path, resume: bool = False,
               allow_download: bool = True) -> Iterator[SweepEvent]:
    """Run (or continue) the sweep, saving to `output` after every run; yields progress."""
    from .loading import load_model, resolve_model
    from .pairing import TokenizerCache, check_caches, check_sources

    output = Path(output)
    state = open_state(plan, output, resume)
    state.setdefault("sessions", []).append({"started_at": now_iso(), **environment()})
    groups = plan.groups()
    runs_total = plan.total_runs()
    clock = _Clock()
    runs_done = 0
    save = lambda: write_json_atomic(output, {**state, "updated_at": now_iso()})  # noqa: E731
    save()

    loaded_target = None
    tokenizers = TokenizerCache()

    def event(kind, index, group, message="", sample=None):
        return SweepEvent(kind, index, len(groups), group, runs_done, runs_total, clock.elapsed(),
                          clock.eta(runs_total - runs_done), message, sample)

    for index, group in enumerate(groups, start=1):
        group_runs = plan.settings.runs * len(plan.prompts) * plan.variants_per_group(group)
        runs_after_group = runs_done + group_runs
        record = state["groups"].setdefault(
            group.key,
            {"target": group.target.name, "draft": group.draft.name if group.draft else None,
             "status": "pending", "reason": None, "samples": []},
        )
        if record["status"] != "pending":
            runs_done = runs_after_group
            continue
        try:
            reason = _precheck_sizes(plan, group)
            if reason:
                raise _Skip(reason)
            target_source = resolve_model(group.target.name, allow_download=allow_download)
            draft_source = None
            if group.draft:
                draft_source = resolve_model(group.draft.name, allow_download=allow_download)
                check_sources(target_source, draft_source, tokenizers)
            longest = max(len(tokenizers.get(target_source).encode(p.text)) for p in plan.prompts)
            tokens = longest + CHAT_TEMPLATE_TOKENS + plan.settings.max_tokens + max(plan.num_draft_tokens)
            estimate = estimate_pair(target_source.path, draft_source.path if draft_source else None, tokens)
            if estimate.total_gb > plan.budget.gb:
                raise _Skip(
                    f"needs about {estimate.total_gb:.1f} GB (weights {estimate.target_weights_gb:.1f} + "
                    f"{estimate.draft_weights_gb:.1f} GB, KV cache {estimate.kv_cache_gb:.2f} GB), over the "
                    f"{plan.budget.gb:.1f} GB budget ({plan.budget.source})"
                )
            if loaded_target is None or loaded_target.name != group.target.name:
                loaded_target = None
                _free_memory()
                yield event("loading", index, group, f"loading target {group.target.name}")
                loaded_target = load_model(target_source)
                state["models"][group.target.name] = model_record(loaded_target)
            variants = [Variant()]
            draft = None
            if group.draft:
                yield event("loading", index, group, f"loading draft {group.draft.name}")
                draft = loaded_target if draft_source.path == target_source.path else load_model(draft_source)
                state["models"][group.draft.name] = model_record(draft)
                check_caches(loaded_target, draft)
                variants += [Variant(draft, k) for k in plan.num_draft_tokens]
            skip = len(record["samples"])
            runs_done += skip
            started = time.perf_counter()
            for sample in iter_interleaved_runs(loaded_target, variants, plan.prompts, plan.settings, skip):
                record["samples"].append(dataclasses.asdict(sample))
                runs_done += 1
                clock.measured_runs += 1
                clock.measured_s += time.perf_counter() - started
                started = time.perf_counter()
                save()
                yield event("run", index, group, sample=sample)
            record["status"] = "done"
            variants = draft = None
            _free_memory()
            save()
            yield event("done", index, group)
        except _Skip as skip_reason:
            record.update(status="skipped", reason=str(skip_reason))
            runs_done = runs_after_group
            save()
            yield event("skipped", index, group, str(skip_reason))
        except Exception as exc:  # noqa: BLE001 - a failed case is recorded, the sweep goes on
            reason = str(exc) if isinstance(exc, MlxdraftError) else f"{type(exc).__name__}: {exc}"
            record.update(status="failed", reason=reason)
            runs_done = runs_after_group
            save()
            yield event("failed", index, group, record["reason"])
    loaded_target = None
    _free_memory()


class _Skip(Exception):
    pass


def _precheck_sizes(plan: SweepPlan, group: Group) -> str | None:
    """Skip before downloading anything when the model lists' sizes already exceed the budget."""
    sizes = [group.target.size_gb] + ([group.draft.size_gb] if group.draft else [])
    if any(size is None for size in sizes):
        return None
    total = sum(sizes)
    if not fits(total, plan.budget):
        return (f"weights alone are about {total:.1f} GB by the model lists, too much for the "
                f"{plan.budget.gb:.1f} GB budget ({plan.budget.source})")
    return None
