"""Tests for mlxdraft.stats: exact values on hand-made inputs, and the statistical claims (false-positive
rate, power, coverage, outlier calibration) by seeded simulation through the same functions the CLI uses."""

import math
import random

import pytest

from mlxdraft.stats import (
    MIN_UNITS_FOR_INTERVAL,
    Candidate,
    RatioEstimate,
    Verdict,
    decide,
    estimate_ratio,
    find_paired_outliers,
    first_divergence,
    per_prompt,
    summarize,
    t_quantile,
    within_prompt_sd,
)

# --- summaries, divergence ------------------------------------------------------------------------------


def test_summary():
    summary = summarize([1.0, 2.0, 3.0, None])
    assert (summary.mean, summary.min, summary.max, summary.n) == (2.0, 1.0, 3.0, 3)
    assert summary.stdev == pytest.approx(1.0)
    assert summarize([]) is None
    assert summarize([5.0]).stdev == 0.0


def test_first_divergence():
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert first_divergence([1, 2], [1, 2, 3]) == 2


# --- Student's t ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 5, 2.571), (0.975, 11, 2.201), (0.995, 30, 2.750),
     (0.975, 10_000, 1.960), (0.95, 10, 1.812), (0.999, 20, 3.552)],
)
def test_t_quantile_table_values(p, df, expected):
    assert round(t_quantile(p, df), 3) == expected
    assert round(t_quantile(1 - p, df), 3) == -expected


@pytest.mark.parametrize("p", [1 - 0.025 / 18, 1 - 0.025 / 17, 1 - 1e-6, 0.6])
def test_t_quantile_extreme_p_matches_closed_forms(p):
    # df = 1 is the Cauchy distribution; df = 2 has t = (2p - 1) / sqrt(2p(1 - p))
    assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)


def test_t_quantile_bonferroni_value_and_limits():
    assert round(t_quantile(1 - 0.025 / 18, 11), 3) == 3.833  # 95% simultaneous for 18 setups, 12 units
    assert t_quantile(0.5, 7) == 0.0
    for bad in [(0.0, 3), (1.0, 3), (0.5, 0)]:
        with pytest.raises(ValueError):
            t_quantile(*bad)


# --- estimate_ratio -------------------------------------------------------------------------------------


def test_estimate_ratio_identical_ratios_have_a_point_interval():
    baseline, speculative = [10, 20, 30, 40, 50], [12, 24, 36, 48, 60]
    estimate = estimate_ratio([s / b for s, b in zip(speculative, baseline)])
    assert estimate.geomean == pytest.approx(1.2)
    assert estimate.low == estimate.high == pytest.approx(1.2)
    assert (estimate.n, estimate.confidence, estimate.candidates, estimate.log_sd) == (5, 0.95, 1, 0.0)
    assert RatioEstimate.from_dict(estimate.to_dict()) == estimate


def test_estimate_ratio_interval_by_hand():
    ratios = [1.1, 1.3, 1.2, 1.25]
    logs = [math.log(r) for r in ratios]
    mean = sum(logs) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 3)
    half = 3.182446305284263 * sd / 2  # t_{0.975, 3}
    estimate = estimate_ratio(ratios)
    assert estimate.geomean == pytest.approx(math.exp(mean))
    assert estimate.low == pytest.approx(math.exp(mean - half), rel=1e-9)
    assert estimate.high == pytest.approx(math.exp(mean + half), rel=1e-9)
    wide = estimate_ratio(ratios, candidates=18)
    assert wide.low < estimate.low and wide.high > estimate.high and wide.candidates == 18


def test_estimate_ratio_ignores_unusable_values_and_needs_three_for_an_interval():
    assert estimate_ratio([]) is None
    assert estimate_ratio([0.0, -1.0, math.nan, math.inf, None]) is None
    two = estimate_ratio([1.1, 1.3, math.nan, 0.0])
    assert two.n == 2 and two.low is None and two.high is None and two.log_sd is not None
    one = estimate_ratio([1.5])
    assert one.geomean == pytest.approx(1.5) and one.log_sd is None and one.low is None
    assert MIN_UNITS_FOR_INTERVAL == 3 and estimate_ratio([1.1, 1.2, 1.3]).low is not None


# --- decide: hand-made inputs with known answers --------------------------------------------------------


def units(values):
    return {(prompt, 0): value for prompt, value in enumerate(values)}


