"""What every engine shares: the loaded-model record, the capabilities an engine declares, and the
Engine protocol, the one seam between mlxdraft and an inference library."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..measure import MeasureSettings, Trace
from ..memory import MemoryBudget, PairEstimate
from ..methods import Method
from ..prompts import Prompt
from ..sources import ModelSource, describe_precision


@dataclass
class LoadedModel:
    """A model in memory, with what its files say about it."""

    source: ModelSource
    model: object  # the engine's model object (an mlx.nn.Module for mlx-lm)
    tokenizer: object
    config: dict
    weights_bytes: int
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def precision(self) -> str:
        return describe_precision(self.config)

    def record(self) -> dict:
        """What a results file says about the model."""
        return {**self.source.describe(), "model_type": self.config.get("model_type"),
                "precision": self.precision, "weights_gb": self.weights_bytes / 1e9}


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do, declared instead of assumed: the sweep asks before it predicts or
    checks memory, the CLI before it runs a method, and a results file records it."""

    methods: tuple[str, ...]  # keys of the methods this engine implements ("baseline" included)
    forward_timing: bool = False  # time_forward() works, so the speedup model can predict
    memory_estimate: bool = False  # estimate_memory() from the files, before anything loads
    peak_memory: bool = False  # each run's peak memory is measured (RunSample.peak_memory_gb)
    sampling: tuple[str, ...] = ("temp",)  # sampling settings honoured: temp, top_p, top_k, min_p, seed
    round_counts: str = "per-round"  # or "per-request": only totals of proposed and accepted tokens

    def to_dict(self) -> dict:
        return {"methods": list(self.methods), "forward_timing": self.forward_timing,
                "memory_estimate": self.memory_estimate, "peak_memory": self.peak_memory,
                "sampling": list(self.sampling), "round_counts": self.round_counts}


class Engine(Protocol):
    """An inference library behind mlxdraft: it finds, checks and loads models, runs one
    generation and returns its trace, and says what it runs on and how to run a setup without
    mlxdraft. The sweep, `pair` and `generate` talk to models through this and nothing else."""

    name: str  # what users type: --engines mlx-lm,llama.cpp
    label: str  # for reports
    extra: str | None  # the pip extra that installs its library (mlxdraft[extra]); None when it is core
    capabilities: Capabilities

    def describe(self) -> dict:
        """{"name", "label", "capabilities"}: recorded with every result."""

    def environment(self) -> dict:
        """{"machine": ..., "versions": ...}: recorded with every result."""

    def memory_budget(self, override_gb: float | None = None) -> MemoryBudget: ...

    def supports(self, method: Method) -> bool:
        """Whether this engine runs the method (`method.key in capabilities.methods`)."""

    def resolve(self, name: str, allow_download: bool = True, progress=None) -> ModelSource:
        """A model name, repo id or folder -> its local files (downloading when allowed)."""

    def check_tokenizers(self, target: ModelSource, draft: ModelSource) -> None:
        """Raise IncompatibleModelsError unless the draft's token ids mean the target's; files only."""

    def encode(self, source: ModelSource, prompt: Prompt) -> list[int]:
        """A prompt as the target's token ids (chat template applied); files only."""

    def context_length(self, source: ModelSource) -> int | None: ...

    def estimate_memory(self, target: ModelSource, draft: ModelSource | None, positions: int) -> PairEstimate:
        """Only when capabilities.memory_estimate."""

    def load(self, source: ModelSource) -> LoadedModel: ...

    def check_loaded(self, target: LoadedModel, draft: LoadedModel) -> None:
        """Checks that need the models in memory (for example caches that can be rewound)."""

    def generate(self, target: LoadedModel, prompt_ids: list[int], settings: MeasureSettings, method: Method,
                 draft: LoadedModel | None = None, num_draft_tokens: int = 0, max_tokens: int | None = None,
                 params: dict | None = None, on_round=None) -> Trace:
        """Run one generation and time it. `on_round(tokens)` is called after each round."""

    def pieces(self, loaded: LoadedModel):
        """A decoder of emitted token ids into text pieces as they arrive: `add(token) -> str` and
        `finish() -> str` (text held back, belonging to the last token)."""

    def eos_token_ids(self, loaded: LoadedModel) -> set[int]: ...

    def free_memory(self) -> None: ...

    def time_forward(self, loaded: LoadedModel, context_ids: list[int], widths: list[int],
                     repeats: int = 5) -> dict[int, list[float]]:
        """Seconds of one forward pass of n tokens after `context_ids`, `repeats` times per n (only when
        capabilities.forward_timing)."""

    def commands(self, target: dict, draft: dict | None, method: Method, num_draft_tokens: int,
                 settings: dict, params: dict | None = None) -> list[str]:
        """Shell commands that run this setup outside a measurement (model records from results)."""


def describe_engine(engine) -> dict:
    """The record of an engine a results file keeps."""
    return {"name": engine.name, "label": getattr(engine, "label", engine.name),
            "extra": getattr(engine, "extra", None), "capabilities": engine.capabilities.to_dict()}
