"""Tests for mlxdraft.prediction: the closed form on hand-made inputs, and by seeded simulation of runs
with a known per-position acceptance and known costs, the accuracy of the predictions at every k and the
coverage of their intervals."""

import dataclasses
import math
import random

import pytest

from mlxdraft.errors import InvalidInputError
from mlxdraft.measure import RunSample, Trace, VerifyRound, add_round_counts, sample_from_trace
from mlxdraft.prediction import (
    AcceptanceProfile,
    Prediction,
    VerifyCosts,
    _decode_phase,
    can_still_win,
    costs_from_samples,
    fit_model,
    non_decreasing,
)

# --- hand-made samples ----------------------------------------------------------------------------------


def made_sample(k: int, prompt_index: int, pass_index: int, accepted: list[int], with_rounds: bool = True,
                ttft_s: float = 0.5) -> RunSample:
    """A speculative run whose complete rounds accepted `accepted` drafted tokens each (one partial round
    at the end, which every statistic must ignore)."""
    rounds = [VerifyRound(k, a) for a in accepted] + [VerifyRound(max(k - 1, 0), 0, complete=False)]
    tokens = sum(r.accepted + 1 for r in rounds)
    sample = RunSample(
        num_draft_tokens=k, prompt_index=prompt_index, category="custom", pass_index=pass_index,
        prompt_tokens=20, generated_tokens=tokens, ttft_s=ttft_s, prefill_tps=20 / ttft_s,
        decode_tokens=tokens - 1, decode_s=1.0, decode_tps=tokens - 1.0, wall_s=ttft_s + 1.0,
        peak_memory_gb=1.0, finish_reason="length", token_ids=list(range(tokens)), method="draft")
    add_round_counts(sample, rounds, k)
    if with_rounds:
        sample.rounds = [[r.proposed, r.accepted, int(r.complete)] for r in rounds]
    return sample


def geometric_rounds(alpha: float, k: int, total: int) -> list[int]:
    """Accepted counts of `total` rounds in exactly the proportions of a constant acceptance alpha."""
    shares = [alpha ** j * (1 - alpha) for j in range(k)] + [alpha ** k]
    counts = [round(share * total) for share in shares]
    assert sum(counts) == total and all(math.isclose(c, s * total) for c, s in zip(counts, shares))
    return [j for j, count in enumerate(counts) for _ in range(count)]


def linear_costs(k_max: int, base_s: float = 0.02, per_token_s: float = 0.002, draft_s: float = 0.003):
    return VerifyCosts({n: [base_s + per_token_s * n] for n in range(1, k_max + 2)}, [draft_s])


# --- the closed form ------------------------------------------------------------------------------------


def simulated_decode_phase(alpha: float, k: int, generated: int, round_s, runs: int, seed: int = 0):
    """Mean (tokens, seconds) after the first round, by playing runs round by round: each drafted token
    accepted with probability alpha until the first rejection, at most what is left drafted."""
    rng = random.Random(seed)
    tokens = seconds = 0.0
    for _ in range(runs):
        emitted, first = 0, True
        while emitted < generated:
            drafted = min(k, generated - emitted)
            accepted = 0
            while accepted < drafted and rng.random() < alpha:
                accepted += 1
            if not first:
                seconds += round_s(drafted)
                tokens += min(accepted + 1, generated - emitted)
            emitted += min(accepted + 1, generated - emitted)
            first = False
    return tokens / runs, seconds / runs


@pytest.mark.parametrize("k, generated", [(1, 6), (3, 9), (4, 5), (6, 16)])
def test_short_runs_decode_phase_matches_playing_the_rounds(k, generated):
    alpha = 0.7
    reach = [alpha ** i for i in range(k + 1)]
    round_s = lambda drafted: 0.05 + 0.01 * drafted  # noqa: E731
    tokens, seconds = _decode_phase(reach, k, generated, round_s)
    played_tokens, played_seconds = simulated_decode_phase(alpha, k, generated, round_s, runs=20000)
    assert tokens == pytest.approx(played_tokens, rel=0.02)
    assert seconds == pytest.approx(played_seconds, rel=0.02)


