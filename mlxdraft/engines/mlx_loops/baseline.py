"""The `baseline` method on mlx-lm: mlx-lm's own decoding loop (`generate_step`), one token per round."""

from __future__ import annotations

from collections.abc import Iterator

from ...methods.baseline import METHOD  # noqa: F401  (the method this implements)
from .inputs import GenerationInputs, Round
from .sampling import make_sampler


def run(inputs: GenerationInputs) -> Iterator[Round]:
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    for token, _ in generate_step(mx.array(inputs.prompt), inputs.model, max_tokens=inputs.max_tokens,
                                  sampler=make_sampler(inputs.sampling), prefill_step_size=inputs.prefill_step_size):
        yield Round([int(token)])
