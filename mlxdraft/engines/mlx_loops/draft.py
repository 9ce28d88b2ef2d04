"""mlxdraft's own speculative decoding loop over mlx-lm models and KV caches, with a draft model
as the proposer (the `draft` method: k tokens per round, verified in one target forward pass).

The loop (`speculative_rounds`) works with any proposer (a draft model here, n-gram lookup in
`prompt_lookup`): each round the proposer's tokens are stacked behind the last emitted token and
the target runs once over those m+1 positions on top of its cache; `greedy_accept` (temperature 0)
or `speculative_accept` (exact speculative sampling) decides how many to keep, and both caches are
trimmed back to the tokens kept. Like mlx-lm's loop it prefills in chunks (of
`inputs.prefill_step_size` tokens, mlx-lm's), drafts with one
cached forward pass per token queued by `mx.async_eval`. The host waits twice per round, each
time before it reads the clock: once for the proposal (drafting done), then for the verdict it
reads back (accepted, next token), so `draft_s` and `target_s` split the round where the work
really ended. (Queuing the verify pass behind the draft before the first wait saved that wait, but
a backend that evaluates in `async_eval` then ran the verify pass before the "drafting done"
clock read and billed it to drafting.) A proposer without a model (`measures_drafting` False, as
prompt lookup) reports no drafting time: its rounds' `draft_s` is None.

A round proposes at most min(k, tokens left - 1), so every round ends with a token of the target's
own; `limited` is set when that cap, not the proposer, made the proposal shorter than k.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from ...errors import InvalidInputError
from ...methods.base import Sampling
from ...methods.draft import METHOD  # noqa: F401  (the method this implements)
from .inputs import GenerationInputs, RandomKeys, Round
from .sampling import greedy_accept, one_hot, processed_logprobs, speculative_accept


@dataclass
class Proposal:
    """What a proposer offers for one round."""

    tokens: object  # (m,) uint32 mx.array, possibly still lazy
    count: int  # m, known on the host
    logq: object = None  # (m, W) log-probabilities the tokens were drawn from; None = deterministic
    drafted: int = 0  # tokens a draft model computed this round (>= count; for its cache rewind)


def empty_proposal() -> Proposal:
    import mlx.core as mx

    return Proposal(mx.array([], mx.uint32), 0)


def logits_width(model) -> int:
    """The width of a model's logits, from the shape of a forward pass that is never evaluated."""
    import mlx.core as mx

    return model(mx.array([[0]], mx.uint32)).shape[-1]


def new_cache(model) -> list:
    """A fresh KV cache for `model`; speculative decoding rewinds it, so it must be trimmable."""
    from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache

    cache = make_prompt_cache(model)
    if not can_trim_prompt_cache(cache):
        kinds = sorted({type(layer).__name__ for layer in cache if not layer.is_trimmable()})
        raise InvalidInputError(f"this model's prompt cache cannot be rewound ({', '.join(kinds)})")
    return cache


def rewind(cache: list, count: int) -> None:
    from mlx_lm.models.cache import trim_prompt_cache

    if count > 0:
        trim_prompt_cache(cache, count)


def prefill(model, cache: list, tokens: list[int], step: int) -> None:
    """Run `tokens` through `model` into `cache`, in chunks of `step` tokens, evaluating each chunk."""
    import mlx.core as mx

    for start in range(0, len(tokens), step):
        model(mx.array(tokens[start:start + step], mx.uint32)[None], cache=cache)
        mx.eval([layer.state for layer in cache])
        mx.clear_cache()


class Verifier:
    """The target: its cache holds every emitted token but the last; `verify` runs the last one
    and a proposal through it and returns the lazy verdict [accepted, next token]."""

    def __init__(self, model, sampling: Sampling, accept=speculative_accept, keys: RandomKeys | None = None):
        self.model = model
        self.sampling = sampling
        self.accept = accept
        self.keys = keys or RandomKeys()
        self.cache = new_cache(model)

    def prefill(self, prompt: list[int], step: int) -> None:
        prefill(self.model, self.cache, prompt[:-1], step)

    def verify(self, last: int, proposal: Proposal):
        import mlx.core as mx

        tokens = mx.concatenate([mx.array([last], mx.uint32), proposal.tokens])
        logits = self.model(tokens[None], cache=self.cache)[0]
        if self.sampling.greedy:
            verdict = greedy_accept(logits, proposal.tokens)
        else:
            p = mx.exp(processed_logprobs(logits, self.sampling))
            q = one_hot(proposal.tokens, p.shape[-1]) if proposal.logq is None else mx.exp(proposal.logq)
            key = self.keys.next()
            verdict = self.accept(p, q, proposal.tokens) if key is None else self.accept(p, q, proposal.tokens, key=key)
        mx.async_eval(verdict)
        return verdict

    def settle(self, proposed: int, accepted: int) -> None:
        rewind(self.cache, proposed - accepted)