def test_decide_single_clear_winner():
    verdict = decide([Candidate("only", units([1.2] * 5))])
    assert verdict.verdict == "speculative" and verdict.chosen == verdict.leader == "only"
    assert verdict.estimate.low == pytest.approx(1.2) and verdict.candidates == 1
    assert verdict.more_units_needed is None and verdict.tied == []
    assert "only is 1.20x faster (95% interval 1.20-1.20x)" == verdict.reason
    assert verdict.to_dict()["estimate"]["geomean"] == pytest.approx(1.2)


def test_decide_a_tie_that_is_not_shown_equivalent_keeps_the_fastest():
    # not shown different (tied), yet not shown within 3% either: the fastest is recommended, and says so
    noise = [0.02, -0.03, 0.01, 0.04, -0.02, 0.0, -0.01, -0.01]  # sums to 0
    fast_big = Candidate(("big", 4), units([1.52 * math.exp(e) for e in noise]), cost=(4.0, 4))
    fast_small = Candidate(("small", 4), units([1.50 * math.exp(-e) for e in noise]), cost=(0.5, 4))
    slow = Candidate(("small", 8), units([1.05 * math.exp(e) for e in noise]), cost=(0.5, 8))
    verdict = decide([fast_big, fast_small, slow], describe=lambda key: f"{key[0]} k={key[1]}")
    assert verdict.verdict == "speculative"
    assert verdict.leader == ("big", 4) and verdict.tied == [("small", 4)]
    assert verdict.chosen == ("big", 4) and verdict.rule == "fastest" and verdict.equivalent == []
    assert verdict.estimate.geomean == pytest.approx(1.52, rel=1e-3) and verdict.estimate.candidates == 3
    assert verdict.reason.startswith("big k=4 is 1.52x faster (95% interval")
    assert verdict.reason.endswith("widened for 3 setups), the fastest setup (no cheaper setup is shown within 3% "
                                   "of it)")
    assert "cheapest" not in verdict.reason


def test_decide_prefers_a_cheaper_setup_shown_within_the_margin_of_the_fastest():
    noise = [0.002, -0.003, 0.001, 0.004, -0.002, 0.0, -0.001, -0.001]  # sums to 0
    fast_big = Candidate(("big", 4), units([1.52 * math.exp(e) for e in noise]), cost=(4.0, 4))
    fast_small = Candidate(("small", 4), units([1.50 * math.exp(-e) for e in noise]), cost=(0.5, 4))
    slow = Candidate(("small", 8), units([1.05 * math.exp(e) for e in noise]), cost=(0.5, 8))
    verdict = decide([fast_big, fast_small, slow], describe=lambda key: f"{key[0]} k={key[1]}")
    assert verdict.verdict == "speculative" and verdict.leader == ("big", 4)
    assert verdict.chosen == ("small", 4) and verdict.rule == "equivalent" and verdict.equivalent == [("small", 4)]
    assert verdict.estimate.geomean == pytest.approx(1.5, rel=1e-3) and verdict.estimate.candidates == 3
    # the bound by hand: paired log differences small - big, one-sided 95% widened for the 2 cheaper setups
    # that show a gain (small k=4 and small k=8)
    differences = [math.log(1.50 / 1.52) - 2 * e for e in noise]
    mean = sum(differences) / 8
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / 7)
    bound = math.exp(mean - t_quantile(1 - 0.05 / 2, 7) * sd / math.sqrt(8))
    assert 1 / 1.03 < bound < 1
    assert verdict.reason.startswith("small k=4 is 1.50x faster (95% interval")
    assert verdict.reason.endswith(f"widened for 3 setups), the cheapest setup within 3% of the fastest, big k=4 at "
                                   f"1.52x (equivalence test: at least {bound:.3f}x of its speed, one-sided 95%)")
    # a margin of 1% is not shown: the fastest stays
    strict = decide([fast_big, fast_small, slow], margin=0.01)
    assert strict.chosen == ("big", 4) and strict.rule == "fastest"