@pytest.mark.parametrize("alpha", [0.5, 0.75])
def test_constant_acceptance_matches_closed_form(alpha):
    k_max = 4
    accepted = geometric_rounds(alpha, k_max, 256)
    samples = [made_sample(k_max, p, 0, accepted) for p in range(3)]
    costs = linear_costs(k_max)
    model = fit_model(samples, costs)
    for k in range(1, k_max + 1):
        tokens = (1 - alpha ** (k + 1)) / (1 - alpha)
        assert model.profile.expected_tokens(k) == pytest.approx(tokens, rel=1e-12)
        round_s = k * 0.003 + 0.02 + 0.002 * (k + 1)
        prediction = model.predict(k)
        assert prediction.expected_tokens_per_round == pytest.approx(tokens, rel=1e-12)
        assert prediction.round_s == pytest.approx(round_s, rel=1e-12)
        # runs of 256 rounds: their decode phase is the steady state, but for the rounds cut at the end
        assert prediction.decode_speedup == pytest.approx(tokens / round_s * 0.022, rel=2e-3)
        steady = dataclasses.replace(model, generated_tokens={}).predict(k)  # lengths unknown: the closed form
        assert steady.decode_speedup == pytest.approx(tokens / round_s * 0.022, rel=1e-12)
        # identical units, one timing each: no spread at all
        assert prediction.low == pytest.approx(prediction.decode_speedup)
        assert prediction.high == pytest.approx(prediction.decode_speedup)
    assert model.profile.position_acceptance == pytest.approx([alpha] * k_max)
    assert model.profile.all_accepted(0) == 1.0
    assert model.profile.all_accepted(3) == pytest.approx(alpha ** 3)


def test_profile_counts_complete_rounds_at_k_only():
    sample = made_sample(3, 0, 0, [0, 3, 3, 1])
    sample.rounds.insert(1, [2, 2, 1])  # a round that drafted fewer tokens (an adaptive method) is left out
    profile = AcceptanceProfile.from_samples([sample], 3)
    assert profile.pooled_counts() == [1, 1, 0, 2] and profile.rounds == 4
    assert profile.conditional_acceptance(1) == pytest.approx(3 / 4)
    assert profile.conditional_acceptance(2) == pytest.approx(2 / 3)
    assert profile.conditional_acceptance(3) == pytest.approx(1.0)
    assert profile.expected_tokens(3) == pytest.approx(1 + 3 / 4 + 2 / 4 + 2 / 4)
    with pytest.raises(ValueError, match="measured at k=3"):
        profile.all_accepted(4)
    with pytest.raises(InvalidInputError, match="no complete verify round drafted 5 tokens"):
        AcceptanceProfile.from_samples([sample], 5)


def test_truncation_profile_from_k_max_equals_the_rounds_cut_at_k():
    rng = random.Random(3)
    k_max, k = 6, 2
    accepted = [min(int(rng.expovariate(0.4)), k_max) for _ in range(500)]
    at_max = AcceptanceProfile.from_samples([made_sample(k_max, 0, 0, accepted)], k_max)
    # a round drafting k tokens accepts min(a, k) of them: the same first tokens, stopped earlier
    at_k = AcceptanceProfile.from_samples([made_sample(k, 0, 0, [min(a, k) for a in accepted])], k)
    assert at_max.expected_tokens(k) == pytest.approx(at_k.expected_tokens(k), rel=1e-12)
    for i in range(k + 1):
        assert at_max.all_accepted(i) == pytest.approx(at_k.all_accepted(i), rel=1e-12)


def test_old_samples_with_only_accepted_length_counts():
    rng = random.Random(5)
    rounds = {(p, r): [rng.randrange(5) for _ in range(40)] for p in range(3) for r in range(2)}
    new = [made_sample(4, p, r, accepted) for (p, r), accepted in rounds.items()]
    old = [made_sample(4, p, r, accepted, with_rounds=False) for (p, r), accepted in rounds.items()]
    assert all(s.rounds is None for s in old)
    assert AcceptanceProfile.from_samples(old, 4).counts == AcceptanceProfile.from_samples(new, 4).counts
    costs = linear_costs(4)
    assert fit_model(old, costs).predict_all() == fit_model(new, costs).predict_all()
    with pytest.raises(InvalidInputError):  # old counts say nothing about another k
        AcceptanceProfile.from_samples(old, 3)


