"""How a token is chosen from logits: the distribution mlx-lm's sampler draws from (top-p, min-p,
top-k, then temperature), a sampler for mlx-lm's loops that draws from it, and the speculative
accept/resample rule that keeps a target's distribution exact whatever proposed the tokens, so
that every method samples from the same thing.

mlx-lm's loops sample with mlx-lm's own sampler from MLX's global generator, which the engine seeds
per generation and restores afterwards; the own loops take every key from the generation's own
stream (`RandomKeys`). Either way a generation neither depends on nor changes the caller's random
numbers. The rules
(`greedy_accept`, `speculative_accept`) are pure functions of lazy mlx arrays that return one
array `[accepted, token]`: how many proposed tokens the target keeps and the token it emits after
them.
"""

from __future__ import annotations

from ...methods.base import Sampling


def make_sampler(sampling: Sampling):
    """mlx-lm's own sampler for these settings (log-probabilities in, token ids out), for mlx-lm's
    loops (`baseline`, `mlx-lm`), so that they run exactly as `mlx_lm.generate` does. It draws from
    MLX's global generator: the engine seeds it for the generation and gives the caller's state back
    afterwards. A top-k at or above the vocabulary is off (mlx-lm's filter would fail there)."""
    from mlx_lm.sample_utils import make_sampler as mlx_lm_make_sampler

    build = lambda top_k: mlx_lm_make_sampler(sampling.temp, top_p=sampling.top_p,  # noqa: E731
                                              min_p=sampling.min_p, top_k=top_k)
    sampler = build(sampling.top_k)
    if sampling.top_k <= 0:
        return sampler
    unfiltered = build(0)
    return lambda logprobs: (sampler if sampling.top_k < logprobs.shape[-1] else unfiltered)(logprobs)


def processed_logprobs(logits, sampling: Sampling):
    """Log-probabilities (float32, one row per row of `logits`) of the distribution mlx-lm's
    sampler draws from: top-p, min-p and top-k filters on the log-softmax, in mlx-lm's order, then
    softmax(logprobs / temp). At temperature 0, the one-hot distribution of the argmax. A top-k at
    or above the vocabulary keeps every token, so it is off (mlx-lm's filter would fail there)."""
    import mlx.core as mx
    from mlx_lm.sample_utils import apply_min_p, apply_top_k, apply_top_p

    logits = logits.astype(mx.float32)
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    if sampling.greedy:
        best = mx.argmax(logprobs, axis=-1, keepdims=True)
        positions = mx.arange(logprobs.shape[-1])
        return mx.where(positions == best, 0.0, -mx.inf).astype(mx.float32)
    if 0 < sampling.top_p < 1.0:
        logprobs = apply_top_p(logprobs, sampling.top_p)
    if sampling.min_p != 0.0:
        logprobs = apply_min_p(logprobs, sampling.min_p)
    if 0 < sampling.top_k < logprobs.shape[-1]:
        logprobs = apply_top_k(logprobs, sampling.top_k)
    scaled = logprobs * (1.0 / sampling.temp)
    return scaled - mx.logsumexp(scaled, axis=-1, keepdims=True)


def one_hot(tokens, width: int):
    """(m,) token ids -> (m, width) probabilities of a deterministic proposal."""
    import mlx.core as mx

    return (mx.arange(width)[None, :] == tokens[:, None]).astype(mx.float32)


def _verdict(accepted, token):
    import mlx.core as mx

    return mx.stack([accepted.astype(mx.int32), token.astype(mx.int32)])


def _accepted_prefix(matches):
    """Length of the leading run of True in a (m,) boolean array, as a lazy scalar."""
    import mlx.core as mx

    return mx.sum(mx.cumprod(matches.astype(mx.int32)))


def greedy_accept(logits, tokens):
    """Temperature 0: keep proposed tokens while they equal the target's argmax; then emit the
    target's argmax at the first mismatch (or after the last proposal). `logits` is (m+1, V) in
    the model's dtype; the argmax is taken on log-probabilities, as mlx-lm's greedy sampler does."""
    import mlx.core as mx

    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    choices = mx.argmax(logprobs, axis=-1)
    if tokens.size == 0:
        return _verdict(mx.array(0), choices[0])
    accepted = _accepted_prefix(choices[: tokens.size] == tokens)
    return _verdict(accepted, mx.take(choices, accepted, axis=0))


def speculative_accept(p, q, tokens, key=None):
    """Exact speculative sampling (Leviathan et al. 2023, Chen et al. 2023).

    p: (m+1, V) target probabilities at the m proposal positions and one more; q: (m, W) the
    probabilities the m proposed `tokens` were drawn from (W <= V: positions past a narrower
    proposer's width have probability 0 there). Token x_i is kept with probability
    min(1, p_i(x_i) / q_i(x_i)); at the first rejection the emitted token is drawn from
    norm(max(p_i - q_i, 0)); when all are kept, from p_m. Every emitted token then follows p.
    `key` (None = MLX's global generator) is split for the two draws.
    """
    import mlx.core as mx

    uniform_key, token_key = mx.random.split(key) if key is not None else (None, None)
    if tokens.size == 0:
        return _verdict(mx.array(0), mx.random.categorical(mx.log(p[0]), key=token_key))
    m, width = tokens.size, p.shape[-1]
    if q.shape[-1] < width:
        q = mx.pad(q, [(0, 0), (0, width - q.shape[-1])])
    index = tokens.astype(mx.int32)[:, None]
    p_x = mx.take_along_axis(p[:m], index, axis=-1)[:, 0]
    q_x = mx.take_along_axis(q, index, axis=-1)[:, 0]
    accepted = _accepted_prefix(mx.random.uniform(shape=(m,), key=uniform_key) * q_x < p_x)
    q = mx.concatenate([q, mx.zeros((1, width), q.dtype)])  # row m: nothing to subtract from p_m
    p_n = mx.take(p, accepted, axis=0)
    residual = mx.maximum(p_n - mx.take(q, accepted, axis=0), 0.0)
    residual = mx.where(mx.sum(residual) > 0, residual, p_n)  # p == q up to rounding: keep p
    return _verdict(accepted, mx.random.categorical(mx.log(residual), key=token_key))