def test_decide_a_setup_tied_with_an_uncertain_leader_can_show_the_gain():
    # the leader was measured on 4 of the 8 prompts (a smart sweep's late setup): its widened interval spans
    # 1.0; a setup measured on all 8, tied with it, is surely faster than the baseline, and that decides it
    noise = [0.02, -0.03, 0.01, 0.04, -0.02, 0.0, -0.01, -0.01]
    steady = Candidate(("q8", 6), units([1.30 * math.exp(e) for e in noise]), cost=(0.5, 6))
    late = Candidate(("q8", 3), {(p, 0): 1.45 * math.exp(e) for p, e in zip(range(4, 8), [0.3, -0.3, 0.25, -0.2])},
                     cost=(0.5, 3))
    verdict = decide([steady, late], describe=lambda key: f"{key[0]} k={key[1]}")
    assert verdict.leader == ("q8", 3) and verdict.tied == [("q8", 6)]
    leader = estimate_ratio([1.45 * math.exp(e) for e in [0.3, -0.3, 0.25, -0.2]], candidates=2)
    assert leader.low < 1.0  # on its own the leader leaves the verdict open
    assert verdict.verdict == "speculative" and verdict.chosen == ("q8", 6)
    assert verdict.estimate.low > 1.0 and verdict.estimate.n == 8
    assert verdict.reason.startswith("q8 k=6 is 1.30x faster (95% interval")
    assert "the fastest, q8 k=3 at 1.47x (95% interval 0.77-2.78x" in verdict.reason
    assert "is tied with it but less certain (n=4)" in verdict.reason
    # a tied setup that is not surely faster either leaves it open
    unsure = Candidate(("q8", 6), units([1.10 * math.exp(8 * e) for e in noise]), cost=(0.5, 6))
    assert decide([unsure, late]).verdict == "inconclusive"


def test_decide_every_setup_slower_is_no_gain():
    noise = [0.02, -0.03, 0.01, 0.04, -0.02, 0.0]
    verdict = decide([Candidate(k, units([r * math.exp(e) for e in noise])) for k, r in [(2, 0.8), (4, 0.7)]])
    assert verdict.verdict == "no-gain" and verdict.chosen is None and verdict.leader == 2
    assert verdict.estimate.high < 1 and verdict.more_units_needed is None
    assert verdict.reason.startswith("no setup beats the baseline: each is surely slower on its own interval; "
                                     "the best, 2, is 0.80x")


def test_decide_no_gain_needs_each_setup_slower_on_its_own_interval_not_a_widened_one():
    # three units each: every own 95% interval is below 1, the intervals widened for 6 setups are not
    noise = [0.12, -0.1, 0.0]
    candidates = [Candidate(k, units([0.7 * math.exp(e + 0.005 * k) for e in noise])) for k in range(1, 7)]
    verdict = decide(candidates)
    assert verdict.estimate.high > 1  # the leader's widened interval
    assert verdict.verdict == "no-gain"
    # one setup whose own interval reaches 1 keeps it open
    verdict = decide(candidates + [Candidate(7, units([0.95 * math.exp(3 * e) for e in noise]))])
    assert verdict.verdict == "inconclusive"


def test_decide_two_units_is_inconclusive_without_interval():
    verdict = decide([Candidate("a", units([1.5, 1.6])), Candidate("b", units([1.1, 1.2]))])
    assert verdict.verdict == "inconclusive" and verdict.chosen is None and verdict.leader == "a"
    assert verdict.estimate.low is None and verdict.estimate.high is None and verdict.estimate.n == 2
    assert verdict.reason == "n=2 prompts: too few for an interval; add prompts (a suite of 12 or more)"
    assert verdict.more_units_needed == 1
    # these exact prompts: the run is the unit, and passes are what to add
    suite = decide([Candidate("a", units([1.5, 1.6]))], estimand="suite")
    assert suite.reason == "n=2 runs: too few for an interval; run more passes (-r)"


def test_decide_inconclusive_says_how_many_more_units():
    # log mean 0.05, log sd ~0.1, n = 6: the 95% half-width is ~0.1; about 4x the units would decide it
    noise = [0.1, -0.1, 0.12, -0.12, 0.08, -0.08]
    verdict = decide([Candidate("k4", units([math.exp(0.05 + e) for e in noise]))])
    assert verdict.verdict == "inconclusive" and verdict.estimate.low < 1 < verdict.estimate.high
    assert 10 <= verdict.more_units_needed <= 30
    total = 6 + verdict.more_units_needed  # the stated total decides it, one fewer does not
    sd = verdict.estimate.log_sd
    assert t_quantile(0.975, total - 1) * sd / math.sqrt(total) < 0.05
    assert t_quantile(0.975, total - 2) * sd / math.sqrt(total - 1) >= 0.05
    assert (f"about {verdict.more_units_needed} more prompts like these (spread over the suite's categories) would "
            "likely decide it; more passes would not") in verdict.reason


