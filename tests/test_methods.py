"""The drafting methods `draft`, `draft-adaptive` and `prompt-lookup`: greedy output equal to the
target's own, sampled output following the target's distribution (with negative controls that
must fail the same test), the prompt-lookup proposal rule, the adaptive length rule, and the
Round contract (accepted <= proposed, exactly max_tokens emitted, `limited` only at the end)."""

from __future__ import annotations

import math
import random
from collections import Counter
from contextlib import closing

import mlx.core as mx
import pytest

from mlxdraft.engines.mlx_loops import baseline, draft, draft_adaptive, prompt_lookup
from mlxdraft.engines.mlx_loops.inputs import GenerationInputs
from mlxdraft.engines.mlx_loops.sampling import processed_logprobs, speculative_accept
from mlxdraft.methods import METHODS, Sampling
from mlxdraft.methods.draft_adaptive import Calibration
from mlxdraft.methods.prompt_lookup import NgramIndex, lookup

NEW_METHODS = (draft, draft_adaptive, prompt_lookup)


# -- helpers --------------------------------------------------------------------------------------
class Reshaped:
    """A model whose logits are another's, reshaped: times `scale`, plus a fixed random bias per
    token (`noise`), plus `extra` positions (a wider logits width) holding `extra_logit`. Input ids
    past the base model's width are folded back into it, so it can also be a target emitting them."""

    def __init__(self, model, scale=1.0, noise=0.0, extra=0, extra_logit=0.0, seed=0):
        self.model, self.layers = model, model.layers
        self.width = model(mx.array([[0]])).shape[-1]
        self.scale, self.extra, self.extra_logit = scale, extra, extra_logit
        self.bias = noise * mx.random.normal((self.width,), key=mx.random.key(seed))

    def __call__(self, inputs, cache=None):
        logits = self.model(inputs % self.width, cache=cache) * self.scale + self.bias
        if self.extra:
            padding = mx.full((*logits.shape[:-1], self.extra), self.extra_logit, logits.dtype)
            logits = mx.concatenate([logits, padding], axis=-1)
        return logits


def inputs_for(target, draft_model, prompt, max_tokens, k=0, sampling=None, **params):
    return GenerationInputs(model=target, draft_model=draft_model, prompt=list(prompt), max_tokens=max_tokens,
                            num_draft_tokens=k, sampling=sampling or Sampling(), params=params)


def rounds_of(method, inputs, **options):
    return list(method.run(inputs, **options))


def emitted(rounds) -> list[int]:
    return [token for step in rounds for token in step.tokens]


def check_contract(rounds, max_tokens, k, fixed_k=False):
    """accepted <= proposed <= k, exactly max_tokens emitted, a target token ends every round, and
    `limited` only where fewer than k + 1 tokens were left."""
    done = 0
    for step in rounds:
        assert 0 <= step.accepted <= step.proposed <= k
        assert len(step.tokens) == step.accepted + 1
        near_end = max_tokens - done < k + 1
        assert step.limited == (near_end and step.proposed == max_tokens - done - 1)
        if fixed_k:
            assert step.proposed == min(k, max_tokens - done - 1)
        assert step.draft_s is None or step.draft_s >= 0  # None without a draft model: test_drafting_time_*
        assert step.target_s is not None and step.target_s >= 0
        done += len(step.tokens)
    assert done == max_tokens


# -- temperature 0: the target's own greedy output --------------------------------------------------
PROMPTS = ("The capital of France is", "def add(a, b):\n    return")


@pytest.fixture(scope="module")
def pairs(loaded):
    """(target, draft) pairs on the tiny kit, float32: a Llama draft that agrees with the target
    only sometimes, the Qwen pair (target logits wider), the Qwen pair swapped (draft wider), and a
    draft wider than the target whose extra positions would win every argmax if not cut off."""
    target = loaded["target"].model
    return {
        "llama": (target, Reshaped(target, scale=20.0, noise=4.0, seed=1)),
        "qwen": (loaded["target_qwen"].model, loaded["draft_qwen_wide"].model),
        "qwen-swapped": (loaded["draft_qwen_wide"].model, loaded["target_qwen"].model),
        "wide-draft": (target, Reshaped(target, extra=32, extra_logit=1e4)),
    }


