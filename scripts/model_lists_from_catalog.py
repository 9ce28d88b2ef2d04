#!/usr/bin/env python3
"""Regenerate model_lists/{qwen2.5,qwen2.5-coder,llama3}.toml from the verified Hub catalogs:
the MLX one (a Markdown file of mlx-community repo ids with parameter counts and precisions) and
the GGUF one (scripts/gguf-catalog.md: repo, file and number of split parts per quantization,
for the llama.cpp engine).

Usage: python scripts/model_lists_from_catalog.py PATH/TO/hub-catalog.md [--gguf scripts/gguf-catalog.md]
       [--out model_lists]

Roles: the small sizes draft, the large ones are targets, sizes in between can be both.
Entries whose precision the catalog cannot state are left out.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

SECTIONS = {"qwen2.5-instruct": "qwen2.5", "qwen2.5-coder-instruct": "qwen2.5-coder", "llama3": "llama3"}
DESCRIPTIONS = {
    "qwen2.5": "Qwen 2.5 Instruct, MLX conversions by mlx-community",
    "qwen2.5-coder": "Qwen 2.5 Coder Instruct, MLX conversions by mlx-community",
    "llama3": "Llama 3, 3.1, 3.2 and 3.3 Instruct, MLX conversions by mlx-community",
}
GGUF_DESCRIPTIONS = {
    "qwen2.5": "and GGUF files for llama.cpp (Qwen's own repos; F16 drafts by second-state)",
    "llama3": "and GGUF files for llama.cpp (bartowski and lmstudio-community)",
}
GGUF_BITS_PER_WEIGHT = {"f16": 16.0, "q8_0": 8.5, "q6_k": 6.56, "q5_k_m": 5.7, "q4_k_m": 4.9}  # for size estimates
GGUF_DEFAULT = Path(__file__).with_name("gguf-catalog.md")


def role_for(family: str, params_b: float) -> str:
    if params_b < 2.5:
        return "draft"
    if params_b < 9:
        return "both"
    return "target"


def size_label(params_b: float) -> str:
    for label, low, high in [("0.5b", 0.4, 0.6), ("1b", 0.9, 1.3), ("1.5b", 1.4, 1.7), ("3b", 2.9, 3.3),
                             ("7b", 7.0, 7.9), ("8b", 7.9, 8.2), ("14b", 14, 15), ("32b", 32, 33),
                             ("70b", 70, 71), ("72b", 72, 73)]:
        if low <= params_b <= high:
            return label
    return f"{params_b:g}b"


def short_name(family: str, repo: str, params_b: float, precision: str) -> str:
    size = size_label(params_b)
    if family == "llama3":
        version = re.search(r"Llama-(3(?:\.\d)?)", repo, re.IGNORECASE).group(1)
        suffix = ""
        if repo.endswith("-4bit-mlx"):
            suffix = "-mlx"
        elif repo.endswith("-CORRECTED"):
            suffix = "-corrected"
        return f"llama3:{version}-{size}-{precision}{suffix}"
    return f"{family}:{size}-{precision}"


def parse(catalog: str):
    family = None
    for line in catalog.splitlines():
        header = re.match(r"^### (\S+)", line)
        if header:
            family = SECTIONS.get(header.group(1))
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if family is None or len(cells) < 6 or not re.match(r"^[\w.-]+$", cells[0]) or cells[0].startswith("-"):
            continue
        repo, params, precision, _, gs64 = cells[:5]
        if repo.startswith("repo"):
            continue
        precision = {"bf16": "bf16", "fp16": "fp16"}.get(precision, precision)
        if not re.match(r"^(bf16|fp16|\dbit)$", precision):
            continue  # e.g. "unsuffixed (dtype ?)"
        yield family, f"mlx-community/{repo}", float(params), precision, float(gs64)


def split_parts(file: str, parts: int) -> list[str]:
    """The files of a GGUF split by gguf-split into `parts` parts (the file itself when 1)."""
    if parts == 1:
        return [file]
    stem = file[: -len(".gguf")]
    return [f"{stem}-{i:05d}-of-{parts:05d}.gguf" for i in range(1, parts + 1)]


def parse_gguf(catalog: str):
    """(family, name, repo, files, params_b, precision, size_gb) for each row of the GGUF catalog."""
    for line in catalog.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 8 or cells[0] in ("family", "") or cells[0].startswith("-"):
            continue
        family, size, params, precision, repo, file, parts = cells[:7]
        params_b = float(params)
        files = split_parts(file, int(parts))
        size_gb = round(params_b * GGUF_BITS_PER_WEIGHT[precision] / 8, 2)
        yield family, f"{family}:{size}-{precision}", repo, files, params_b, precision, size_gb


def gguf_lines(name: str, repo: str, files: list[str], params: float, precision: str, size: float, family: str):
    files_toml = (f'["{files[0]}"]' if len(files) == 1
                  else "[\n" + "".join(f'    "{f}",\n' for f in files) + "]")
    return [
        "",
        "[[models]]",
        f'name = "{name}"',
        'engine = "llama.cpp"',
        f'repo = "{repo}"',
        f"files = {files_toml}",
        f'size = "{size_label(params)}"',
        f"params_b = {params:g}",
        f'precision = "{precision}"',
        f'role = "{role_for(family, params)}"',
        f"size_gb = {size:g}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("catalog")
    parser.add_argument("--gguf", default=str(GGUF_DEFAULT), help="the verified GGUF catalog")
    parser.add_argument("--out", default="model_lists")
    args = parser.parse_args()
    entries: dict[str, list] = {}
    for family, repo, params, precision, size in parse(Path(args.catalog).read_text()):
        entries.setdefault(family, []).append((repo, params, precision, size))
    ggufs: dict[str, list] = {}
    for family, *row in parse_gguf(Path(args.gguf).read_text()):
        ggufs.setdefault(family, []).append(row)
    for family, models in entries.items():
        description = DESCRIPTIONS[family]
        header = [
            "# Generated by scripts/model_lists_from_catalog.py from verified repo ids; sizes are estimates",
            "# (params x (bits + 0.5) / 8 GB for group-size-64 quantization, params x 2 for 16-bit).",
        ]
        if family in ggufs:
            description += ", " + GGUF_DESCRIPTIONS[family]
            header += [
                "# GGUF entries (engine llama.cpp) come from scripts/gguf-catalog.md, where each repo id and file",
                "# name is verified; their sizes are estimates too (params x bits per weight / 8).",
            ]
        lines = [
            f"# {DESCRIPTIONS[family]}" + (f",\n# {GGUF_DESCRIPTIONS[family]}." if family in ggufs else "."),
            *header,
            f'family = "{family}"',
            f'description = "{description}"',
            'source = "hub"',
        ]
        for repo, params, precision, size in sorted(models, key=lambda m: (m[1], m[0])):
            lines += [
                "",
                "[[models]]",
                f'name = "{short_name(family, repo, params, precision)}"',
                f'repo = "{repo}"',
                f'size = "{size_label(params)}"',
                f"params_b = {params:g}",
                f'precision = "{precision}"',
                f'role = "{role_for(family, params)}"',
                f"size_gb = {size:g}",
            ]
        for name, repo, files, params, precision, size in ggufs.get(family, []):
            lines += gguf_lines(name, repo, files, params, precision, size, family)
        Path(args.out, f"{family}.toml").write_text("\n".join(lines) + "\n")
        print(f"{family}: {len(models)} MLX models, {len(ggufs.get(family, []))} GGUF models")


if __name__ == "__main__":
    main()
