"""The sweep: every sensible target x draft x method x number of draft tokens, measured side by
side, saved after every run (atomically, under a lock) and resumable after a crash, a Ctrl-C or
kill -9. `mlxdraft pair` is a sweep of one group. Models are reached only through an Engine."""

from __future__ import annotations

import contextlib
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import CatalogEntry, family_entries, precision_matches, sensible_pair
from .engines import DEFAULT_ENGINE, Engine, get_engine
from .errors import IncompatibleModelsError, InvalidInputError, MlxdraftError, ResumeMismatchError
from .estimates import draft_token_s, fit_group_predictions, stored_predictions
from .files import ResultsLock, write_json_atomic
from .measure import MeasureSettings, RunSample, Variant, iter_interleaved_runs, measure_run, warm_up
from .memory import MemoryBudget, fits
from .methods import METHODS, Method, get_method
from .order import DESIGN as ORDER_DESIGN
from .order import unit_order
from .precision import bits_word
from .prediction import predict_setups
from .prompts import Prompt
from .race import MIN_UNITS_FOR_RACE, Race, earlier_rivals, leader_floor
from .recording import record_commands, record_methods
from .results import GroupRecord, PlanRecord, Results, command_line, group_key, load_results, now_iso
from .settle import drop_unpaired_baselines, next_catch_up


@dataclass(frozen=True)
class ModelChoice:
    """A model named for the sweep; catalog facts when it came from a model list. `engine`: the engine
    that reads its files (None: the plan's first engine)."""

    name: str
    params_b: float | None = None
    precision: str | None = None
    size_gb: float | None = None
    engine: str | None = None
    family: str | None = None
    size: str | None = None  # the model lists' size label ("7b")

    @classmethod
    def from_entry(cls, entry: CatalogEntry) -> ModelChoice:
        return cls(entry.name, entry.params_b, entry.precision, entry.size_gb,
                   entry.engine, entry.family, entry.size_label)

    def facts(self) -> dict:
        """What a results file records about the model beside its files: its engine and, from a model list,
        its family, size and precision (reports compare engines by size and bit width)."""
        facts = {"engine": self.engine, "family": self.family, "size_label": self.size, "params_b": self.params_b,
                 "list_precision": self.precision}
        return {key: value for key, value in facts.items() if value is not None}


# The speculative method measured when none is named, per engine (an engine not listed: "mlx-lm" when it runs it,
# else the first speculative method it declares).
DEFAULT_METHODS = {"mlx-lm": "mlx-lm", "llama.cpp": "llama.cpp-draft"}


def engine_of_path(name: str) -> str | None:
    """The engine that reads a model given by path: a .gguf file is llama.cpp's, a folder with config.json
    mlx-lm's; None for anything else (a repo id, a short name)."""
    try:
        path = Path(name).expanduser()
        if path.suffix.lower() == ".gguf":
            return "llama.cpp"
        if path.is_dir() and (path / "config.json").is_file():
            return "mlx-lm"
    except (OSError, ValueError):  # a name too long to be a path, or one holding a NUL
        pass
    return None


def supports(engine, method: Method) -> bool:
    return engine.supports(method)


def can(engine, capability: str) -> bool:
    """Whether an engine declares a capability (engines.base.Capabilities: "forward_timing",
    "memory_estimate", ...); an engine from before capabilities were declared could do everything."""
    capabilities = getattr(engine, "capabilities", None)
    return True if capabilities is None else bool(getattr(capabilities, capability, False))


def default_methods(engines: list) -> list[Method]:
    """The speculative methods measured when --methods is not given: each engine's default, in order."""
    keys = []
    for engine in engines:
        key = DEFAULT_METHODS.get(engine.name)
        if key is None:
            declared = getattr(getattr(engine, "capabilities", None), "methods", None)
            speculative = [k for k in declared or () if k != "baseline" and k in METHODS]
            key = "mlx-lm" if declared is None or "mlx-lm" in speculative or not speculative else speculative[0]
        keys.append(key)
    return [get_method(key) for key in dict.fromkeys(keys)]


SAMPLING_IN_USE = (("temp", lambda s: s.temp > 0), ("top_p", lambda s: s.top_p not in (0, 1)),
                   ("top_k", lambda s: s.top_k > 0), ("min_p", lambda s: s.min_p > 0))


def check_sampling(settings: MeasureSettings, engines: list) -> None:
    """Every sampling setting in use must be one each engine honours (its capabilities.sampling), so that no
    figure is recorded under a setting an engine ignored: one Error line names the first that is not."""
    for engine in engines:
        honoured = getattr(getattr(engine, "capabilities", None), "sampling", None)
        if honoured is None:
            continue
        for name, in_use in SAMPLING_IN_USE:
            if in_use(settings) and name not in honoured:
                flag = "--" + name.replace("_", "-")
                raise InvalidInputError(f"the {engine.name} engine does not honour {flag} (it honours "
                                        f"{', '.join(honoured) or 'none'}); leave {flag} at its default or "
                                        "choose another engine")


def default_draft_method(engine_name: str) -> str:
    """The method `generate` runs when a draft is named and no method: mlxdraft's own loop on mlx-lm (exact at
    temperature > 0), the engine's own speculation elsewhere."""
    return {"mlx-lm": "draft"}.get(engine_name) or DEFAULT_METHODS.get(engine_name, "draft")


def check_methods(methods: list[Method], engines: list) -> None:
    """Every method must be run by one of the engines: one Error line names the first that is not."""
    for method in methods:
        if not any(supports(engine, method) for engine in engines):
            names = " or ".join(f"the {engine.name} engine" for engine in engines)
            raise InvalidInputError(f"{names} cannot run the {method.key} method")


def _matches(entry: CatalogEntry, sizes: list[str], precisions: list[str]) -> bool:
    return ((not sizes or entry.size_label in [s.lower() for s in sizes])
            and (not precisions or any(precision_matches(entry, p) for p in precisions)))


def _choices_text(entries: list[CatalogEntry], role: str) -> str:
    fitting = [e for e in entries if (e.can_target if role == "target" else e.can_draft)]
    sizes = ", ".join(dict.fromkeys(e.size_label for e in fitting)) or "none"
    precisions = ", ".join(dict.fromkeys(e.precision for e in fitting)) or "none"
    return f"{role} sizes: {sizes}; {role} precisions: {precisions}"