@pytest.fixture(scope="module")
def greedy_reference(loaded, pairs):
    """The target's own greedy tokens (baseline method) for each pair's target and prompt."""
    tokenizer = loaded["target"].tokenizer
    reference = {}
    for name, (target, _) in pairs.items():
        for text in PROMPTS:
            prompt = tokenizer.encode(text)
            reference[name, text] = prompt, emitted(rounds_of(baseline, inputs_for(target, None, prompt, 12)))
    return reference


GREEDY_CASES = [(method, pair) for method in (draft, draft_adaptive) for pair in ("llama", "qwen", "qwen-swapped",
                                                                                  "wide-draft")]
GREEDY_CASES.append((prompt_lookup, "llama"))  # no draft model: one target is enough


@pytest.mark.parametrize(("method", "pair"), GREEDY_CASES, ids=[f"{m.METHOD.key}-{p}" for m, p in GREEDY_CASES])
def test_greedy_output_is_the_targets_own(pairs, greedy_reference, method, pair):
    target, draft_model = pairs[pair]
    params = {"threshold": 0.6} if method is draft_adaptive else {}
    ks, texts = (range(1, 6), PROMPTS) if pair == "llama" else ((2, 5), PROMPTS[:1])
    for text in texts:
        prompt, expected = greedy_reference[pair, text]
        for k in ks:
            for max_tokens in sorted({1, 2, k, k + 1, 12}):
                rounds = rounds_of(method, inputs_for(target, draft_model, prompt, max_tokens, k, **params))
                assert emitted(rounds) == expected[:max_tokens], (text, k, max_tokens)
                check_contract(rounds, max_tokens, k, fixed_k=method is draft)


def test_a_wider_draft_never_proposes_ids_past_the_targets_width(pairs, greedy_reference):
    """The wide draft is the target plus 32 positions that dominate its logits: cut to the
    target's width it is the target itself, so every proposal is accepted, greedy or sampled."""
    target, wide = pairs["wide-draft"]
    prompt, _ = greedy_reference["wide-draft", PROMPTS[0]]
    for sampling in (Sampling(), Sampling(temp=0.7)):
        mx.random.seed(0)
        rounds = rounds_of(draft, inputs_for(target, wide, prompt, 12, 3, sampling))
        assert all(token < 400 for token in emitted(rounds))
        assert sum(step.accepted for step in rounds) >= 0.9 * sum(step.proposed for step in rounds)


def test_draft_accepts_what_mlx_lms_loop_accepts(pairs, greedy_reference):
    """Same pair, same k, temperature 0: the same draft proposals, so the same acceptance per round
    (up to the last rounds, where mlx-lm proposes up to the tokens left and draft one fewer)."""
    from mlxdraft.engines.mlx_loops import mlx_lm

    target, draft_model = pairs["llama"]
    prompt, _ = greedy_reference["llama", PROMPTS[1]]
    for k in (2, 4):
        ours = rounds_of(draft, inputs_for(target, draft_model, prompt, 30, k))
        theirs = rounds_of(mlx_lm, inputs_for(target, draft_model, prompt, 30, k))
        unlimited = [(a.accepted, b.accepted) for a, b in zip(ours, theirs) if not (a.limited or b.limited)]
        assert len(unlimited) >= 5 and all(a == b for a, b in unlimited), unlimited


@pytest.mark.parametrize("method", [draft, draft_adaptive], ids=lambda m: m.METHOD.key)
def test_a_draft_equal_to_the_target_is_always_accepted(loaded, method):
    """Any slip in the draft cache's rewind (a token dropped or fed twice) shows up here."""
    target = loaded["target"].model
    prompt = loaded["target"].tokenizer.encode(PROMPTS[1])
    for sampling in (Sampling(), Sampling(temp=1.0)):
        mx.random.seed(0)
        rounds = rounds_of(method, inputs_for(target, target, prompt, 20, 3, sampling, threshold=0.0))
        assert all(step.accepted == step.proposed for step in rounds), [(s.proposed, s.accepted) for s in rounds]


def test_the_kits_own_draft_and_the_llama_pair_accept_and_reject(pairs, loaded, greedy_reference):
    """The test pair exercises both paths; the kit's random draft agrees with the target rarely."""
    target, reshaped = pairs["llama"]
    prompt, expected = greedy_reference["llama", PROMPTS[0]]
    rounds = rounds_of(draft, inputs_for(target, reshaped, prompt, 12, 3))
    accepted = [step.accepted for step in rounds]
    assert 0 < sum(accepted) < sum(step.proposed for step in rounds)
    rounds = rounds_of(draft, inputs_for(target, loaded["draft"].model, prompt, 12, 3))
    assert emitted(rounds) == expected


