"""mlxdraft: measure which speculative-decoding setup makes a local MLX model fastest.

From Python: `mlxdraft.generate(target, prompt, draft=..., method="draft", ...)` runs one
generation with any method; results files load with `mlxdraft.results.load_results`.
"""

__version__ = "0.2.0"

__all__ = ["GenerationResult", "generate", "__version__"]


def __getattr__(name: str):
    """`generate` and `GenerationResult`, imported when first used: importing any module of the package (the
    report side, `mlxdraft.results`) then loads neither the engines nor mlx."""
    if name in ("GenerationResult", "generate"):
        from . import generation

        return getattr(generation, name)
    raise AttributeError(f"module 'mlxdraft' has no attribute {name!r}")