def test_decide_tiny_difference_is_not_worth_more_runs():
    noise = [0.1, -0.1, 0.12, -0.12, 0.08, -0.08, 0.05, -0.05, 0.1, -0.1, 0.07, -0.07]
    verdict = decide([Candidate(k, units([1.004 * math.exp(e) for e in noise])) for k in range(3)])
    assert verdict.verdict == "inconclusive" and verdict.more_units_needed is None
    assert verdict.candidates == 3 and verdict.leader == 0 and set(verdict.tied) == {1, 2}
    assert verdict.reason.startswith("the best setup, 0, is 0.4% faster than the baseline (95% interval")
    assert verdict.reason.endswith("more prompts are unlikely to make it matter")


def test_decide_ignores_empty_candidates_and_returns_none_without_any():
    assert decide([]) is None
    assert decide([Candidate("x", {}), Candidate("y", units([0.0, math.nan]))]) is None
    verdict = decide([Candidate("x", {}), Candidate("y", units([1.2] * 4))])
    assert verdict.candidates == 1 and verdict.chosen == "y"
    assert isinstance(verdict, Verdict)


# --- decide and estimate_ratio by simulation ------------------------------------------------------------

DRAFTS = 3
KS = (1, 2, 3, 4, 6, 8)
UNITS = 12  # the default prompt suite, one pass
NOISE = 0.1  # run-to-run noise (sd of log tok/s)


def simulate_sweep(rng, true_ratios):
    """One sweep: per unit, a baseline run per draft and a speculative run per (draft, k) sharing it."""
    ratios = {key: {} for key in true_ratios}
    for prompt in range(UNITS):
        prompt_effect = math.exp(rng.gauss(0, 0.3))
        for draft in range(DRAFTS):
            baseline = 10 * math.exp(rng.gauss(0, NOISE)) * prompt_effect
            for k in KS:
                speculative = true_ratios[draft, k] * 10 * math.exp(rng.gauss(0, NOISE)) * prompt_effect
                ratios[draft, k][prompt, 0] = speculative / baseline
    return [Candidate(key, ratios[key], cost=key) for key in true_ratios]


def sweep_verdicts(seed, true_ratios, sweeps):
    rng = random.Random(seed)
    return [decide(simulate_sweep(rng, true_ratios)) for _ in range(sweeps)]


NULL = {(draft, k): 1.0 for draft in range(DRAFTS) for k in KS}
WINNER = (1, 4)


def test_null_sweep_rarely_claims_a_speedup():
    verdicts = sweep_verdicts(1, NULL, 1000)
    assert all(v.candidates == 18 for v in verdicts)
    false_positive = sum(v.verdict == "speculative" for v in verdicts) / len(verdicts)
    assert false_positive <= 0.05


def test_one_real_winner_is_found_and_its_interval_covers_the_truth():
    verdicts = sweep_verdicts(2, {**NULL, WINNER: 1.3}, 1000)
    speculative = [v for v in verdicts if v.verdict == "speculative"]
    correct = [v for v in speculative if v.chosen == WINNER
               or (v.leader == WINNER and v.chosen in v.tied) or (v.chosen == v.leader and WINNER in v.tied)]
    assert len(speculative) / len(verdicts) >= 0.80
    assert len(correct) / len(verdicts) >= 0.80
    assert sum(v.chosen == WINNER for v in speculative) / len(verdicts) >= 0.80  # and mostly exactly it
    covered = sum(v.estimate.low <= 1.3 <= v.estimate.high for v in speculative)
    assert covered / len(speculative) >= 0.93


@pytest.mark.parametrize("n", [12, 3])
def test_interval_coverage(n):
    rng = random.Random(n)
    true_ratio, runs, covered = 1.15, 2000, 0
    for _ in range(runs):
        ratios = [true_ratio * math.exp(rng.gauss(0, NOISE) - rng.gauss(0, NOISE)) for _ in range(n)]
        estimate = estimate_ratio(ratios)
        covered += estimate.low <= true_ratio <= estimate.high
    assert covered / runs >= 0.93


# --- outliers -------------------------------------------------------------------------------------------


# --- the prompt as the unit, and outliers on paired ratios ---------------------------------------------------