def choose_models(families: list[str], targets: list[str], drafts: list[str], target_sizes=(),
                  target_precisions=(), draft_sizes=(), draft_precisions=(), engines: list[str] | None = None):
    """(targets, drafts) as ModelChoices from families (filtered by size and precision, and by engine:
    only entries of `engines`, default mlx-lm's) plus explicitly named models, each of which must belong
    to one of `engines` when they are given."""
    if not families and not (targets and drafts):
        raise InvalidInputError("name what to sweep: --family F, or both --targets and --drafts")
    chosen_targets: list[ModelChoice] = []
    chosen_drafts: list[ModelChoice] = []
    wanted = list(engines or [DEFAULT_ENGINE])
    entries = [entry for family in families for entry in family_entries(family)
               if entry.engine in wanted]
    for entry in entries:
        if entry.can_target and _matches(entry, list(target_sizes), list(target_precisions)):
            chosen_targets.append(ModelChoice.from_entry(entry))
        if entry.can_draft and _matches(entry, list(draft_sizes), list(draft_precisions)):
            chosen_drafts.append(ModelChoice.from_entry(entry))
    named = [choice_for_name(name, wanted[0]) for name in targets + drafts]
    for choice in named:
        if engines and choice.engine not in engines:
            raise InvalidInputError(f"{choice.name} is a model of the {choice.engine} engine, not of "
                                    f"{', '.join(engines)}; add {choice.engine} to --engines")
    chosen_targets += named[:len(targets)]
    chosen_drafts += named[len(targets):]
    if not chosen_targets:
        raise InvalidInputError("no targets left to sweep; loosen --target-sizes/--target-precisions "
                                f"({_choices_text(entries, 'target')})")
    if not chosen_drafts:
        raise InvalidInputError("no drafts left to sweep; loosen --draft-sizes/--draft-precisions "
                                f"({_choices_text(entries, 'draft')})")
    return _unique(chosen_targets), _unique(chosen_drafts)


def _is_folder(name: str) -> bool:
    try:
        return Path(name).is_dir()
    except (OSError, ValueError):  # a name too long to be a path, or one holding a NUL
        return False


def choice_for_name(name: str, engine: str | None = None) -> ModelChoice:
    """A model the user named: with its list facts (and engine) when it is a short name; a folder or
    file by its absolute path, so that a results file means the same models from any working
    directory, and of the engine that reads it (`engine_of_path`); else of `engine` (default mlx-lm)."""
    if ":" in name and "/" not in name:
        from .catalog import find_entry

        return ModelChoice.from_entry(find_entry(name))
    if name.startswith((".", "/", "~")) or _is_folder(name) or name.lower().endswith(".gguf"):
        from .errors import ModelNotFoundError
        from .paths import expand_user

        path = str(expand_user(name, "model folder", ModelNotFoundError).absolute())
        return ModelChoice(path, engine=engine_of_path(path) or engine or DEFAULT_ENGINE)
    return ModelChoice(name, engine=engine or DEFAULT_ENGINE)


def pair_choices(target: str, draft: str | None, engine: str | None = None) -> tuple[ModelChoice, ModelChoice | None]:
    """A target and its draft as `pair` and `generate` measure them: on `engine`, or on the engine that
    reads the target; a draft must run on the target's engine."""
    if engine:
        get_engine(engine)  # a misspelt engine is named as such
    target_choice = choice_for_name(target, engine)
    if engine and target_choice.engine != engine:
        raise InvalidInputError(f"{target} is a model of the {target_choice.engine} engine, not of {engine}; "
                                f"name another model or --engine {target_choice.engine}")
    engine = target_choice.engine
    draft_choice = choice_for_name(draft, engine) if draft else None
    if draft_choice and draft_choice.engine != engine:
        raise InvalidInputError(f"the draft {draft} is a model of the {draft_choice.engine} engine and the target "
                                f"{target} of {engine}; a draft runs on its target's engine")
    return target_choice, draft_choice


def engines_of(choices: list[ModelChoice]) -> list[str]:
    """The engines of the chosen models, in order (mlx-lm when none says)."""
    return list(dict.fromkeys(choice.engine or DEFAULT_ENGINE for choice in choices)) or [DEFAULT_ENGINE]


def _unique(choices: list[ModelChoice]) -> list[ModelChoice]:
    seen, out = set(), []
    for choice in choices:
        if choice.name not in seen:
            seen.add(choice.name)
            out.append(choice)
    return out


@dataclass(frozen=True)
class Group:
    """A target measured with one draft, or alone: its baseline and every (method, k) that runs in
    this group, interleaved run by run."""

    target: ModelChoice
    draft: ModelChoice | None
    methods: tuple[Method, ...] = ()  # speculative methods measured here (those its engine runs)
    engine: str = DEFAULT_ENGINE  # the engine that loads and runs target and draft

    @property
    def key(self) -> str:
        return group_key(self.target.name, self.draft.name if self.draft else None)

    def setups(self, num_draft_tokens: list[int]) -> list[tuple[Method, int]]:
        """(method, k) of every variant, the baseline first."""
        setups = [(get_method("baseline"), 0)]
        for method in self.methods:
            setups += [(method, k) for k in num_draft_tokens] if method.uses_k else [(method, 0)]
        return setups


# How groups of different engines are measured: "sequential", one engine's groups after the other's on the same
# prompts (not interleaved per prompt), so a ratio between engines can include drift between their times.
ENGINE_ORDER = "sequential"