# -- temperature > 0: the target's distribution -----------------------------------------------------
SAMPLED_PROMPT = [1, 0]
SAMPLES = 150  # with the micro pair below: the controls fail at p < 1e-6, the methods pass


@pytest.fixture(scope="module")
def micro():
    """A one-layer Llama with a 24-token vocabulary (mlx-lm's own model code, random weights):
    small enough for hundreds of seeded generations and a chi-square test with few cells."""
    from mlx_lm.models import llama

    args = llama.ModelArgs(model_type="llama", hidden_size=32, num_hidden_layers=1, intermediate_size=64,
                           num_attention_heads=2, num_key_value_heads=1, rms_norm_eps=1e-5, vocab_size=24)
    mx.random.seed(1)
    model = llama.Model(args)
    mx.eval(model.parameters())
    return model


@pytest.fixture(scope="module")
def micro_pair(micro):
    """A target whose logits are 3 positions wider than its draft's (those positions get real
    probability), and a draft that is a sharper copy (logits x 4) of the target: it agrees with
    the target's ranking but not its probabilities, so the correction is needed."""
    return Reshaped(micro, extra=3, extra_logit=1.0), Reshaped(micro, scale=4.0)


def exact_first_two(target, prompt, sampling):
    """The target's exact distributions of the first and (marginally) the second generated token."""
    first = mx.exp(processed_logprobs(target(mx.array([prompt]))[0, -1], sampling))
    support = [token for token, p in enumerate(first.tolist()) if p > 0]
    followers = mx.array([prompt + [token] for token in support])
    second_given = mx.exp(processed_logprobs(target(followers)[:, -1], sampling))
    second = (first[mx.array(support)][:, None] * second_given).sum(axis=0)
    return first.tolist(), second.tolist()


def sample_first_two(method, inputs, samples, **options):
    """Counts of the first and second emitted tokens over `samples` seeded generations."""
    firsts, seconds = Counter(), Counter()
    for seed in range(samples):
        mx.random.seed(seed)
        tokens: list[int] = []
        with closing(method.run(inputs, **options)) as steps:
            for step in steps:
                tokens += step.tokens
                if len(tokens) >= 2:
                    break
        firsts[tokens[0]] += 1
        seconds[tokens[1]] += 1
    return firsts, seconds


def chi_square_p_value(counts: Counter, probs: list[float], min_expected: float = 5.0) -> float:
    """Pearson's test of `counts` against `probs`; cells expecting fewer than `min_expected` are
    pooled. A count where the probability is 0 gives 0. Wilson-Hilferty for the chi-square tail."""
    total = sum(counts.values())
    if any(count and (token >= len(probs) or probs[token] == 0) for token, count in counts.items()):
        return 0.0
    cells, rare_observed, rare_expected = [], 0, 0.0
    for token, p in enumerate(probs):
        if total * p >= min_expected:
            cells.append((counts[token], total * p))
        else:
            rare_observed += counts[token]
            rare_expected += total * p
    if rare_expected > 0:
        cells.append((rare_observed, rare_expected))
    statistic = sum((observed - expected) ** 2 / expected for observed, expected in cells)
    return chi_square_tail(statistic, len(cells) - 1)


def chi_square_tail(statistic: float, df: int) -> float:
    if df <= 0:
        return 1.0
    scale = 2.0 / (9.0 * df)
    z = ((statistic / df) ** (1.0 / 3.0) - (1.0 - scale)) / math.sqrt(scale)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def test_the_chi_square_test_itself():
    assert chi_square_p_value(Counter({0: 50, 1: 50}), [0.5, 0.5]) > 0.5
    assert chi_square_p_value(Counter({0: 90, 1: 10}), [0.5, 0.5]) < 1e-6
    assert chi_square_p_value(Counter({0: 99, 2: 1}), [0.5, 0.5, 0.0]) == 0.0
    assert abs(chi_square_tail(11.07, 5) - 0.05) < 0.005  # the textbook 5% point


def accept_all(p, q, tokens):
    """Negative control: keep every proposed token, then sample the bonus token from p."""
    return mx.stack([mx.array(tokens.size, mx.int32), mx.random.categorical(mx.log(p[tokens.size])).astype(mx.int32)])