def test_per_prompt_takes_the_median_of_each_prompts_passes():
    runs = {(0, 0): 1.2, (0, 1): 1.2 * 1.21, (0, 2): 1.2 / 1.21, (1, 0): 2.0, (1, 1): 0.5, (2, 0): math.nan}
    assert per_prompt(runs) == pytest.approx({0: 1.2, 1: 1.0})  # two passes: their geometric mean; prompt 2 none
    stalled = {(0, 0): 1.3, (0, 1): 1.3 / 2.5, (0, 2): 1.31}  # the second run stalled at 2.5x its time
    assert per_prompt(stalled) == pytest.approx({0: 1.3})  # one stall among three passes does not move it
    assert per_prompt({3: 1.5}) == {3: 1.5}  # already per prompt


def test_within_prompt_sd_pools_the_passes_of_each_prompt():
    runs = {(0, 0): math.exp(0.1), (0, 1): math.exp(-0.1), (1, 0): math.exp(1.0), (1, 1): math.exp(1.2),
            (1, 2): math.exp(0.8), (2, 0): 3.0}
    # squares: 0.02 (df 1) + 0.08 (df 2), prompt 2 has one pass
    assert within_prompt_sd(runs) == pytest.approx(math.sqrt(0.1 / 3))
    assert within_prompt_sd({(p, 0): 1.0 + p for p in range(5)}) is None


def test_passes_of_one_prompt_do_not_narrow_the_interval_about_prompts_like_it():
    # three prompts that gain differently, each measured in 10 identical passes: about prompts like these there
    # are 3 units, and the interval is as wide as with one pass; about these exact prompts there are 30
    one = {(p, 0): r for p, r in enumerate([1.1, 1.4, 1.25])}
    ten = {(p, i): r for (p, _), r in one.items() for i in range(10)}
    workload = estimate_ratio(list(per_prompt(ten).values()))
    assert workload.n == 3 and (workload.low, workload.high) == pytest.approx(
        (estimate_ratio(list(one.values())).low, estimate_ratio(list(one.values())).high))
    suite = estimate_ratio(list(ten.values()))
    assert suite.n == 30 and suite.high - suite.low < (workload.high - workload.low) / 3
    assert decide([Candidate("a", ten)], estimand="suite").estimate.n == 30
    assert decide([Candidate("a", per_prompt(ten))]).prompts == 3


def test_paired_outliers_flag_a_stalled_run_not_a_prompt_that_gains_differently():
    rng = random.Random(5)
    runs = {(p, i): (0.6 + 0.1 * p) * math.exp(rng.gauss(0, 0.03)) for p in range(12) for i in range(3)}
    assert find_paired_outliers(runs) == []  # prompts from 0.6x to 1.7x: all clean
    runs[4, 1] /= 2.5  # the speculative run of one unit stalled
    assert find_paired_outliers(runs) == [(4, 1)]
    assert find_paired_outliers({(p, 0): r for (p, i), r in runs.items() if i == 0}) == []  # one pass: no rule


@pytest.mark.parametrize("passes", [2, 3])
def test_paired_outliers_rarely_flag_clean_sweeps_and_catch_stalls(passes):
    rng = random.Random(40 + passes)
    samples, flagged, caught = 1000, 0, 0
    for _ in range(samples):
        gains = [rng.gauss(0, 0.3) for _ in range(12)]  # prompts gain differently
        runs = {(p, i): math.exp(gains[p] + rng.gauss(0, 0.05) - rng.gauss(0, 0.05))
                for p in range(12) for i in range(passes)}
        flagged += bool(find_paired_outliers(runs))
        runs[0, 0] *= 2.5
        caught += (0, 0) in find_paired_outliers(runs)
    assert flagged / samples <= 0.05
    assert caught / samples >= (0.95 if passes == 3 else 0.80)


def test_decide_widens_for_every_setup_compared_not_only_those_that_compete():
    # a smart sweep compared 18 setups and kept 2: the verdict's intervals hold for all 18, as an exhaustive one's
    rng = random.Random(4)
    candidates = [Candidate(key, {p: 1.15 * math.exp(rng.gauss(0, 0.1)) for p in range(12)}) for key in "ab"]
    kept = decide(candidates)
    compared = decide(candidates, compared=18)
    assert kept.candidates == 2 and compared.candidates == 18
    assert compared.estimate.low < kept.estimate.low and compared.estimate.high > kept.estimate.high
    wide = estimate_ratio(list({c.key: c for c in candidates}[compared.leader].ratios.values()), candidates=18)
    assert (compared.estimate.low, compared.estimate.high) == (wide.low, wide.high)
    assert decide(candidates, compared=1).candidates == 2  # never fewer than those competing