class DraftModel:
    """A draft model with its own cache, proposing up to `limit` tokens per round. Its cache holds
    a prefix of the emitted tokens (`offset` of them); the rest are fed at the next round."""

    measures_drafting = True  # its proposal is a model's work: the round's draft_s is reported

    def __init__(self, model, sampling: Sampling, target_width: int, keys: RandomKeys | None = None):
        self.model = model
        self.sampling = sampling
        self.keys = keys or RandomKeys()
        self.cache = new_cache(model)
        width = logits_width(model)
        self.width = target_width if width > target_width else None  # never propose ids the target lacks
        self.offset = 0
        self.round_start = 0

    def prefill(self, prompt: list[int], step: int) -> None:
        prefill(self.model, self.cache, prompt[:-1], step)
        self.offset = len(prompt) - 1

    def step(self, tokens):
        """One cached forward pass: (1,) next token and (1, W) scores (log q when sampling,
        raw logits at temperature 0), both lazy."""
        import mlx.core as mx

        logits = self.model(tokens[None], cache=self.cache)[:, -1, :]
        if self.width is not None:
            logits = logits[:, : self.width]
        if self.sampling.greedy:
            return mx.argmax(logits, axis=-1), logits
        logq = processed_logprobs(logits, self.sampling)
        return mx.random.categorical(logq, key=self.keys.next()), logq

    def kept(self, score) -> tuple:
        """What besides the token must be evaluated in a draft step: log q when sampling (verify
        reads it); nothing at temperature 0."""
        return () if self.sampling.greedy else (score,)

    def pending(self, context: list[int]):
        import mlx.core as mx

        self.round_start = len(context)
        return mx.array(context[self.offset:], mx.uint32)

    def propose(self, context: list[int], limit: int) -> Proposal:
        if limit == 0:
            self.round_start = len(context)
            return empty_proposal()
        import mlx.core as mx

        token = self.pending(context)
        tokens, scores = [], []
        for _ in range(limit):
            token, score = self.step(token)
            mx.async_eval(token, *self.kept(score))
            tokens.append(token)
            scores.append(score)
        return self.proposal(tokens, scores, limit)

    def proposal(self, tokens: list, scores: list, count: int) -> Proposal:
        """The first `count` of the drafted tokens as a Proposal."""
        import mlx.core as mx

        logq = None if self.sampling.greedy else mx.concatenate(scores[:count])
        return Proposal(mx.concatenate(tokens[:count]), count, logq, drafted=len(tokens))

    def settle(self, proposal: Proposal, accepted: int) -> None:
        """Trim the cache to the drafted tokens the target kept. It was fed every pending token and
        all drafted tokens but the last; keep the pending ones and the accepted ones among those."""
        if proposal.drafted == 0:
            return
        fed = self.round_start + proposal.drafted - 1
        keep = self.round_start + min(accepted, proposal.drafted - 1)
        rewind(self.cache, fed - keep)
        self.offset = keep


def speculative_rounds(inputs: GenerationInputs, proposer, accept=speculative_accept) -> Iterator[Round]:
    """Rounds of propose-then-verify until max_tokens tokens are emitted. The engine runs it on
    mlx-lm's generation stream, as mlx-lm's loops run (engines/mlx_lm.py, as_mlx_lm_generates)."""
    if not inputs.prompt:
        raise InvalidInputError("the prompt has no tokens")
    k = inputs.num_draft_tokens
    target = Verifier(inputs.model, inputs.sampling, accept, inputs.keys)
    context = list(inputs.prompt)
    target.prefill(context, inputs.prefill_step_size)
    proposer.prefill(context, inputs.prefill_step_size)
    emitted = 0
    while emitted < inputs.max_tokens:
        limit = max(0, min(k, inputs.max_tokens - emitted - 1))
        step = verify_round(target, proposer, context, limit)
        step.limited = step.proposed == limit < k
        context += step.tokens
        emitted += len(step.tokens)
        yield step


def verify_round(target: Verifier, proposer, context: list[int], limit: int) -> Round:
    """One round: propose up to `limit` tokens, verify them, rewind both caches. Each clock read
    follows an evaluation: the proposal (and the log q verify reads) before "drafting done", the
    verdict before "verify done", so no work of one phase is billed to the other."""
    import mlx.core as mx

    start = time.perf_counter()
    proposal = proposer.propose(context, limit)
    mx.eval(proposal.tokens, *(() if proposal.logq is None else (proposal.logq,)))
    drafted = time.perf_counter()
    verdict = target.verify(context[-1], proposal)
    accepted, token = verdict.tolist()
    verified = time.perf_counter()
    target.settle(proposal.count, accepted)
    proposer.settle(proposal, accepted)
    tokens = proposal.tokens.tolist()[:accepted] + [token]
    draft_s = drafted - start if getattr(proposer, "measures_drafting", False) else None
    return Round(tokens, proposal.count, accepted, draft_s=draft_s, target_s=verified - drafted)


def draft_proposer(inputs: GenerationInputs, method_key: str = "draft", kind=DraftModel, **options) -> DraftModel:
    """A `kind` of DraftModel over the inputs' draft model, sized to the target's logits."""
    if inputs.draft_model is None:
        raise InvalidInputError(f"the {method_key} method needs a draft model")
    return kind(inputs.draft_model, inputs.sampling, logits_width(inputs.model), keys=inputs.keys, **options)


def run(inputs: GenerationInputs, accept=speculative_accept) -> Iterator[Round]:
    """The `draft` method; `accept` replaces the accept/resample rule (tests swap it)."""
    yield from speculative_rounds(inputs, draft_proposer(inputs), accept)
