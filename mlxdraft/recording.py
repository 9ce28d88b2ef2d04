"""What a results file records, when it is measured, about how it was measured (schema 3): every method's and
engine's metadata (`Method.describe()`, `engine.describe()`) and the shell commands that run each measured setup
outside mlxdraft (`engine.commands`). Reports read these from the file, so they need neither `methods` nor
`engines`: a file made with a method or engine that is not installed here renders all the same.

Measuring side: the sweep (and so `pair`) records as it goes; `mlxdraft report` fills in the commands of a file
older than schema 3 when the engine that measured it is installed here (`fill_commands`).
"""

from __future__ import annotations

from dataclasses import asdict

from .errors import MlxdraftError
from .results import Results, setup_key


def record_methods(results: Results, engines, methods) -> None:
    """Describe `methods` (Method objects; the baseline is added) and `engines` (engine objects) in `results`."""
    from .methods import get_method

    for method in [get_method("baseline"), *methods]:
        results.methods[method.key] = method.describe()
    for engine in engines:
        describe = getattr(engine, "describe", None)  # an engine written before engines described themselves: its name
        results.engines[engine.name] = describe() if describe else {"name": engine.name,
                                                                    "label": getattr(engine, "label", engine.name)}


def record_commands(results: Results, engine, target: str, draft: str | None, setups) -> None:
    """The commands that run each (Method, k) of `setups` measured with `target` (and `draft`, for the methods
    that take one), as `engine` writes them, from the model records the file holds."""
    models = results.models
    for method, k in setups:
        if method.key == "baseline":
            continue
        used = draft if method.needs_draft else None
        params = {**method.defaults, **results.plan.method_params.get(method.key, {})}
        results.commands[setup_key(target, used, method.key, k)] = list(engine.commands(
            models.get(target, {"path": target}), models.get(used, {"path": used}) if used else None, method, k,
            asdict(results.settings), params))


def fill_commands(results: Results) -> bool:
    """For a file older than schema 3 (it recorded no commands): the commands of every measured setup, written by
    the engine that measured it when that engine (and each method) is installed here. False when an engine is
    not: a report then says, for its setups, that the commands were not recorded."""
    if results.commands_recorded:
        return True
    from .engines import get_engine
    from .methods import METHODS

    missing = set()
    for record in results.groups.values():
        name = record.engine or results.plan.engine
        try:
            engine = get_engine(name)
        except MlxdraftError:
            missing.add(name)
            continue
        setups = dict.fromkeys((s.method, s.num_draft_tokens) for s in record.samples if not s.is_baseline)
        record_commands(results, engine, record.target, record.draft,
                        [(METHODS[key], k) for key, k in setups if key in METHODS])
    results.commands_recorded = not missing  # else a report says, for a setup of such an engine, why none
    return not missing
