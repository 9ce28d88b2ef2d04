"""A fake engine for tests: models are names, generations are computed, not run. It follows the
Engine protocol exactly, so sweep, resume, pair and report tests run through the real code in
milliseconds, deterministically.

Every model behaves as its FakeModel says: time per token, how the verify cost grows with width,
weights, tokenizer family and (as a draft) the chance that each drafted token is accepted. A target
emits the same tokens whatever the method (lossless). Tests use it in process (`install()`, then
`--engine fake`) or in a subprocess (`python tests/fake_engine.py mlxdraft-args...`), where the
environment variable FAKE_ENGINE_HANG_AFTER=N makes the N+1-th measured generation wait forever, so
that a signal is certain to arrive mid-sweep.
"""

from __future__ import annotations

import os
import random
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mlxdraft.engines import LoadedModel, register_engine
from mlxdraft.errors import IncompatibleModelsError, ModelNotFoundError
from mlxdraft.measure import Trace, VerifyRound
from mlxdraft.memory import MemoryBudget, PairEstimate
from mlxdraft.sources import ModelSource


@dataclass
class FakeModel:
    token_s: float = 0.1  # one token's forward pass
    verify_growth: float = 0.05  # a verify pass of n tokens costs token_s * (1 + growth * (n - 1))
    prefill_token_s: float = 0.002
    weights_gb: float = 1.0
    family: str = "a"  # models of different families have different tokenizers
    acceptance: float = 0.8  # as a draft (or for prompt lookup, as the target): P(a drafted token is accepted)
    context: int = 4096
    fail: str | None = None  # "load" or "generate": raise a RuntimeError there


DEFAULT_MODELS = {
    "big": FakeModel(token_s=0.1, weights_gb=4.0),
    "huge": FakeModel(token_s=0.2, weights_gb=8.0),
    "small": FakeModel(token_s=0.01, weights_gb=0.5, acceptance=0.8),
    "tiny": FakeModel(token_s=0.005, weights_gb=0.1, acceptance=0.5),
    "other": FakeModel(token_s=0.01, weights_gb=0.5, family="b"),
    "broken": FakeModel(fail="load"),
}