def resample_from_p(p, q, tokens):
    """Negative control: the right acceptance test, but on rejection a fresh sample from p
    instead of the residual norm(max(p - q, 0))."""
    verdict = speculative_accept(p, q, tokens)
    n = verdict[0]
    return mx.stack([n, mx.random.categorical(mx.log(mx.take(p, n, axis=0))).astype(mx.int32)])


def p_values(method, inputs, exact, samples=SAMPLES, **options):
    firsts, seconds = sample_first_two(method, inputs, samples, **options)
    return chi_square_p_value(firsts, exact[0]), chi_square_p_value(seconds, exact[1])


SAMPLED = Sampling(temp=1.0)
FILTERED = Sampling(temp=1.5, top_p=0.9, top_k=8)


@pytest.mark.parametrize(("method", "sampling", "params"), [
    (draft, SAMPLED, {}),
    (draft, FILTERED, {}),
    (draft_adaptive, SAMPLED, {"threshold": 0.7}),
], ids=["draft", "draft-top-p-top-k", "draft-adaptive"])
def test_sampled_output_follows_the_targets_distribution(micro_pair, method, sampling, params):
    target, draft_model = micro_pair
    inputs = inputs_for(target, draft_model, SAMPLED_PROMPT, 3, 2, sampling, **params)
    first, second = p_values(method, inputs, exact_first_two(target, SAMPLED_PROMPT, sampling))
    assert min(first, second) > 1e-3, (first, second)


@pytest.mark.parametrize(("wrong", "samples"), [(accept_all, 50), (resample_from_p, SAMPLES)],
                         ids=["accept_all", "resample_from_p"])
def test_the_distribution_test_catches_a_missing_correction(micro_pair, wrong, samples):
    target, draft_model = micro_pair
    inputs = inputs_for(target, draft_model, SAMPLED_PROMPT, 3, 2, SAMPLED)
    exact = exact_first_two(target, SAMPLED_PROMPT, SAMPLED)
    first, second = p_values(draft, inputs, exact, samples=samples, accept=wrong)
    assert min(first, second) < 1e-4, (first, second)


LOOKUP_PROMPT = [5, 6, 7, 9, 5, 6]  # the last two tokens occurred before: proposes [7, 9]


def test_prompt_lookup_sampled_output_follows_the_targets_distribution(micro):
    inputs = inputs_for(micro, None, LOOKUP_PROMPT, 3, 2, SAMPLED)
    exact = exact_first_two(micro, LOOKUP_PROMPT, SAMPLED)
    first, second = p_values(prompt_lookup, inputs, exact)
    assert min(first, second) > 1e-3, (first, second)
    first, second = p_values(prompt_lookup, inputs, exact, samples=50, accept=accept_all)
    assert min(first, second) < 1e-4, (first, second)


def test_the_accept_rule_alone_is_exact_with_a_narrower_proposer():
    """speculative_accept with fixed p (3 rows, width 6) and q (2 rows, width 5): the first emitted
    token follows p_0, the second (when the first was kept) p_1, the bonus token p_2."""
    rng = random.Random(0)
    p = [[rng.random() ** 2 for _ in range(6)] for _ in range(3)]
    p = [[x / sum(row) for x in row] for row in p]
    q = [[0.55, 0.05, 0.25, 0.1, 0.05], [0.05, 0.1, 0.6, 0.15, 0.1]]
    p_mx, q_mx = mx.array(p), mx.array(q)
    firsts, seconds, bonuses = Counter(), Counter(), Counter()
    mx.random.seed(0)
    for _ in range(2000):
        proposal = mx.random.categorical(mx.log(q_mx))
        n, token = speculative_accept(p_mx, q_mx, proposal.astype(mx.uint32)).tolist()
        chain = proposal.tolist()[:n] + [token]
        firsts[chain[0]] += 1
        if len(chain) > 1:
            seconds[chain[1]] += 1
        if n == 2:
            bonuses[token] += 1
    assert firsts[5] > 0  # the position q lacks comes from the residual
    for counts, row in ((firsts, p[0]), (seconds, p[1]), (bonuses, p[2])):
        assert chi_square_p_value(counts, row) > 1e-3