def test_fewer_than_three_units_give_no_interval():
    rng = random.Random(7)
    samples = [made_sample(4, p, 0, [rng.randrange(5) for _ in range(30)]) for p in range(3)]
    baseline = [dataclasses.replace(s, num_draft_tokens=0, method="baseline", ttft_s=0.3) for s in samples]
    costs = VerifyCosts({n: [0.02 + 0.002 * n + 0.0005 * r for r in range(5)] for n in range(1, 6)},
                        [0.003, 0.0031, 0.0029])
    two = fit_model(samples[:2], costs, baseline).predict(3)
    assert two.units == 2 and two.decode_speedup > 0 and two.e2e_speedup > 0
    assert (two.low, two.high, two.e2e_low, two.e2e_high) == (None, None, None, None)
    three = fit_model(samples, costs, baseline).predict(3)
    assert three.low < three.decode_speedup < three.high
    assert three.e2e_low < three.e2e_speedup < three.e2e_high
    without_baseline = fit_model(samples, costs).predict(3)
    assert without_baseline.e2e_speedup is None and without_baseline.low == three.low


def test_passes_of_one_prompt_are_one_unit():
    # two prompts in three passes: the prompt is the unit of replication, so still no interval
    rng = random.Random(8)
    samples = [made_sample(4, p, r, [rng.randrange(5) for _ in range(30)]) for r in range(3) for p in range(2)]
    baseline = [dataclasses.replace(s, num_draft_tokens=0, method="baseline", ttft_s=0.3) for s in samples]
    costs = VerifyCosts({n: [0.02 + 0.002 * n + 0.0005 * r for r in range(5)] for n in range(1, 6)},
                        [0.003, 0.0031, 0.0029])
    model = fit_model(samples, costs, baseline)
    assert sorted(model.profile.counts) == [0, 1]  # each prompt's rounds pooled over its passes
    prediction = model.predict(3)
    assert prediction.units == 2 and (prediction.low, prediction.high) == (None, None)


def test_costs_validation_and_interpolation():
    costs = VerifyCosts({1: [0.01], 3: [0.02], 5: [0.05]}, 0.001)
    assert costs.target_s(2) == pytest.approx(0.015) and costs.target_s(4) == pytest.approx(0.035)
    with pytest.raises(InvalidInputError, match="no verify timing for 6 tokens"):
        costs.target_s(6)
    with pytest.raises(InvalidInputError, match="need T\\(1\\)"):
        VerifyCosts({2: [0.01]}, 0.001)
    with pytest.raises(InvalidInputError, match="not a usable time"):
        VerifyCosts({1: [0.01, float("nan")]}, 0.001)
    samples = [made_sample(6, p, 0, [1, 2, 3]) for p in range(3)]
    with pytest.raises(InvalidInputError, match="need up to 7"):
        fit_model(samples, costs)
    model = fit_model(samples, linear_costs(6))
    with pytest.raises(InvalidInputError, match="from k=1 to k=6"):
        model.predict(7)
    with pytest.raises(InvalidInputError, match="say which k"):
        fit_model(samples + [made_sample(4, 0, 1, [1])], linear_costs(6))


def test_can_still_win_at_the_boundary():
    def prediction(high, e2e_high=None):
        return Prediction(k=2, decode_speedup=1.2, low=1.0, high=high, e2e_speedup=1.1, e2e_low=0.9,
                          e2e_high=e2e_high, expected_tokens_per_round=2.0, round_s=0.03)

    assert can_still_win(prediction(1.5), 1.5)
    assert not can_still_win(prediction(math.nextafter(1.5, 0)), 1.5)
    assert can_still_win(prediction(1.6), 1.5)
    assert can_still_win(prediction(None), 1.5)  # too few units to rule it out
    assert can_still_win(prediction(1.0), None)  # no leader bound yet
    assert not can_still_win(prediction(2.0, e2e_high=1.2), 1.3, objective="e2e")
    assert can_still_win(prediction(1.0, e2e_high=1.3), 1.3, objective="e2e")
    with pytest.raises(ValueError):
        can_still_win(prediction(1.0), 1.0, objective="wall")


# --- simulation -----------------------------------------------------------------------------------------

CONDITIONAL = [0.9, 0.8, 0.75, 0.7, 0.6, 0.5]  # P(i-th drafted token accepted | the ones before were)
PROMPT_SCALE = [1.0, 0.85, 1.08]  # prompts differ: each scales the profile (capped below 1)
DRAFT_TOKEN_S = 0.002
PREFILL_S = 0.04
DRAFT_PREFILL_S = 0.01


