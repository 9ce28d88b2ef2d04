"""The smart sweep's race (module `race`) on hand-made speeds: which setups it drops, after which unit and
why, with no model and no timing noise beyond what each test puts in."""

from __future__ import annotations

import math
import random
import re

from synthetic import sample

from mlxdraft.race import Pruned, Race, earlier_rivals, leader_floor
from mlxdraft.results import GroupRecord

SETUPS = [("mlx-lm", 1), ("mlx-lm", 2), ("mlx-lm", 3)]
UNITS = [(prompt, 0) for prompt in range(8)]


def run_race(speedup: dict, *, baseline_noise: float, setup_noise: float, seed: int = 0, rivals=None):
    """Measure a race unit by unit the way the sweep does, with `speedup[k]` the true decode speedup: each
    unit's baseline run varies by `baseline_noise`, its setups by one factor of that size that they share
    (the moment's effect on runs measured back to back) and by their own `setup_noise`."""
    rng = random.Random(seed)
    race = Race(SETUPS, UNITS, "decode", predict=lambda samples, logs: {}, rivals=rivals or {})
    samples: list = []
    state = race.replay(samples)
    while not state.finished(len(UNITS)):
        prompt, pass_index = UNITS[state.units_done]
        base = 10.0 * (1 + 0.2 * (prompt % 3))
        moment = rng.lognormvariate(0, baseline_noise)
        samples.append(sample(0, prompt, pass_index, base * rng.lognormvariate(0, baseline_noise)))
        for _, k in state.alive:
            samples.append(sample(k, prompt, pass_index, base * speedup[k] * moment
                                  * rng.lognormvariate(0, setup_noise)))
        state = race.replay(samples)
    return state


def test_a_setup_surely_within_three_percent_of_the_race_best_leaves_the_race():
    # the baseline is noisy, so intervals against it overlap; the setups, measured back to back, are not
    state = run_race({1: 1.30, 2: 1.46, 3: 1.50}, baseline_noise=0.15, setup_noise=0.005)
    assert state.alive == [("mlx-lm", 3)]
    tied = {p.num_draft_tokens: p for p in state.pruned}
    assert set(tied) == {1, 2} and {p.after_units for p in tied.values()} == {7}  # its 3rd unit next to k=3
    assert tied[2].reason.startswith("measured ")
    assert "over the 3 prompt(s) it shares with mlx-lm k=3 (1." in tied[2].reason
    assert tied[2].reason.endswith("x of it prompt by prompt: surely not more than 3% faster than it")
    own, theirs, versus = (float(x) for x in re.findall(r"(\d+\.\d+)x", tied[2].reason))
    assert abs(own / theirs - versus) < 0.01  # the three figures are over the same prompts: they agree
    assert state.keep == 4 * 2 + 3 * 4 + 2  # probe: baseline and k=3; then all three; the last unit: k=3 alone


def test_setups_that_may_be_more_than_three_percent_faster_stay():
    state = run_race({1: 1.30, 2: 1.50, 3: 1.46}, baseline_noise=0.15, setup_noise=0.005)
    assert ("mlx-lm", 2) in state.alive and ("mlx-lm", 1) not in state.alive
    assert [p.num_draft_tokens for p in state.pruned] == [1, 3]  # k=3 tied with k=2, the race's best


def test_without_a_gain_no_setup_leaves_for_being_tied():
    # every setup slower than the baseline: "no gain" needs each one measured surely slower, not just tied
    state = run_race({1: 0.90, 2: 0.88, 3: 0.86}, baseline_noise=0.15, setup_noise=0.005)
    assert not any("surely not more than" in p.reason for p in state.pruned)


def test_a_setup_surely_within_three_percent_of_an_earlier_drafts_setup_leaves_the_race():
    rival = {prompt: 1.5 for prompt in range(8)}  # an earlier draft's setup kept by its race, at 1.5x everywhere
    state = run_race({1: 1.20, 2: 1.25, 3: 1.30}, baseline_noise=0.05, setup_noise=0.005,
                     rivals={"small mlx-lm k=2": rival})
    assert state.alive == [] and state.units_done == 6  # k=1 and k=2, admitted after the probe, go after 3 units
    first = state.pruned[0]
    assert (first.num_draft_tokens, first.after_units) == (3, 3)  # the probe's setup, after the probe's 3rd unit
    assert "it shares with small mlx-lm k=2 (an earlier draft) (1.50x there), " in first.reason
    assert {p.num_draft_tokens for p in state.pruned} == {1, 2, 3}


def test_an_earlier_drafts_setup_without_a_gain_drops_nothing():
    rival = {prompt: 0.95 for prompt in range(8)}
    state = run_race({1: 0.80, 2: 0.85, 3: 0.90}, baseline_noise=0.05, setup_noise=0.005,
                     rivals={"small mlx-lm k=2": rival})
    assert not any("(an earlier draft)" in p.reason for p in state.pruned)


