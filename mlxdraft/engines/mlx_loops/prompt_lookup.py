"""The `prompt-lookup` method on mlx-lm: the engine-free n-gram index
(`mlxdraft.methods.prompt_lookup`) as the proposer of mlxdraft's own speculative loop. The proposal
is deterministic (q is one-hot), so at temperature > 0 the accept/resample rule keeps the target's
distribution exactly; at temperature 0 the output is the target's greedy output."""

from __future__ import annotations

from collections.abc import Iterator

from ...methods.prompt_lookup import METHOD, NgramIndex, ngram_sizes  # noqa: F401  (METHOD: what this implements)
from .draft import Proposal, speculative_rounds
from .inputs import GenerationInputs, Round
from .sampling import speculative_accept


class PromptLookup:
    """Proposes from an NgramIndex that follows the context. No model drafts, so its rounds report
    no drafting time (draft_s None): the lookup is host work of microseconds, not a draft's cost."""

    measures_drafting = False

    def __init__(self, ngram_max: int, ngram_min: int):
        self.index = NgramIndex(ngram_max, ngram_min)

    def prefill(self, prompt: list[int], step: int) -> None:  # step: a model's prefill chunk, unused here
        self.index.extend(prompt)

    def propose(self, context: list[int], limit: int) -> Proposal:
        import mlx.core as mx

        self.index.extend(context[len(self.index.tokens):])
        found = self.index.continuation(limit)
        return Proposal(mx.array(found, mx.uint32), len(found))

    def settle(self, proposal: Proposal, accepted: int) -> None:
        pass


def run(inputs: GenerationInputs, accept=speculative_accept) -> Iterator[Round]:
    """The `prompt-lookup` method; `accept` replaces the accept/resample rule (tests swap it)."""
    yield from speculative_rounds(inputs, PromptLookup(*ngram_sizes(inputs.params)), accept)