def apple_verify_s(n: int) -> float:
    """Almost linear from 2 to 8 rows, with a step from 1 to 2."""
    return 0.020 + (0.002 + 0.001 * (n - 1) if n > 1 else 0.0)


def cpu_verify_s(n: int) -> float:
    return 0.010 * n ** 0.9


def conditional(prompt_index: int, scales=PROMPT_SCALE) -> list[float]:
    return [min(p * scales[prompt_index % len(scales)], 0.97) for p in CONDITIONAL]


def simulate_run(rng, k: int, prompt_index: int, pass_index: int, tokens: int, verify_s, noise: float,
                 scales=PROMPT_SCALE):
    """One measured run through the real RunSample bookkeeping (sample_from_trace): k = 0 is the
    baseline. Every step's time is its true cost times lognormal noise."""
    jitter = lambda: math.exp(rng.gauss(0, noise))  # noqa: E731
    probs = conditional(prompt_index, scales)
    sizes, ends, rounds = [], [], []
    clock = PREFILL_S + (DRAFT_PREFILL_S if k else 0.0)
    draft_s = target_s = 0.0
    emitted = 0
    while emitted < tokens:
        limit = min(k, tokens - emitted - 1)
        accepted = 0
        while accepted < limit and rng.random() < probs[accepted]:
            accepted += 1
        drafting, verifying = limit * DRAFT_TOKEN_S * jitter(), verify_s(limit + 1) * jitter()
        draft_s, target_s = draft_s + drafting, target_s + verifying
        clock += drafting + verifying
        sizes.append(accepted + 1)
        emitted += accepted + 1
        ends.append(clock)
        if k:
            rounds.append(VerifyRound(limit, accepted, complete=limit == k))
    trace = Trace(list(range(tokens)), sizes, ends, rounds, 1.0, "length",
                  draft_s if k else None, target_s if k else None)
    return sample_from_trace(trace, "draft" if k else "baseline", k, 20, prompt_index, "custom", pass_index)


def simulate(rng, ks, prompts: int, passes: int, tokens: int, verify_s, noise: float = 0.03, scales=PROMPT_SCALE,
             baseline: bool = True):
    """Runs interleaved as a sweep measures them: per pass and prompt, the baseline then every k."""
    runs = {k: [] for k in ((0,) if baseline else ()) + tuple(ks)}
    for pass_index in range(passes):
        for prompt_index in range(prompts):
            for k in runs:
                runs[k].append(simulate_run(rng, k, prompt_index, pass_index, tokens, verify_s, noise, scales))
    return runs


def geomean_ratio(baseline, speculative, metric: str) -> float:
    reference = {(s.prompt_index, s.pass_index): getattr(s, metric) for s in baseline}
    logs = [math.log(getattr(s, metric) / reference[(s.prompt_index, s.pass_index)]) for s in speculative]
    return math.exp(sum(logs) / len(logs))


def timed_costs(rng, verify_s, k_max: int, repeats: int = 5, noise: float = 0.03) -> VerifyCosts:
    """What Engine.time_forward would give: repeats of every width, with noise."""
    jitter = lambda: math.exp(rng.gauss(0, noise))  # noqa: E731
    return VerifyCosts({n: [verify_s(n) * jitter() for _ in range(repeats)] for n in range(1, k_max + 2)},
                       [DRAFT_TOKEN_S * jitter() for _ in range(repeats)])


@pytest.mark.parametrize("verify_s", [apple_verify_s, cpu_verify_s], ids=["apple", "cpu"])
def test_prediction_from_k_max_matches_simulated_speedups_at_every_k(verify_s):
    k_max, tokens = len(CONDITIONAL), 128
    rng = random.Random(11)
    truth_runs = simulate(rng, range(1, k_max + 1), prompts=3, passes=40, tokens=tokens, verify_s=verify_s)
    measured = simulate(rng, [k_max], prompts=3, passes=16, tokens=tokens, verify_s=verify_s)
    costs = timed_costs(rng, verify_s, k_max, noise=0.01)
    model = fit_model(measured[k_max], costs, measured[0], bootstrap_repeats=300)
    predictions = model.predict_all()
    assert [p.k for p in predictions] == list(range(1, k_max + 1))
    for prediction in predictions:
        decode = geomean_ratio(truth_runs[0], truth_runs[prediction.k], "decode_tps")
        e2e = geomean_ratio(truth_runs[0], truth_runs[prediction.k], "e2e_tps")
        assert prediction.decode_speedup == pytest.approx(decode, rel=0.05), prediction.k
        assert prediction.e2e_speedup == pytest.approx(e2e, rel=0.05), prediction.k
        assert prediction.low < decode < prediction.high
        assert prediction.e2e_low < e2e < prediction.e2e_high
    best = max(predictions, key=lambda p: p.decode_speedup).k
    true_best = max(range(1, k_max + 1), key=lambda k: geomean_ratio(truth_runs[0], truth_runs[k], "decode_tps"))
    # near-linear T(n): the best k is inside the range; steep T(n) (a CPU): the shortest draft, still slower
    assert best == true_best == (4 if verify_s is apple_verify_s else 1)
    assert (predictions[0].decode_speedup < 1) == (verify_s is cpu_verify_s)