def test_processed_logprobs_is_the_distribution_mlx_lms_sampler_draws_from():
    """Same filters, same order, same temperature: mlx-lm's own sampler's draws (the one mlxdraft
    gives mlx-lm's loops) follow processed_logprobs."""
    from mlx_lm.sample_utils import make_sampler as mlx_lm_make_sampler

    from mlxdraft.engines.mlx_loops.sampling import make_sampler

    sampling = Sampling(temp=0.8, top_p=0.95, top_k=5, min_p=0.05)
    logits = mx.array([[2.0, 1.5, 1.4, 1.0, 0.2, -0.5, -1.0, 0.9]])
    probs = mx.exp(processed_logprobs(logits, sampling))[0].tolist()
    assert abs(sum(probs) - 1) < 1e-5 and sum(p > 0 for p in probs) <= 5
    theirs = mlx_lm_make_sampler(sampling.temp, top_p=sampling.top_p, min_p=sampling.min_p, top_k=sampling.top_k)
    mx.random.seed(0)
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    for sampler in (theirs, make_sampler(sampling)):
        draws = Counter(sampler(mx.repeat(logprobs, 3000, axis=0)).tolist())  # one draw per row
        assert chi_square_p_value(draws, probs) > 1e-3
    greedy = mx.exp(processed_logprobs(logits, Sampling()))[0].tolist()
    assert greedy == [1.0] + [0.0] * 7


# -- prompt lookup ----------------------------------------------------------------------------------
def test_lookup_takes_the_most_recent_earlier_occurrence():
    context = [1, 2, 3, 9, 4, 1, 2, 3, 8, 5, 1, 2, 3]
    assert lookup(context, 3) == [8, 5, 1]
    assert lookup(context, 1) == [8]
    assert lookup(context, 10) == [8, 5, 1, 2, 3]  # up to the end of the context, never past it


def test_lookup_falls_back_to_shorter_ngrams_and_may_find_nothing():
    assert lookup([7, 1, 2, 9, 4, 2], 2) == [9, 4]  # (9, 4, 2) and (4, 2) are new, (2,) is not
    assert lookup([7, 1, 2, 9, 4, 2], 2, ngram_min=2) == []
    assert lookup([1, 2, 3, 4], 3) == []
    assert lookup([], 3) == []
    assert lookup([5, 5, 5], 3) == [5]  # the overlapping occurrence of (5, 5) at the start
    assert lookup([1, 2, 1], 0) == []


def test_the_growing_index_agrees_with_a_one_off_lookup():
    rng = random.Random(1)
    tokens = [rng.randrange(4) for _ in range(60)]
    index = NgramIndex(3, 1)
    for end in range(0, 60, 7):
        index.extend(tokens[len(index.tokens):end])
        assert index.continuation(4) == lookup(tokens[:end], 4)


def test_prompt_lookup_accepts_most_proposals_when_the_output_copies_the_prompt(loaded):
    """The tiny target falls into a short cycle; with the cycle already in the prompt, the output
    copies the prompt and looked-up proposals are almost all accepted."""
    target, tokenizer = loaded["target"].model, loaded["target"].tokenizer
    prompt = tokenizer.encode(PROMPTS[0])
    continuation = emitted(rounds_of(baseline, inputs_for(target, None, prompt, 40)))
    copied = prompt + continuation[:25]
    expected = continuation[25:]
    premise = any(copied[i:i + 6] == expected[:6] for i in range(len(copied)))
    assert premise, ("the output should repeat the input", prompt, continuation)
    rounds = rounds_of(prompt_lookup, inputs_for(target, None, copied, 15, 4))
    assert emitted(rounds) == expected
    proposed = sum(step.proposed for step in rounds)
    assert proposed >= 10 and sum(step.accepted for step in rounds) > 0.8 * proposed
    check_contract(rounds, 15, 4)


def test_prompt_lookup_without_a_match_is_plain_decoding(micro):
    rounds = rounds_of(prompt_lookup, inputs_for(micro, None, [1, 2, 3], 1, 4))
    assert [(step.proposed, step.accepted, step.limited) for step in rounds] == [(0, 0, True)]
    rounds = rounds_of(prompt_lookup, inputs_for(micro, None, [1, 2, 3], 6, 4, Sampling(temp=1.0)))
    check_contract(rounds, 6, 4)
    assert not rounds[0].limited and rounds[0].proposed == 0


