"""mlx-lm's own speculative loop (`speculative_generate_step`, what `mlx_lm.generate
--draft-model` and `mlx_lm.server` run): a draft model, a fixed k. The reference method."""

from __future__ import annotations

from collections.abc import Iterator

from ...methods.mlx_lm import METHOD  # noqa: F401  (the method this implements)
from .inputs import GenerationInputs, Round
from .sampling import make_sampler


def run(inputs: GenerationInputs) -> Iterator[Round]:
    """Group mlx-lm's per-token stream into verify rounds: accepted draft tokens (from_draft) and
    then the target's own token. mlx-lm asks the draft for min(k, tokens still allowed)."""
    import mlx.core as mx
    from mlx_lm.generate import speculative_generate_step

    k = inputs.num_draft_tokens
    emitted = 0
    tokens: list[int] = []
    steps = speculative_generate_step(mx.array(inputs.prompt), inputs.model, inputs.draft_model,
                                      num_draft_tokens=k, max_tokens=inputs.max_tokens,
                                      sampler=make_sampler(inputs.sampling),
                                      prefill_step_size=inputs.prefill_step_size)
    for token, _, from_draft in steps:
        tokens.append(int(token))
        if from_draft:
            continue
        proposed = min(k, inputs.max_tokens - emitted)
        yield Round(tokens, proposed=proposed, accepted=len(tokens) - 1, limited=proposed < k)
        emitted += len(tokens)
        tokens = []
    if tokens:  # max-tokens reached among accepted draft tokens: the round never got its own token
        proposed = min(k, inputs.max_tokens - emitted)
        yield Round(tokens, proposed=proposed, accepted=len(tokens), limited=proposed < k)