def test_costs_from_samples_recover_the_simulated_costs():
    k_max = len(CONDITIONAL)
    rng = random.Random(13)
    runs = simulate(rng, [k_max], prompts=3, passes=2, tokens=128, verify_s=apple_verify_s)
    costs = costs_from_samples(runs[k_max], runs[0])
    assert costs.target_s(1) == pytest.approx(apple_verify_s(1), rel=0.03)
    assert costs.target_s(k_max + 1) == pytest.approx(apple_verify_s(k_max + 1), rel=0.03)
    assert costs.point().draft_token_s == pytest.approx(DRAFT_TOKEN_S, rel=0.03)
    assert costs.round_overhead_s < 0.001
    measured = geomean_ratio(runs[0], runs[k_max], "decode_tps")
    assert fit_model(runs[k_max], costs).predict(k_max).decode_speedup == pytest.approx(measured, rel=0.03)
    with pytest.raises(InvalidInputError, match="separately"):
        costs_from_samples([dataclasses.replace(s, draft_s=None) for s in runs[k_max]], runs[0])


def test_interval_coverage_by_simulation():
    """Coverage of the nominal 95% interval over seeded simulations of 12 units (3 prompts x 4 passes, alike:
    units are the independent draws the interval assumes) and 5 timing repeats with 3% noise, against the
    model's exact value under the true acceptance and costs."""
    k_max, tokens, simulations = len(CONDITIONAL), 96, 120
    truths = {}
    for k in (1, 3, k_max):
        reached, expected = 1.0, 1.0
        for p in CONDITIONAL[:k]:
            reached *= p
            expected += reached
        truths[k] = expected * apple_verify_s(1) / (k * DRAFT_TOKEN_S + apple_verify_s(k + 1))
    covered = {k: 0 for k in truths}
    widths = []
    for seed in range(simulations):
        rng = random.Random(1000 + seed)
        runs = simulate(rng, [k_max], prompts=3, passes=4, tokens=tokens, verify_s=apple_verify_s, scales=[1.0],
                        baseline=False)
        model = fit_model(runs[k_max], timed_costs(rng, apple_verify_s, k_max, noise=0.03), bootstrap_repeats=100,
                          seed=seed)
        for k, truth in truths.items():
            prediction = model.predict(k)
            covered[k] += prediction.low <= truth <= prediction.high
            widths.append(prediction.high / prediction.low)
    for k, hits in covered.items():
        assert hits / simulations >= 0.90, (k, hits)
    assert sum(widths) / len(widths) < 1.25  # honest, not useless


def test_verify_times_that_dip_are_pooled_into_a_non_decreasing_curve():
    assert non_decreasing({1: 0.4, 2: 0.45, 3: 0.9, 4: 0.7, 5: 0.8, 6: 1.0}) == pytest.approx(
        {1: 0.4, 2: 0.45, 3: 0.8, 4: 0.8, 5: 0.8, 6: 1.0})
    rising = {1: 1.0, 2: 1.0, 3: 1.5, 4: 2.0}
    assert non_decreasing(rising) == rising
    # a noisy width no longer bends the prediction: T(4) > T(5) would make k=3 look worse than k=4
    costs = VerifyCosts({1: [0.4], 2: [0.45], 3: [0.5], 4: [0.9], 5: [0.6]}, [0.05])
    assert costs.target_s(4) == pytest.approx(0.75) and costs.target_s(5) == pytest.approx(0.75)
