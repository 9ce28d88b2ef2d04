"""mlxdraft: measure which speculative-decoding setup makes a local MLX model fastest.

From Python: `mlxdraft.generate(target, prompt, draft=..., method="draft", ...)` runs one
generation with any method; results files load with `mlxdraft.results.load_results`.
"""

__version__ = "0.2.0"

from .generation import GenerationResult, generate  # noqa: E402 - after the version, which cli reads

__all__ = ["GenerationResult", "generate", "__version__"]