@dataclass
class SweepPlan:
    targets: list[ModelChoice]
    drafts: list[ModelChoice]
    num_draft_tokens: list[int]
    settings: MeasureSettings
    prompts: list[Prompt]
    budget: MemoryBudget
    kind: str = "sweep"  # "pair": exactly one group, the target with the draft the user named (or none)
    methods: list[Method] = field(default_factory=lambda: [get_method("mlx-lm")])
    method_params: dict[str, dict] = field(default_factory=dict)  # only parameters the user set
    engine: str = DEFAULT_ENGINE  # the first of `engines` (older callers name one engine here)
    strategy: str = "exhaustive"  # "smart": each group a race that measures only what can still win
    objective: str = "e2e"  # what the race is run on
    engines: list[str] | None = None  # every engine measured, side by side (default: [engine])
    # engine name -> engine object, overriding the registry (SweepRun fills it; tests pass fakes)
    engine_objects: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self.engines = list(dict.fromkeys(self.engines or [self.engine]))
        self.engine = self.engines[0]

    def engine_for(self, name: str):
        """The engine object of an engine name: the override given, else the registry's."""
        return self.engine_objects.get(name) or get_engine(name)

    def engine_of(self, choice: ModelChoice) -> str:
        return choice.engine or self.engines[0]

    def _runs(self, engine: str, method: Method) -> bool:
        try:
            return supports(self.engine_for(engine), method)
        except MlxdraftError:  # an engine not registered here: the run names it
            return True

    def measuring_order(self) -> list[ModelChoice]:
        """The targets in the order they are measured: as chosen; with several engines, each target right after
        the first one of the same size and bit width (smollm2:fp16, then smollm2:f16), engines in the order
        given, so that the runs an engine ratio pairs are measured close in time (though not interleaved)."""
        if len(self.engines) < 2:
            return list(self.targets)
        rank = {engine: index for index, engine in enumerate(self.engines)}

        def row(target: ModelChoice):
            size = target.size or (f"{target.params_b:g}b" if target.params_b else None)
            bits = bits_word(target.precision)
            return (target.family, size, bits) if size and bits else (target.name,)
        first: dict = {}
        for index, target in enumerate(self.targets):
            first.setdefault(row(target), index)
        return sorted(self.targets, key=lambda t: (first[row(t)], rank.get(self.engine_of(t), len(rank))))

    def groups(self) -> list[Group]:
        """Each target with every draft of its own engine that is not itself and not larger than it,
        for the methods that take a draft; alone for the methods that take none, and alone (for its
        baseline) when no draft suits it. A group measures the methods its engine runs."""
        groups = []
        for target in self.measuring_order() if self.kind != "pair" else self.targets[:1]:
            engine = self.engine_of(target)
            runs = tuple(m for m in self.methods if self._runs(engine, m))
            with_draft = tuple(m for m in runs if m.needs_draft)
            alone = tuple(m for m in runs if not m.needs_draft)
            if self.kind == "pair":
                draft = self.drafts[0] if self.drafts else None
                return [Group(target, draft, runs if draft else alone, engine)]
            drafts = [draft for draft in self.drafts
                      if self.engine_of(draft) == engine and sensible_pair(target, draft)] if with_draft else []
            paired = [Group(target, draft, with_draft, engine) for draft in drafts]
            if alone or not paired:
                paired.append(Group(target, None, alone, engine))
            groups += paired
        return groups

    def positions_needed(self, prompt_tokens: int) -> int:
        """Context positions a run of the longest prompt needs: prompt, max tokens and k look-ahead."""
        return prompt_tokens + self.settings.max_tokens + max(self.num_draft_tokens)

    def runs_in(self, group: Group) -> int:
        return self.settings.runs * len(self.prompts) * len(group.setups(self.num_draft_tokens))

    def total_runs(self) -> int:
        return sum(self.runs_in(g) for g in self.groups())

    def record(self) -> PlanRecord:
        return PlanRecord(
            settings=self.settings,
            num_draft_tokens=list(self.num_draft_tokens),
            targets=[t.name for t in self.targets],
            drafts=[d.name for d in self.drafts],
            prompts=[{"category": p.category, "text": p.text} for p in self.prompts],
            methods=[m.key for m in self.methods],
            method_params={key: dict(value) for key, value in self.method_params.items()},
            engine=self.engine,
            strategy=self.strategy,
            objective=self.objective,
            memory_budget_gb=round(self.budget.gb, 3),
            order=ORDER_DESIGN,
            engines=list(self.engines),
            engine_order=ENGINE_ORDER,
        )

    def predicts(self, engine=None) -> bool:
        """Whether the speedup model applies: a fixed-k method tried (timing costs a few passes); with an
        engine, a fixed-k method it runs, and an engine that can time forward passes."""
        if engine is None:
            return any(m.fixed_k and m.uses_k for m in self.methods)
        return can(engine, "forward_timing") and any(m.fixed_k and m.uses_k and supports(engine, m)
                                                     for m in self.methods)

    def units(self) -> list[tuple[int, int]]:
        """(prompt_index, pass_index) of every unit, in measuring order."""
        return [(prompt, run) for run in range(self.settings.runs) for prompt in range(len(self.prompts))]

    def race_units(self) -> list[tuple[int, int]]:
        """(prompt_index, pass_index) of every unit in a race's measuring order: each pass takes the prompts in one
        order stratified by category (seeded by the plan), so that the race's probe, its first units, spreads over
        the categories in proportion to their prompts instead of taking the first prompts in file order (the
        built-in suite is sorted by category, and acceptance differs by category)."""
        rng = random.Random(f"probe|{self.settings.seed}")
        by_category: dict[str, list[int]] = {}
        for index, prompt in enumerate(self.prompts):
            by_category.setdefault(prompt.category, []).append(index)
        keys = {}
        for members in by_category.values():
            rng.shuffle(members)
            offset = rng.random()
            for rank, index in enumerate(members):  # systematic sampling: evenly through the order
                keys[index] = ((rank + offset) / len(members), rng.random())
        order = sorted(range(len(self.prompts)), key=lambda index: keys[index])
        return [(prompt, run) for run in range(self.settings.runs) for prompt in order]

    def races(self, group: Group) -> bool:
        """Whether this group is measured as a race (smart strategy, enough units to gain from one)."""
        return (self.strategy == "smart" and any(m.uses_k for m in group.methods)
                and len(self.units()) >= MIN_UNITS_FOR_RACE)

    def params_for(self, method: Method) -> dict:
        return {**method.defaults, **self.method_params.get(method.key, {})}


@dataclass
class SweepEvent:
    """Progress of a sweep, one per measured run or group decision."""

    kind: str  # "loading", "probe", "warning", "run", "skipped", "failed", "done"
    group_index: int
    groups_total: int
    group: Group
    runs_done: int
    runs_total: int
    elapsed_s: float
    eta_s: float | None = None
    message: str = ""
    sample: RunSample | None = None
    repeated: bool = False  # a failure with the same cause as an earlier one in this sweep
    at_most: bool = False  # runs_total and the ETA are upper bounds (a smart sweep's races end early)
    eta_basis: str | None = None  # set when the ETA is a rough estimate: what it comes from ("the first run")


