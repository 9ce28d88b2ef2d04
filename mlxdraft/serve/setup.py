"""What a server serves: one target with one drafting method (`ServedSetup`), named on the command line
or read from a results file's verdict (`setup_from_results`), and the models loaded for it (`load_served`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..engines import DEFAULT_ENGINE, LoadedModel, get_engine
from ..errors import InvalidInputError
from ..methods import Method, get_method
from ..sources import ModelSource

SERVING_ENGINES = ("mlx-lm",)  # engines whose tokenizer (chat template, streaming detokenizer) the server uses


@dataclass(frozen=True)
class ServedSetup:
    """A target and how it generates: the method, its draft and k, the method's parameters."""

    target: str  # a name, repo id or folder
    method: str = "baseline"
    draft: str | None = None
    num_draft_tokens: int = 0  # k; 0 for methods without draft tokens
    params: dict = field(default_factory=dict)
    engine: str = DEFAULT_ENGINE
    reason: str | None = None  # from a results file: why this setup (the verdict and its figure)

    def check(self) -> Method:
        """The method, with the setup checked against it, before anything loads."""
        method = get_method(self.method)
        if self.engine not in SERVING_ENGINES:
            raise InvalidInputError(f"mlxdraft serve runs the {', '.join(SERVING_ENGINES)} engine; "
                                    f"this setup needs {self.engine}")
        if not get_engine(self.engine).supports(method):
            raise InvalidInputError(f"the {self.engine} engine cannot run the {method.key} method")
        if method.needs_draft and not self.draft:
            raise InvalidInputError(f"the {method.key} method needs a draft model; add --draft")
        if self.draft and not method.needs_draft:
            raise InvalidInputError(f"the {method.key} method takes no draft model; drop --draft or choose "
                                    "--method draft")
        if method.uses_k and self.num_draft_tokens < 1:
            raise InvalidInputError(f"the {method.key} method needs -k of at least 1")
        method.checked_params(self.params)
        return method

    def describe(self) -> str:
        method = get_method(self.method)
        parts = [self.target, f"method {method.key}"]
        if self.draft:
            parts.append(f"draft {self.draft}")
        if method.uses_k:
            parts.append(f"k={self.num_draft_tokens}")
        parts += [f"{key}={value}" for key, value in sorted(self.params.items())
                  if value != method.defaults.get(key)]
        return ", ".join(parts)


def setup_from_results(path: str | Path, target: str | None = None, objective: str = "e2e") -> ServedSetup:
    """The setup a results file's verdict chose for `target` (the file's only target when None): its
    method, draft, k and parameters when the verdict is "speculative"; the target alone otherwise, with
    the reason saying why."""
    from ..analysis import analyse_sweep
    from ..results import load_results

    results = load_results(Path(path))
    analysis = analyse_sweep(results, objective=objective)
    targets = analysis.targets
    if target is None:
        if len(targets) != 1:
            raise InvalidInputError(f"{path} has {len(targets)} targets ({', '.join(targets)}); choose one with "
                                    "--target")
        target = targets[0]
    elif target not in targets:
        matches = [name for name in targets if _model_location(results.models.get(name, {}), name) == target]
        if len(matches) != 1:
            raise InvalidInputError(f"{path} has no target {target!r}; its targets: {', '.join(targets)}")
        target = matches[0]
    verdict = analysis.verdict(target)
    engine = analysis.engine_of(target) or analysis.plan.engine or DEFAULT_ENGINE
    if engine not in SERVING_ENGINES:
        commands = analysis.commands(verdict.chosen) if verdict.kind == "speculative" and verdict.chosen else []
        hint = f": {commands[0]}" if commands else " (llama-server, which the report's commands run)"
        raise InvalidInputError(f"{target} was measured on the {engine} engine; mlxdraft serve serves "
                                f"{', '.join(SERVING_ENGINES)} setups only. Serve it with its own server{hint}")
    target_location = _model_location(results.models.get(target, {}), target)
    reason = verdict.verdict.reason if verdict.verdict else "no speculative setup was measured"
    if verdict.kind != "speculative" or verdict.chosen is None:
        return ServedSetup(target_location, engine=engine,
                           reason=f"serving the target alone: the verdict is {verdict.kind} ({reason})")
    case = verdict.chosen
    method = get_method(case.method)
    params = {**method.defaults, **analysis.plan.method_params.get(case.method, {})}
    draft = _model_location(results.models.get(case.draft, {}), case.draft) if method.needs_draft else None
    return ServedSetup(target_location, method=case.method, draft=draft,
                       num_draft_tokens=case.num_draft_tokens if method.uses_k else 0, params=params, engine=engine,
                       reason=f"serving the verdict's setup {case.label}: {reason}")


def _model_location(record: dict, name: str) -> str:
    """Where to load a model a results file names from: its folder when it is still there, else its repo
    id, else the name it was measured under."""
    path = record.get("path")
    if path and Path(path).is_dir():
        return str(path)
    return record.get("repo_id") or name


@dataclass
class ServedModel:
    """The loaded models of a setup, paired and checked once."""

    setup: ServedSetup
    method: Method
    engine: object
    target: LoadedModel
    draft: LoadedModel | None
    context_length: int | None  # tokens of prompt and answer together, as the target's config declares

    @property
    def names(self) -> tuple[str, ...]:
        """The model names requests may use; the first is the one answers carry."""
        source: ModelSource = self.target.source
        names = [self.setup.target, source.name, str(source.path), source.repo_id]
        return tuple(dict.fromkeys(name for name in names if name))

    @property
    def k(self) -> int:
        return self.setup.num_draft_tokens if self.method.uses_k else 0


def load_served(setup: ServedSetup, allow_download: bool = True, progress=None) -> ServedModel:
    """Load the setup's models (never with remote code: the engine's load), pair them, warm them up."""
    method = setup.check()
    engine = get_engine(setup.engine)
    target_source = engine.resolve(setup.target, allow_download=allow_download, progress=progress)
    draft_source = (engine.resolve(setup.draft, allow_download=allow_download, progress=progress)
                    if method.needs_draft else None)
    if draft_source is not None:
        engine.check_tokenizers(target_source, draft_source)  # from the files, before loading gigabytes
    target = engine.load(target_source)
    draft = engine.load(draft_source) if draft_source is not None else None
    if draft is not None:
        engine.check_loaded(target, draft)
    return ServedModel(setup, method, engine, target, draft, engine.context_length(target_source))
