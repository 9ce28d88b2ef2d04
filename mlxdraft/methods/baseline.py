"""The target alone: mlx-lm's own decoding loop (`generate_step`), one token per round."""

from __future__ import annotations

from collections.abc import Iterator

from .base import GenerationInputs, Method, Round
from .sampling import make_sampler


def run(inputs: GenerationInputs) -> Iterator[Round]:
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    for token, _ in generate_step(mx.array(inputs.prompt), inputs.model, max_tokens=inputs.max_tokens,
                                  sampler=make_sampler(inputs.sampling)):
        yield Round([int(token)])


METHOD = Method(
    key="baseline",
    label="baseline",
    summary="the target alone, with mlx-lm's decoding loop",
    needs_draft=False,
    uses_k=False,
    run=run,
    by_mlx_lm=True,
)
