"""The `draft-adaptive` method on mlx-lm: a draft model that stops drafting after a token it is
not confident about. The stopping rule (threshold, calibration) is engine-free and lives in
`mlxdraft.methods.draft_adaptive`; here is how the confidence is read from mlx arrays without
stalling the draft's pipeline."""

from __future__ import annotations

from collections.abc import Iterator

from ...methods.base import Sampling
from ...methods.draft_adaptive import METHOD, Calibration, calibration_of
from .draft import DraftModel, Proposal, draft_proposer, empty_proposal, speculative_rounds
from .inputs import GenerationInputs, Round
from .sampling import speculative_accept


def confidence(token, scores, sampling: Sampling):
    """The draft's probability of its own (1,) token from its (1, W) scores, as a lazy (1,)."""
    import mlx.core as mx

    if sampling.greedy:
        scores = scores.astype(mx.float32)
        return mx.exp(mx.max(scores, axis=-1) - mx.logsumexp(scores, axis=-1))
    return mx.exp(mx.take_along_axis(scores, token[:, None], axis=-1)[:, 0])


class AdaptiveDraftModel(DraftModel):
    """A draft model that stops drafting after a token it is not confident about."""

    def __init__(self, model, sampling: Sampling, target_width: int, calibration: Calibration, keys=None):
        super().__init__(model, sampling, target_width, keys)
        self.calibration = calibration
        self.confidences = None

    def propose(self, context: list[int], limit: int) -> Proposal:
        if limit == 0:
            self.round_start = len(context)
            self.confidences = None
            return empty_proposal()
        import mlx.core as mx

        cutoff = self.calibration.cutoff()
        token = self.pending(context)
        tokens, scores, confidences = [], [], []
        count = limit
        for i in range(limit):
            token, score = self.step(token)
            confidences.append(confidence(token, score, self.sampling))
            mx.async_eval(token, confidences[-1], *self.kept(score))
            tokens.append(token)
            scores.append(score)
            if i > 0 and confidences[i - 1].item() < cutoff:  # token i is queued: no stall
                count = i
                break
        self.confidences = mx.concatenate(confidences[:count])
        return self.proposal(tokens, scores, count)

    def settle(self, proposal: Proposal, accepted: int) -> None:
        super().settle(proposal, accepted)
        if self.confidences is not None:
            self.calibration.observe(self.confidences.tolist(), accepted)


def adaptive_proposer(inputs: GenerationInputs) -> AdaptiveDraftModel:
    return draft_proposer(inputs, METHOD.key, AdaptiveDraftModel, calibration=calibration_of(inputs.params))


def run(inputs: GenerationInputs, accept=speculative_accept) -> Iterator[Round]:
    """The `draft-adaptive` method; `accept` replaces the accept/resample rule (tests swap it)."""
    yield from speculative_rounds(inputs, adaptive_proposer(inputs), accept)