def test_the_rivals_of_a_later_draft_are_the_setups_earlier_races_kept():
    samples = [sample(k, prompt, 0, 10.0 * (1 + k / 10) if k else 10.0) for prompt in range(4) for k in (0, 1, 2)]
    kept_one = GroupRecord("big", "small", "done", samples=samples,
                           pruned=[Pruned("mlx-lm", 2, 3, "slower").to_dict()])
    alone = GroupRecord("big", None, "done", samples=[
        sample(k, prompt, 0, 10.0 * (1.3 if k else 1.0)) for prompt in range(4) for k in (0, 3)])
    for run in alone.samples:
        run.method = "prompt-lookup" if run.num_draft_tokens else "baseline"
    rivals = earlier_rivals([kept_one, alone], "decode")
    assert set(rivals) == {"small mlx-lm k=1", "prompt-lookup k=3"}  # the pruned k=2 is no rival
    assert rivals["small mlx-lm k=1"] == {prompt: 1.1 for prompt in range(4)}  # per prompt
    assert rivals["prompt-lookup k=3"] == {prompt: 1.3 for prompt in range(4)}


def test_the_race_counts_prompts_not_passes():
    # two prompts in three passes: about prompts like these there is no interval yet, so no floor for later groups
    runs = [sample(k, prompt, pass_index, 10.0 * (1.3 if k else 1.0) * (1 + 0.01 * pass_index + 0.02 * prompt))
            for pass_index in range(3) for prompt in range(2) for k in (0, 2)]
    assert leader_floor([runs], "decode") == (None, None)
    third = [sample(k, 2, pass_index, 10.0 * (1.25 if k else 1.0)) for pass_index in range(3) for k in (0, 2)]
    low, name = leader_floor([runs + third], "decode")
    assert name == "mlx-lm k=2" and 1.0 < low < 1.3


def test_reasons_print_ratios_that_never_read_as_1_00_beside_below():
    state = run_race({1: 0.997, 2: 0.997, 3: 0.997}, baseline_noise=0.0005, setup_noise=0.0005)
    reasons = [p.reason for p in state.pruned]
    assert reasons and all("1.00x" not in reason and "1.00]" not in reason for reason in reasons), reasons
    assert all(re.search(r"^measured 0\.99\d+x \[0\.99\d+, 0\.99\d+\] .* below the baseline's 1\.000+x", reason)
               for reason in reasons), reasons


def wrong_model(samples, unit_logs):
    """A speedup model that misses a cost per drafted token: it predicts k=2 best at 1.05x and k=1 at 0.70x, while
    (in `run_check_race`) k=2 is truly 0.75x and k=1 0.97x."""
    from mlxdraft.prediction import PredictedLogs, Prediction

    predicted = {1: 0.70, 2: 1.05, 3: 1.0}
    prompts = {s.prompt_index for s in samples}
    unit_logs.update({("mlx-lm", k): PredictedLogs({p: math.log(v) for p in prompts}, [math.log(v)] * 10, None)
                      for k, v in predicted.items()})
    return {("mlx-lm", k): Prediction(k, v, v * 0.93, v * 1.07, v, v * 0.93, v * 1.07, 2.0, 0.1, len(prompts))
            for k, v in predicted.items()}


def test_the_predicted_best_is_measured_and_the_models_error_widens_what_is_pruned_on_prediction():
    rng = random.Random(5)
    truth = {1: 0.97, 2: 0.75, 3: 1.0}
    race = Race(SETUPS, UNITS, "decode", predict=wrong_model)
    samples: list = []
    state = race.replay(samples)
    alive_after = {}
    while not state.finished(len(UNITS)):
        prompt, pass_index = UNITS[state.units_done]
        alive_after[state.units_done] = list(state.alive)
        samples.append(sample(0, prompt, pass_index, 10.0 * rng.lognormvariate(0, 0.01)))
        for _, k in state.alive:
            samples.append(sample(k, prompt, pass_index, 10.0 * truth[k] * rng.lognormvariate(0, 0.01)))
        state = race.replay(samples)
    # after the probe (k=3), the predicted best k=2 is measured, and nothing is pruned on prediction before it is
    assert alive_after[4] == [("mlx-lm", 2), ("mlx-lm", 3)]
    pruned = {p.num_draft_tokens: p for p in state.pruned}
    assert pruned[2].reason.startswith("measured ")  # the model's best, measured surely slower
    # k=1, predicted 0.70x [0.65, 0.75], is truly 0.97x: the model's error measured at k=2 keeps it in the race
    assert 1 not in pruned or pruned[1].reason.startswith("measured "), pruned[1].reason
    assert ("mlx-lm", 1) in {s for units in alive_after.values() for s in units}