# -- draft-adaptive -------------------------------------------------------------------------------
def test_adaptive_drafting_stops_early_but_never_past_k(pairs, greedy_reference):
    target, draft_model = pairs["llama"]
    prompt, expected = greedy_reference["llama", PROMPTS[0]]
    lengths = set()
    for threshold in (0.0, 0.6, 0.95):
        rounds = rounds_of(draft_adaptive, inputs_for(target, draft_model, prompt, 12, 4, threshold=threshold))
        assert emitted(rounds) == expected
        check_contract(rounds, 12, 4, fixed_k=threshold == 0.0)
        lengths |= {step.proposed for step in rounds if not step.limited}
    assert {1, 4} <= lengths  # stopped after one token somewhere, ran to k elsewhere


def test_adaptive_sampled_runs_keep_the_contract(micro_pair):
    target, draft_model = micro_pair
    for seed in range(3):
        mx.random.seed(seed)
        rounds = rounds_of(draft_adaptive, inputs_for(target, draft_model, SAMPLED_PROMPT, 15, 3, SAMPLED))
        check_contract(rounds, 15, 3)


def test_calibration_stops_an_overconfident_draft_sooner():
    calibration = Calibration(0.4, enabled=True)
    assert calibration.cutoff() == pytest.approx(0.4)
    for _ in range(10):
        calibration.observe([0.9, 0.9, 0.9], accepted=0)  # sure of itself, always wrong
    assert calibration.cutoff() > 0.9
    for _ in range(30):
        calibration.observe([0.3, 0.3, 0.3, 0.3], accepted=4)  # unsure, always right
    assert calibration.cutoff() < 0.2
    assert Calibration(0.4, enabled=False).cutoff() == 0.4
    calibration = Calibration(0.0, enabled=True)
    calibration.observe([0.9], accepted=0)
    assert calibration.cutoff() == 0.0  # threshold 0: never stops early


# -- every new method ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", NEW_METHODS, ids=lambda m: m.METHOD.key)
def test_sampled_runs_emit_exactly_max_tokens(micro_pair, method):
    target, draft_model = micro_pair
    for prompt, max_tokens, k in ((LOOKUP_PROMPT, 1, 3), (LOOKUP_PROMPT, 4, 3), (LOOKUP_PROMPT, 9, 2), ([7], 5, 2)):
        mx.random.seed(max_tokens)
        rounds = rounds_of(method, inputs_for(target, draft_model, prompt, max_tokens, k, SAMPLED))
        check_contract(rounds, max_tokens, k, fixed_k=method is draft)


def test_the_methods_are_registered():
    for module, needs_draft in ((draft, True), (draft_adaptive, True), (prompt_lookup, False)):
        method = METHODS[module.METHOD.key]
        assert method is module.METHOD
        assert method.needs_draft is needs_draft and method.uses_k and method.native_engine is None
    assert METHODS["draft-adaptive"].defaults == {"threshold": 0.4, "calibrate": True}
    assert METHODS["prompt-lookup"].defaults == {"ngram_max": 3, "ngram_min": 1}


def test_the_documented_calibrate_forms_work():
    """The module documents `--param draft-adaptive.calibrate=0`: it passes the CLI's parser and turns
    calibration off; words work in the Python API; anything else is one clear error."""
    import re

    from mlxdraft.cli import parse_params
    from mlxdraft.errors import InvalidInputError
    from mlxdraft.methods import draft_adaptive

    documented = re.findall(r"--param (draft-adaptive\.calibrate=\S+?)`", draft_adaptive.__doc__ or "")
    assert documented, "the module documents how to turn calibration off on the command line"
    for text in documented:
        params = parse_params([text], [draft_adaptive.METHOD])["draft-adaptive"]
        assert draft_adaptive.as_flag(params["calibrate"]) is False
    assert draft_adaptive.as_flag(1.0) is True and draft_adaptive.as_flag("off") is False
    for wrong in (0.5, "maybe"):
        with pytest.raises(InvalidInputError, match="calibrate must be true or false, 1 or 0"):
            draft_adaptive.as_flag(wrong)


def test_drafting_time_is_reported_only_for_a_draft_model(pairs, greedy_reference):
    target, draft_model = pairs["llama"]
    prompt, _ = greedy_reference["llama", PROMPTS[0]]
    for method, has_draft_time in ((draft, True), (draft_adaptive, True), (prompt_lookup, False)):
        rounds = rounds_of(method, inputs_for(target, draft_model, prompt, 8, 3))
        assert all((step.draft_s is not None) == has_draft_time for step in rounds), method.METHOD.key
        assert all(step.target_s > 0 for step in rounds)