class FakeEngine:
    name = "fake"
    label = "fake engine"
    extra = None

    @property
    def capabilities(self):
        from mlxdraft.engines import Capabilities
        from mlxdraft.methods import METHODS

        runs = tuple(key for key, m in METHODS.items() if m.native_engine in (None, "mlx-lm", self.name))
        return Capabilities(methods=runs, forward_timing=True, memory_estimate=True, peak_memory=True,
                            sampling=("temp", "top_p", "top_k", "min_p", "seed"))

    def describe(self) -> dict:
        from mlxdraft.engines import describe_engine

        return describe_engine(self)

    def __init__(self, models: dict[str, FakeModel] | None = None, noise: float = 0.0, seed: int = 0,
                 hang_after: int | None = None):
        self.models = dict(DEFAULT_MODELS if models is None else models)
        self.noise = noise
        self.rng = random.Random(seed)
        self.hang_after = hang_after
        self.generations = 0

    def spec(self, source: ModelSource) -> FakeModel:
        return self.models[source.name]

    def environment(self) -> dict:
        return {"machine": {"chip": "Fake chip", "arch": "fake", "cpu_count": 1, "memory_gb": 64.0, "os": "FakeOS"},
                "versions": {"python": "3", "mlx": "fake", "mlx-lm": "fake", "huggingface-hub": "fake",
                             "mlxdraft": "test"}}

    def memory_budget(self, override_gb: float | None = None) -> MemoryBudget:
        return MemoryBudget(override_gb, "--memory-gb") if override_gb is not None else MemoryBudget(64.0, "fake")

    def supports(self, method) -> bool:
        return method.key in self.capabilities.methods

    def resolve(self, name: str, allow_download: bool = True, progress=None) -> ModelSource:
        if name not in self.models:
            raise ModelNotFoundError(f"{name!r} is not a fake model")
        return ModelSource(name=name, path=Path("/fake") / name, kind="local")

    def check_tokenizers(self, target: ModelSource, draft: ModelSource) -> None:
        if self.spec(target).family != self.spec(draft).family:
            raise IncompatibleModelsError(f"{draft.name} cannot draft for {target.name}: their tokenizers differ")

    def encode(self, source: ModelSource, prompt) -> list[int]:
        return [sum(map(ord, word)) % 1000 for word in prompt.text.split()] + [1, 2]

    def context_length(self, source: ModelSource) -> int | None:
        return self.spec(source).context

    def estimate_memory(self, target: ModelSource, draft: ModelSource | None, positions: int) -> PairEstimate:
        draft_gb = self.spec(draft).weights_gb if draft else 0.0
        return PairEstimate(self.spec(target).weights_gb, draft_gb, 0.01, 0.0)

    def load(self, source: ModelSource) -> LoadedModel:
        spec = self.spec(source)
        if spec.fail == "load":
            raise RuntimeError(f"cannot load {source.name}")
        config = {"model_type": "fake", "torch_dtype": "float16"}
        return LoadedModel(source, spec, None, config, int(spec.weights_gb * 1e9))

    def check_loaded(self, target: LoadedModel, draft: LoadedModel) -> None:
        pass

    def free_memory(self) -> None:
        pass

    def generate(self, target, prompt_ids, settings, method, draft=None, num_draft_tokens=0, max_tokens=None,
                 params=None, on_round=None) -> Trace:
        self.generations += 1
        if self.hang_after is not None and self.generations > self.hang_after:
            while True:  # a sweep that is certainly still running when the signal comes
                time.sleep(0.05)
        t, d = target.model, draft.model if draft is not None else None
        if t.fail == "generate":
            raise RuntimeError("out of memory")
        max_tokens = max_tokens or settings.max_tokens
        tokens = [(sum(prompt_ids) * 31 + 7 * i) % 997 + 3 for i in range(max_tokens)]
        accept = random.Random(f"{prompt_ids}|{method.key}|{num_draft_tokens}|{settings.seed}")
        jitter = lambda: self.rng.lognormvariate(0, self.noise) if self.noise else 1.0  # noqa: E731
        clock = len(prompt_ids) * t.prefill_token_s * jitter()
        sizes, ends, rounds = [], [], []
        emitted = 0
        while emitted < max_tokens:
            if not method.uses_k:
                size, clock = 1, clock + t.token_s * jitter()
            else:
                proposed = min(num_draft_tokens, max_tokens - emitted)
                chance = d.acceptance if d is not None else t.acceptance
                accepted = 0
                while accepted < proposed and accept.random() < chance:
                    accepted += 1
                size = min(accepted + 1, max_tokens - emitted)
                draft_s = proposed * (d.token_s if d is not None else 0.0)
                clock += (draft_s + t.token_s * (1 + t.verify_growth * proposed)) * jitter()
                rounds.append(VerifyRound(proposed, min(accepted, size),
                                          complete=proposed == num_draft_tokens and size == accepted + 1))
            emitted += size
            sizes.append(size)
            ends.append(clock)
            if on_round is not None:
                on_round(tokens[emitted - size:emitted])
        peak = t.weights_gb + (d.weights_gb if d is not None else 0.0) + 0.01
        return Trace(tokens, sizes, ends, rounds, peak, "length")

    def time_forward(self, loaded, context_ids, widths, repeats=5) -> dict[int, list[float]]:
        spec = loaded.model
        return {n: [spec.token_s * (1 + spec.verify_growth * (n - 1)) * (self.rng.lognormvariate(0, self.noise)
                                                                         if self.noise else 1.0)
                    for _ in range(repeats)] for n in widths}

    def commands(self, target, draft, method, num_draft_tokens, settings, params=None) -> list[str]:
        parts = ["fake-generate", "--model", target.get("path", "?"), "--method", method.key]
        if draft:
            parts += ["--draft", draft.get("path", "?")]
        if method.uses_k:
            parts += ["-k", str(num_draft_tokens)]
        return [shlex.join(parts)]


def install(**options) -> FakeEngine:
    """Register a fresh fake engine (replacing an earlier one) and return it."""
    return register_engine(FakeEngine(**options))


if __name__ == "__main__":  # python tests/fake_engine.py sweep ... --engine fake
    from mlxdraft.cli import main

    hang = os.environ.get("FAKE_ENGINE_HANG_AFTER")
    install(hang_after=int(hang) if hang else None)
    sys.argv = ["mlxdraft", *sys.argv[1:]]
    main()