def environment(engines: list[Engine]) -> dict:
    """{"machine", "versions"}: the first engine's, with every other engine's versions added."""
    first = engines[0].environment()
    versions = dict(first.get("versions") or {})
    for engine in engines[1:]:
        for name, version in (engine.environment().get("versions") or {}).items():
            versions.setdefault(name, version)
    return {**first, "versions": versions}


def new_results(plan: SweepPlan, engine: Engine, command: list[str] | None = None,
                engines: list[Engine] | None = None) -> Results:
    return Results(kind=plan.kind, plan=plan.record(), **environment(engines or [engine]),
                   memory_budget={"gb": plan.budget.gb, "source": plan.budget.source}, command=command)


# A plan's fields as the options that set them, for the --resume check's message.
_OPTIONS = {"max_tokens": "--max-tokens", "runs": "--runs", "warmup": "--warmup", "temp": "--temp",
            "top_p": "--top-p", "top_k": "--top-k", "min_p": "--min-p", "seed": "--seed",
            "num_draft_tokens": "-k", "methods": "--methods", "engine": "--engine", "engines": "--engines",
            "strategy": "--strategy",
            "objective": "--objective"}


def _shown_value(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    if value is None:
        return "unset"
    return str(value)


def _list_difference(what: str, saved: list, wanted: list) -> str:
    gone = [item for item in saved if item not in wanted]
    new = [item for item in wanted if item not in saved]
    if not gone and not new:
        return f"the {what} are in another order"
    parts = ([f"{', '.join(map(str, gone))} there, not now"] if gone else []) + \
            ([f"{', '.join(map(str, new))} now, not there"] if new else [])
    return f"{what}: " + "; ".join(parts)


def _prompts_difference(saved: list, wanted: list) -> str:
    if len(saved) != len(wanted):
        return f"the prompts differ ({len(saved)} there, {len(wanted)} now)"
    changed = [str(index) for index, (a, b) in enumerate(zip(saved, wanted), start=1) if a != b]
    return f"the prompts differ (prompt{'s' if len(changed) > 1 else ''} {', '.join(changed)} of {len(saved)})"


def describe_differences(saved: dict, wanted: dict) -> list[str]:
    """Every way a saved plan's fingerprint differs from the wanted one, each as the user would
    change it ("--max-tokens 10 there, 12 now"), in the plan's order."""
    differences = []
    for key in dict.fromkeys([*wanted, *saved]):
        before, now = saved.get(key), wanted.get(key)
        if before == now or (key == "objective" and None in (before, now)):  # only a smart plan records it:
            continue  # the strategy's own difference says it
        if key == "settings":
            for sub in dict.fromkeys([*(now or {}), *(before or {})]):
                a, b = (before or {}).get(sub), (now or {}).get(sub)
                if a == b:
                    continue
                if sub == "fixed_length":
                    flag = lambda value: "--fixed-length" if value else "--natural"  # noqa: E731
                    differences.append(f"{flag(a)} there, {flag(b)} now")
                else:
                    differences.append(f"{_OPTIONS.get(sub, sub)} {_shown_value(a)} there, {_shown_value(b)} now")
        elif key == "prompts":
            differences.append(_prompts_difference(before or [], now or []))
        elif key in ("targets", "drafts"):
            differences.append(_list_difference(key, before or [], now or []))
        elif key == "method_params":
            for method in dict.fromkeys([*(now or {}), *(before or {})]):
                a, b = (before or {}).get(method, {}), (now or {}).get(method, {})
                for name in dict.fromkeys([*b, *a]):
                    if a.get(name) != b.get(name):
                        differences.append(f"--param {method}.{name} {_shown_value(a.get(name))} there, "
                                           f"{_shown_value(b.get(name))} now")
        else:
            differences.append(f"{_OPTIONS.get(key, key)} {_shown_value(before)} there, {_shown_value(now)} now")
    return differences or ["the settings differ"]


TIMING_REPEATS = 5  # timed forward passes per width, for the speedup model (3 let one noisy pass bend T(n))
PROGRESS_EVERY_S = 5.0  # the longest a generation runs without a progress line
HEARTBEAT_EVERY_S = 5.0  # the longest a load or a forward-pass timing runs without a progress line
ROUGH_ETA_RUNS = 5  # with fewer measured runs than this, the ETA is labelled a rough estimate

# Failures that can change between attempts are retried by --resume; these cannot.
PERMANENT_FAILURES = (IncompatibleModelsError,)  # (a tokenizer mismatch found before loading is a skip)


def open_results(plan: SweepPlan, engine: Engine, output: Path, resume: bool,
                 force: bool = False, command: list[str] | None = None,
                 engines: list[Engine] | None = None) -> tuple[Results, int]:
    """The results to continue (fresh ones, or the saved ones after checking their plan), and how
    many failed or skipped groups were set back to pending to be tried again. `command`, the
    command line measuring now, is recorded in a file it starts."""
    output = Path(output)
    if not output.exists() or force:  # --resume on a missing file simply starts the sweep
        return new_results(plan, engine, command, engines), 0
    if not resume:
        raise InvalidInputError(
            f"{output} already exists; pass --resume to continue it, --force to replace it, "
            "or choose another --output"
        )
    results = load_results(output)
    if results.kind != plan.kind:
        raise InvalidInputError(f"{output} holds a {results.kind} result, not a {plan.kind}")
    wanted = plan.record().fingerprint()
    saved = results.plan.fingerprint()
    if saved != wanted:
        differences = "; ".join(describe_differences(saved, wanted))
        advice = (f"choose another --output, or continue it with the options it was made with: "
                  f"{command_line(results.command, resume=True)}" if results.command
                  else "rerun with the same options or choose another --output")
        raise ResumeMismatchError(
            f"cannot resume {output}: it was made with different settings ({differences}); {advice}")
    results.plan.memory_budget_gb = round(plan.budget.gb, 3)
    results.plan.order = ORDER_DESIGN  # an older file's new units run in random order too (their runs say so)
    results.memory_budget = {"gb": plan.budget.gb, "source": plan.budget.source}
    retried = 0
    for record in results.groups.values():
        if record.status in ("failed", "skipped") and record.retry:
            record.status, record.reason = "pending", None
            retried += 1
    return results, retried


@dataclass
class _Clock:
    start: float = field(default_factory=time.perf_counter)
    measured_runs: int = 0
    measured_s: float = 0.0
    probe_run_s: float | None = None  # the memory probe's generation: a baseline run, before any is measured

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def eta(self, remaining_runs: int) -> tuple[float | None, str | None]:
        """(seconds left, None), or a rough estimate and what it comes from while few runs are
        measured: the memory probe's run before the first, then the first runs; (None, None)
        before either."""
        if self.measured_runs:
            basis = None
            if self.measured_runs < ROUGH_ETA_RUNS:
                basis = "the first run" if self.measured_runs == 1 else f"the first {self.measured_runs} runs"
            return self.measured_s / self.measured_runs * remaining_runs, basis
        if self.probe_run_s is not None:
            return self.probe_run_s * remaining_runs, "the memory probe's run"
        return None, None


class _Skip(Exception):
    """A group deliberately not measured; `retry` says whether a later --resume should try again."""

    def __init__(self, reason: str, retry: bool):
        super().__init__(reason)
        self.retry = retry


def cause_of(message: str, *names: str | None) -> str:
    """A failure's message without the pair's model names and repo ids, so that one cause met by
    many pairs (no network, say) can be reported once."""
    for name in filter(None, names):
        message = message.replace(name, "<model>")
    return re.sub(r"[A-Za-z0-9][\w.-]*/[\w./-]+", "<model>", message)


@dataclass
class SweepRun:
    """A sweep in progress: `events()` measures and yields progress; `results` holds what was
    measured (saved to `output` after every run when there is one)."""

    plan: SweepPlan
    output: Path | None = None
    resume: bool = False
    force: bool = False
    allow_download: bool = True
    raise_errors: bool = False  # pair: a group that cannot be measured is an error, not a record
    progress: Callable[[str], None] | None = None  # one-line messages about downloads and builds
    engine: Engine | None = None  # one engine for a one-engine plan (default: the plan's engine from the registry)
    results: Results | None = None
    retried: int = 0
    command: list[str] | None = None  # the command line measuring, recorded in a file it starts
    engines: dict[str, Engine] = field(default_factory=dict)  # engine name -> engine, beside the registry's
    _group: Group | None = field(default=None, init=False, repr=False)  # the group being measured

    def __post_init__(self):
        if self.engine is not None and len(self.plan.engines) == 1:
            self.engines.setdefault(self.plan.engines[0], self.engine)
        self.engines.update({name: self.engines.get(name) or self.plan.engine_for(name) for name in self.plan.engines})
        self.plan.engine_objects.update(self.engines)
        self.engine = self.engines[self.plan.engines[0]]

    def _race(self, group: Group, index: int, target, variants: list[Variant], encoded: list[list[int]],
              params: dict) -> Iterator[RunSample | str]:
        """Measure a group as a race (module `race`): yields each measured sample (the caller saves it
        before the next decision) and one line of news whenever the race changes."""
        plan, results = self.plan, self.results
        engine = self.engines[group.engine]
        record = results.groups[group.key]
        by_setup = {v.key: v for v in variants}
        earlier = [g for key, g in results.groups.items()
                   if g.target == group.target.name and key != group.key and g.status == "done"
                   and _group_order(plan, key) < index]
        floor, floor_name = leader_floor([g.samples for g in earlier], plan.objective)
        token_s = draft_token_s(results, group.target.name, group.draft.name if group.draft else None)
        verify = results.models.get(group.target.name, {}).get("verify_s")
        fixed = [m.key for m in group.methods if m.fixed_k and m.uses_k]

        def predict(samples, unit_logs):
            if not verify or token_s is None:
                return {}
            return predict_setups(samples, verify, token_s, max(plan.num_draft_tokens), fixed, unit_logs)

        # a file from before the order was randomised (runs without positions) goes on in its own unit order
        legacy = any(s.position is None for s in record.samples)
        units = plan.units() if legacy else plan.race_units()
        race = Race([setup for setup in by_setup if setup != ("baseline", 0)], units, plan.objective,
                    predict, floor, floor_name, earlier_rivals(earlier, plan.objective))
        state = race.replay(record.samples)
        del record.samples[state.keep:]
        if state.units_done:
            yield f"resuming the race after {state.units_done} unit(s): {len(state.alive)} setup(s) still in"
        elif plan.settings.warmup:
            warm = [by_setup[("baseline", 0)]] + [by_setup[s] for s in race.probe_setups()]
            yield f"warming up: {plan.settings.warmup} short run(s) of each of {len(warm)} variants"
            warm_up(engine, target, warm, encoded[0], plan.settings, params, self._watch)
        news = {p.reason for p in state.pruned}
        while not state.finished(len(units)):
            prompt_index, pass_index = units[state.units_done]
            ordered = unit_order(plan.settings.seed, group.key, (prompt_index, pass_index),
                                 [("baseline", 0)] + state.alive)
            for position, setup in enumerate(ordered):
                sample = measure_run(engine, target, by_setup[setup], plan.prompts[prompt_index],
                                     encoded[prompt_index], prompt_index, pass_index, plan.settings,
                                     params.get(setup[0]), self._watch)
                sample.position = position
                yield sample
            state = race.replay(record.samples)
            for pruned in state.pruned:
                if pruned.reason not in news:
                    news.add(pruned.reason)
                    yield f"pruned {pruned.method} k={pruned.num_draft_tokens}: {pruned.reason}"
            yield (f"race after {state.units_done}/{len(units)} unit(s): leader {race.leader_name(state)}"
                   + (f" (lower bound {state.leader_low:.2f}x)" if state.leader else "")
                   + f", {len(state.alive)} setup(s) left")
        record.pruned = [p.to_dict() for p in state.pruned]

    def _order(self, group: Group):
        """The order of a group's variants in each unit (module `order`): seeded by the plan, so that a resumed
        sweep measures a unit again in the same order."""
        seed = self.plan.settings.seed

        def order(unit, variants):
            by_key = {variant.key: variant for variant in variants}
            return [by_key[key] for key in unit_order(seed, group.key, unit, list(by_key))]
        return order

    def _watch(self, what: str, announce: bool = True):
        """A per-round callback that says how a long generation is going, at most every few
        seconds, through `progress` (None without one): no silence longer than that. Called right
        before the generation starts, it says so first (`announce`): the prefill before the first
        round can take seconds."""
        if self.progress is None:
            return None
        if announce:
            self.progress(f"    {what}: generating (prefill {self._prefill_of(what)}first) ...")
        started = last = time.monotonic()
        tokens = 0

        def on_round(emitted):
            nonlocal last, tokens
            tokens += len(emitted)
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_S:
                last = now
                self.progress(f"    ... {what}: {tokens} tokens in {now - started:.0f} s")
        return on_round

    def _prefill_of(self, what: str) -> str:
        """ "of target and draft " when the generation `what` ("prompt 3, draft k=4") runs a draft model."""
        label = what.rsplit(", ", 1)[-1]
        method = METHODS.get(label.split(" k=")[0])
        group = self._group
        return "of target and draft " if method and method.needs_draft and group and group.draft else ""

    @contextlib.contextmanager
    def _heartbeat(self, what: str):
        """While the block runs (one engine call that reports nothing, like loading a model or timing
        forward passes), a line through `progress` every HEARTBEAT_EVERY_S seconds saying it still is."""
        if self.progress is None:
            yield
            return
        stop = threading.Event()
        started = time.monotonic()

        def beat():
            while not stop.wait(max(HEARTBEAT_EVERY_S, 0.01)):
                self.progress(f"    ... {what}: {time.monotonic() - started:.0f} s so far")

        thread = threading.Thread(target=beat, name="mlxdraft-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _record_metadata(self) -> None:
        """What the file must say about its methods and engines to render anywhere (module `recording`); a file
        of an older schema, resumed, gets the commands of the groups it measured before."""
        record_methods(self.results, [self.engines[name] for name in self.plan.engines], self.plan.methods)
        if not self.results.commands_recorded:
            for group in self.plan.groups():
                if self.results.groups.get(group.key) and self.results.groups[group.key].status == "done":
                    self._record_commands(group)
            self.results.commands_recorded = True

    def _record_commands(self, group: Group) -> None:
        record_commands(self.results, self.engines[group.engine], group.target.name,
                        group.draft.name if group.draft else None, group.setups(self.plan.num_draft_tokens))

    def save(self) -> None:
        if self.output is not None:
            self.results.updated_at = now_iso()
            write_json_atomic(self.output, self.results.to_dict())

    def events(self) -> Iterator[SweepEvent]:
        lock = ResultsLock(self.output) if self.output is not None else None
        if lock:
            lock.acquire()
        try:
            engines = [self.engines[name] for name in self.plan.engines]
            if self.output is not None:
                self.results, self.retried = open_results(self.plan, self.engine, self.output, self.resume,
                                                          self.force, self.command, engines)
            else:
                self.results = new_results(self.plan, self.engine, self.command, engines)
            self.results.sessions.append({"started_at": now_iso(), **environment(engines)})
            self._record_metadata()
            self.save()
            yield from self._measure()
        finally:
            if lock:
                lock.release()

    def _measure(self) -> Iterator[SweepEvent]:
        plan, results = self.plan, self.results
        engine_name = plan.engines[0]
        engine = self.engines[engine_name]  # the engine of the group being measured
        groups = plan.groups()
        runs_total = plan.total_runs()
        clock = _Clock()
        runs_done = 0
        loaded_target = None
        resolved: dict[str, object] = {}  # name -> ModelSource, or the error met resolving it
        causes: set[str] = set()

        def event(kind, index, group, message="", sample=None, repeated=False):
            eta_s, basis = clock.eta(runs_total - runs_done)
            return SweepEvent(kind, index, len(groups), group, runs_done, runs_total, clock.elapsed(),
                              eta_s, message, sample, repeated, at_most=plan.strategy == "smart", eta_basis=basis)

        def resolve(name):
            key = (engine_name, name)
            if key not in resolved:
                try:
                    resolved[key] = engine.resolve(name, allow_download=self.allow_download,
                                                   progress=self.progress)
                except MlxdraftError as exc:
                    resolved[key] = exc
            if isinstance(resolved[key], MlxdraftError):
                raise resolved[key]
            return resolved[key]

        def on_engine() -> str:
            """" on llama.cpp" in a sweep of several engines, where a loading line says which loads it."""
            return f" on {engine_name}" if len(plan.engines) > 1 else ""

        def use_engine(group: Group) -> None:
            """Measure with the group's engine from here on; the models the other engine holds are freed first."""
            nonlocal engine, engine_name, loaded_target
            if group.engine != engine_name:
                loaded_target = None
                engine.free_memory()
                engine_name, engine = group.engine, self.engines[group.engine]

        def settle(target_name: str) -> Iterator[SweepEvent]:
            """Once every group of a target is measured, the runs that settle a verdict its races left
            open (module `settle`): each saved before the next decision, like a race's. Rounds of one group
            keep its draft loaded and warm."""
            nonlocal loaded_target, runs_done, runs_total, engine
            if plan.strategy != "smart":
                return
            for record in results.groups.values():
                if record.target == target_name and drop_unpaired_baselines(record, plan.settings.runs):
                    self.save()
            draft_key, draft = None, None  # the group whose draft is loaded: its rounds keep it
            warmed: set = set()  # (method key, k) of that group warmed up in this settling
            encoded = None
            try:
                while (catch_up := next_catch_up(results, target_name, plan.objective)) is not None:
                    index, group = next((i, g) for i, g in enumerate(groups, start=1)
                                        if g.key == catch_up.group_key)
                    record = results.groups[group.key]
                    self._group = group
                    if group.engine != engine_name:
                        use_engine(group)
                        draft_key, draft, encoded = None, None, None
                    runs_total += catch_up.total_runs
                    yield event("race", index, group, f"settling {target_name}: {catch_up.reason}")
                    try:
                        target_source = resolve(target_name)
                        if loaded_target is None or loaded_target.name != target_name:
                            loaded_target, draft_key, draft = None, None, None
                            engine.free_memory()
                            yield event("loading", index, group, f"loading target {target_name}{on_engine()}")
                            with self._heartbeat(f"loading target {target_name}"):
                                loaded_target = engine.load(target_source)
                        if group.key != draft_key:
                            draft_key, draft = None, None
                            warmed.clear()
                            engine.free_memory()
                            if group.draft:
                                draft_source = resolve(group.draft.name)
                                yield event("loading", index, group, f"loading draft {group.draft.name}{on_engine()}")
                                with self._heartbeat(f"loading draft {group.draft.name}"):
                                    draft = (loaded_target if draft_source.path == target_source.path
                                             else engine.load(draft_source))
                            draft_key = group.key
                        if encoded is None:
                            encoded = [engine.encode(target_source, prompt) for prompt in plan.prompts]
                        methods = {m.key: m for m in group.methods}
                        baseline = Variant(get_method("baseline"))
                        variants = {(key, k): Variant(methods[key], draft if methods[key].needs_draft else None, k)
                                    for _, setups in catch_up.runs for key, k in setups}
                        params = {m.key: plan.params_for(m) for m in group.methods}
                        cold = [variant for setup, variant in {("baseline", 0): baseline, **variants}.items()
                                if setup not in warmed]
                        if plan.settings.warmup and cold:
                            warm_up(engine, loaded_target, cold, encoded[0], plan.settings, params, self._watch)
                        warmed.update([("baseline", 0), *variants])
                        for (prompt_index, pass_index), setups in catch_up.runs:
                            ordered = unit_order(plan.settings.seed, group.key, (prompt_index, pass_index),
                                                 [("baseline", 0), *setups])
                            for position, setup in enumerate(ordered):
                                variant = baseline if setup == ("baseline", 0) else variants[setup]
                                sample = measure_run(engine, loaded_target, variant, plan.prompts[prompt_index],
                                                     encoded[prompt_index], prompt_index, pass_index, plan.settings,
                                                     params.get(variant.method.key), self._watch)
                                sample.position = position
                                record.samples.append(sample)
                                runs_done += 1
                                clock.measured_runs += 1
                                clock.measured_s += sample.wall_s
                                self.save()
                                yield event("run", index, group, sample=sample)
                    except Exception as exc:  # noqa: BLE001 - the verdict stays open; the sweep's runs are saved
                        reason = str(exc) if isinstance(exc, MlxdraftError) else f"{type(exc).__name__}: {exc}"
                        yield event("warning", index, group, f"could not settle {target_name}'s verdict: {reason}; "
                                                             "everything measured is saved, and --resume tries again")
                        return
            finally:
                draft = None
                engine.free_memory()

        for index, group in enumerate(groups, start=1):
            if index > 1 and groups[index - 2].target.name != group.target.name:
                yield from settle(groups[index - 2].target.name)
            runs_after_group = runs_done + plan.runs_in(group)
            record = results.groups.setdefault(
                group.key, GroupRecord(group.target.name, group.draft.name if group.draft else None,
                                       engine=group.engine, methods=[m.key for m in group.methods]))
            if record.status != "pending":
                runs_done = runs_after_group
                continue
            draft = None
            self._group = group
            use_engine(group)
            try:
                reason = _precheck_sizes(plan, group)
                if reason:
                    raise _Skip(reason, retry=True)
                for method in group.methods:
                    if not engine.supports(method):
                        raise _Skip(f"the {engine.name} engine cannot run the {method.key} method", retry=False)
                target_source = resolve(group.target.name)
                draft_source = resolve(group.draft.name) if group.draft else None
                if draft_source:
                    try:
                        engine.check_tokenizers(target_source, draft_source)
                    except IncompatibleModelsError as exc:
                        raise _Skip(str(exc), retry=False) from None
                encoded = [engine.encode(target_source, prompt) for prompt in plan.prompts]
                prompt_tokens = max(len(ids) for ids in encoded)
                _check_context(plan, engine, target_source, draft_source, prompt_tokens)
                _check_memory(plan, engine, target_source, draft_source, prompt_tokens)
                if loaded_target is None or loaded_target.name != group.target.name:
                    loaded_target = None
                    engine.free_memory()
                    yield event("loading", index, group, f"loading target {group.target.name}{on_engine()}")
                    with self._heartbeat(f"loading target {group.target.name}"):
                        loaded_target = engine.load(target_source)
                    results.models.setdefault(group.target.name, {}).update(
                        {**loaded_target.record(), **group.target.facts(), "engine": group.engine})
                    for warning in loaded_target.warnings:
                        yield event("warning", index, group, f"{group.target.name}: {warning}")
                    yield event("probe", index, group, "measuring the target's memory alone (one plain generation)")
                    probe = engine.generate(loaded_target, max(encoded, key=len), plan.settings,
                                            get_method("baseline"), on_round=self._watch("memory probe", False))
                    results.models[group.target.name]["alone_peak_memory_gb"] = probe.peak_memory_gb
                    if probe.round_end_s and not clock.measured_runs:
                        clock.probe_run_s = probe.round_end_s[-1]
                    if plan.predicts(engine):
                        widths = list(range(1, max(plan.num_draft_tokens) + 2))
                        yield event("probe", index, group, "timing the target's forward passes for the speedup model "
                                                           f"(n = 1..{widths[-1]}, {TIMING_REPEATS} repeats"
                                                           f"{_about(_timing_s(probe, len(widths)))})")
                        with self._heartbeat("timing the target's forward passes"):
                            verify = engine.time_forward(loaded_target, max(encoded, key=len), widths, TIMING_REPEATS)
                        results.models[group.target.name]["verify_s"] = {str(n): s for n, s in verify.items()}
                        # across ranks (mlx.launch): the verify passes' communication alone, for its share
                        communication = getattr(engine, "time_communication", None)
                        spent = communication(loaded_target, widths, TIMING_REPEATS) if communication else None
                        if spent:
                            results.models[group.target.name]["communication_s"] = {str(n): s for n, s in spent.items()}
                if group.draft:
                    yield event("loading", index, group, f"loading draft {group.draft.name}{on_engine()}")
                    same = draft_source.path == target_source.path
                    with self._heartbeat(f"loading draft {group.draft.name}"):
                        draft = loaded_target if same else engine.load(draft_source)
                    results.models.setdefault(group.draft.name, {}).update(
                        {**draft.record(), **group.draft.facts(), "engine": group.engine})
                    for warning in [] if same else draft.warnings:
                        yield event("warning", index, group, f"{group.draft.name}: {warning}")
                    engine.check_loaded(loaded_target, draft)
                    # once per sweep: a later target's group timing it again would change, on replay, the
                    # decisions an earlier group's race made with the first timing
                    if plan.predicts(engine) and not same and "token_s" not in results.models[group.draft.name]:
                        yield event("probe", index, group, "timing the draft's forward pass of one token "
                                                           f"({TIMING_REPEATS} repeats)")
                        with self._heartbeat("timing the draft's forward pass"):
                            results.models[group.draft.name]["token_s"] = engine.time_forward(
                                draft, max(encoded, key=len), [1], TIMING_REPEATS)[1]
                variants = [Variant(method, draft if method.needs_draft else None, k)
                            for method, k in group.setups(plan.num_draft_tokens)]
                params = {m.key: plan.params_for(m) for m in group.methods}
                if plan.races(group):
                    race = self._race(group, index, loaded_target, variants, encoded, params)
                else:
                    # Resume at a whole unit: a unit's variants are measured back to back, so a unit cut
                    # short is measured again rather than paired across sessions.
                    skip = len(record.samples) - len(record.samples) % len(variants)
                    del record.samples[skip:]
                    runs_done += skip
                    if plan.settings.warmup:
                        yield event("loading", index, group, f"warming up: {plan.settings.warmup} short run(s) "
                                                             f"of each of {len(variants)} variants")
                    race = iter_interleaved_runs(engine, loaded_target, variants, plan.prompts, encoded,
                                                 plan.settings, skip, params=params, watch=self._watch,
                                                 order=self._order(group))
                for item in race:
                    if isinstance(item, str):  # the race's news: resumed, leader, pruned setups
                        yield event("race", index, group, item)
                        continue
                    record.samples.append(item)
                    runs_done += 1
                    clock.measured_runs += 1
                    clock.measured_s += item.wall_s  # the ETA counts measured runs only, not warmups
                    self.save()
                    yield event("run", index, group, sample=item)
                runs_done = runs_after_group  # a race that ended early leaves runs it will never need
                record.status = "done"
                self._record_commands(group)
                record.predictions = stored_predictions(fit_group_predictions(results, record))  # fitted once
                self.save()
                yield event("done", index, group)
            except _Skip as skip_reason:
                if self.raise_errors:
                    raise InvalidInputError(str(skip_reason)) from None
                record.status, record.reason, record.retry = "skipped", str(skip_reason), skip_reason.retry
                runs_done = runs_after_group
                self.save()
                yield event("skipped", index, group, str(skip_reason))
            except Exception as exc:  # noqa: BLE001 - a failed case is recorded, the sweep goes on
                if self.raise_errors and isinstance(exc, MlxdraftError):
                    raise
                reason = str(exc) if isinstance(exc, MlxdraftError) else f"{type(exc).__name__}: {exc}"
                if self.raise_errors:
                    raise MlxdraftError(f"measuring {group.key} failed: {reason}") from exc
                record.status, record.reason = "failed", reason
                record.retry = not isinstance(exc, PERMANENT_FAILURES)
                runs_done = runs_after_group
                self.save()
                cause = cause_of(reason, record.target, record.draft)
                yield event("failed", index, group, reason, repeated=cause in causes)
                causes.add(cause)
            finally:
                draft = None  # the next target's memory probe must not see this draft
                engine.free_memory()
        if groups:
            yield from settle(groups[-1].target.name)
        loaded_target = None
        engine.free_memory()


def _timing_s(probe, widths: int) -> float | None:
    """About how long timing `widths` forward-pass widths takes (TIMING_REPEATS + 1 passes of each,
    after a prefill), from the memory probe's generation: its prefill and its time per token."""
    ends = probe.round_end_s
    if len(ends) < 2:
        return None
    token_s = (ends[-1] - ends[0]) / (len(ends) - 1)
    return ends[0] + (TIMING_REPEATS + 1) * widths * token_s


def _about(seconds: float | None) -> str:
    """"; about 20 s" for a wait worth announcing, else ""."""
    if seconds is None or seconds < HEARTBEAT_EVERY_S:
        return ""
    return f"; about {seconds:.0f} s" if seconds < 120 else f"; about {seconds / 60:.0f} min"


def _group_order(plan: SweepPlan, key: str) -> int:
    """A group's 1-based position in the plan (where the sweep measures it)."""
    return next((i for i, g in enumerate(plan.groups(), start=1) if g.key == key), 0)


def _check_context(plan: SweepPlan, engine: Engine, target_source, draft_source, prompt_tokens: int) -> None:
    """Every prompt plus max-tokens (plus the k drafts a verify pass looks ahead) must fit the
    context length of both models."""
    needed = plan.positions_needed(prompt_tokens)
    for role, source in (("target", target_source), ("draft", draft_source)):
        if source is None:
            continue
        limit = engine.context_length(source)
        if limit and needed > limit:
            raise _Skip(
                f"the longest prompt ({prompt_tokens} tokens) plus --max-tokens {plan.settings.max_tokens} "
                f"and k needs {needed} positions, more than the {role} {source.name}'s context of {limit}; "
                "use shorter prompts or fewer --max-tokens", retry=False)


def _check_memory(plan: SweepPlan, engine: Engine, target_source, draft_source, prompt_tokens: int) -> None:
    if not engine.capabilities.memory_estimate:  # the engine cannot tell before loading: the load itself decides
        return
    estimate = engine.estimate_memory(target_source, draft_source, plan.positions_needed(prompt_tokens))
    if estimate.total_gb > plan.budget.gb:
        raise _Skip(
            f"needs about {estimate.total_gb:.1f} GB (weights {estimate.target_weights_gb:.1f} + "
            f"{estimate.draft_weights_gb:.1f} GB, KV cache {estimate.kv_cache_gb:.2f} GB), over the "
            f"{plan.budget.gb:.1f} GB budget ({plan.budget.source})", retry=True)


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
