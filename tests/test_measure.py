import pytest

from mlxdraft.engines import get_engine
from mlxdraft.engines.mlx_loops import Round
from mlxdraft.measure import (
    MeasureSettings,
    RunSample,
    Variant,
    VerifyRound,
    add_round_counts,
    iter_interleaved_runs,
    sample_from_trace,
)
from mlxdraft.methods import Method, get_method
from mlxdraft.prompts import Prompt, encode_prompt

SETTINGS = MeasureSettings(max_tokens=24, runs=1, warmup=0)
ENGINE = get_engine("mlx-lm")


def measure_generation(target, ids, settings, draft=None, num_draft_tokens=0, method=None):
    method = method or get_method("mlx-lm" if draft is not None else "baseline")
    trace = ENGINE.generate(target, ids, settings, method, draft, num_draft_tokens)
    return sample_from_trace(trace, method.key, num_draft_tokens, len(ids))


def scripted(rounds):
    """A method that yields the given rounds whatever the models say (for the engine's bookkeeping)."""
    ENGINE.implement("scripted", lambda inputs: iter(rounds))
    return Method("scripted", "scripted", "test", needs_draft=False, uses_k=True)


def test_engine_counts_complete_rounds_only(loaded):
    target = loaded["target"]
    rounds = [Round([1, 2, 3, 4], 3, 3), Round([5, 6], 3, 1), Round([7, 8], 2, 2, limited=True)]
    trace = ENGINE.generate(target, [1, 2], MeasureSettings(max_tokens=8, warmup=0), scripted(rounds),
                            num_draft_tokens=3)
    assert trace.token_ids == [1, 2, 3, 4, 5, 6, 7, 8]
    assert trace.rounds == [VerifyRound(3, 3), VerifyRound(3, 1), VerifyRound(2, 2, complete=False)]
    assert trace.round_sizes == [4, 2, 2] and len(trace.round_end_s) == 3
    sample = sample_from_trace(trace, "scripted", 3, 2)
    assert sample.accepted_length_counts == [0, 1, 0, 1] and sample.partial_rounds == 1
    assert sample.decode_tokens == 4 and sample.draft_tokens == 6
    assert sample.rounds == [[3, 3, 1], [3, 1, 1], [2, 2, 0]]


def test_engine_stops_at_max_tokens_and_at_eos(loaded):
    target = loaded["target"]
    rounds = [Round([1, 2, 3], 2, 2), Round([4, 5, 6], 2, 2), Round([7, 8, 9], 2, 2)]
    trace = ENGINE.generate(target, [1], MeasureSettings(max_tokens=5, warmup=0), scripted(rounds),
                            num_draft_tokens=2)
    assert trace.token_ids == [1, 2, 3, 4, 5]
    assert trace.rounds[-1] == VerifyRound(2, 2, complete=False)  # cut by max-tokens: no rejection seen
    eos = next(iter(target.tokenizer.eos_token_ids))
    assert eos not in (10, 11, 12, 13)
    rounds = [Round([10, 11, 12], 2, 2), Round([13, eos, 6], 2, 2), Round([7, 8, 9], 2, 2)]
    trace = ENGINE.generate(target, [1], MeasureSettings(max_tokens=24, warmup=0, fixed_length=False),
                            scripted(rounds), num_draft_tokens=2)
    assert trace.token_ids == [10, 11, 12, 13, eos] and trace.finish_reason == "stop"
    assert trace.rounds[-1] == VerifyRound(2, 2, complete=False)


def test_round_statistics_leave_partial_rounds_out():
    sample = RunSample(3, 0, "c", 0, 5, 10, 0.1, 50.0, 9, 0.1, 90.0, 0.2, 0.1, "length", list(range(10)))
    add_round_counts(sample, [VerifyRound(3, 3), VerifyRound(3, 3), VerifyRound(2, 2, complete=False)], 3)
    assert sample.accepted_length_counts == [0, 0, 0, 2]  # the last round (2 of 2 accepted) is no rejection
    assert sample.partial_rounds == 1
    assert sample.tokens_per_round == 4.0 and sample.acceptance_rate == 1.0


def test_last_round_cut_by_max_tokens_counts_no_rejection(loaded):
    target = loaded["target"]
    ids = encode_prompt(target.tokenizer, Prompt("The capital of France is"))
    sample = measure_generation(target, ids, MeasureSettings(max_tokens=10, warmup=0), draft=target,
                                num_draft_tokens=3)
    # rounds of 4 tokens: 4 + 4, then only 2 may follow (2 proposed, 2 accepted): partial, not a rejection
    assert sample.accepted_length_counts == [0, 0, 0, 2]
    assert sample.partial_rounds == 1
    assert sample.acceptance_rate == 1.0 and sample.tokens_per_round == 4.0


def test_self_draft_accepts_every_token(loaded):
    target = loaded["target"]
    ids = encode_prompt(target.tokenizer, Prompt("The capital of France is"))
    sample = measure_generation(target, ids, SETTINGS, draft=target, num_draft_tokens=3)
    assert sample.acceptance_rate == 1.0
    assert sample.generated_tokens == 24
    # 24 tokens in rounds of 4 (3 drafts + 1): 6 rounds, 18 draft tokens
    assert sample.verify_rounds == 6
    assert sample.draft_token_share == pytest.approx(18 / 24)
    assert sample.tokens_per_round == pytest.approx(4.0)
    assert sample.accepted_length_counts == [0, 0, 0, 6]


def test_greedy_speculative_equals_baseline_in_float32(loaded):
    target, draft = loaded["target"], loaded["draft"]
    prompts = [Prompt("Write a Python function"), Prompt("List seven tips", "lists")]
    mlx_lm = get_method("mlx-lm")
    variants = [Variant(get_method("baseline")), Variant(mlx_lm, draft, 2), Variant(mlx_lm, draft, 5)]
    encoded = [encode_prompt(target.tokenizer, prompt) for prompt in prompts]
    samples = list(iter_interleaved_runs(ENGINE, target, variants, prompts, encoded, SETTINGS))
    assert len(samples) == 6
    for group in (samples[0:3], samples[3:6]):
        baseline, *speculative = group
        assert baseline.is_baseline
        for sample in speculative:
            assert sample.token_ids == baseline.token_ids
            assert sample.proposed_draft_tokens >= sample.accepted_draft_tokens
            assert sum(sample.accepted_length_counts) == sample.verify_rounds


def test_fixed_length_and_timings_are_consistent(loaded):
    target = loaded["target"]
    ids = encode_prompt(target.tokenizer, Prompt("Hello"))
    sample = measure_generation(target, ids, SETTINGS)
    assert sample.generated_tokens == 24 and sample.finish_reason == "length"
    assert sample.decode_tokens == 23
    assert 0 < sample.ttft_s <= sample.wall_s
    assert sample.decode_tps == pytest.approx(sample.decode_tokens / sample.decode_s)
    assert sample.acceptance_rate is None and sample.draft_token_share is None


def test_natural_mode_stops_at_eos(loaded):
    target = loaded["target"]
    ids = encode_prompt(target.tokenizer, Prompt("Hello"))
    first = measure_generation(target, ids, SETTINGS).token_ids
    # Make the 5th greedy token an end-of-sequence token for this run.
    saved = set(target.tokenizer.eos_token_ids)
    target.tokenizer.eos_token_ids = {first[4]}
    try:
        natural = MeasureSettings(max_tokens=24, warmup=0, fixed_length=False)
        sample = measure_generation(target, ids, natural, draft=target, num_draft_tokens=2)
    finally:
        target.tokenizer.eos_token_ids = saved
    assert sample.finish_reason == "stop"
    assert sample.token_ids == first[: first.index(first[4]) + 1]
    assert sample.tokens_per_round <= 3  # k + 1, also when EOS ends the run among drafted tokens


def test_natural_mode_eos_among_drafts_keeps_tokens_per_round_within_k_plus_one(loaded):
    target = loaded["target"]
    ids = encode_prompt(target.tokenizer, Prompt("Hello"))
    first = measure_generation(target, ids, SETTINGS).token_ids
    saved = set(target.tokenizer.eos_token_ids)
    natural = MeasureSettings(max_tokens=24, warmup=0, fixed_length=False)
    try:
        for position in range(1, 8):  # EOS at every position of the first rounds, drafted or not
            target.tokenizer.eos_token_ids = {first[position]}
            sample = measure_generation(target, ids, natural, draft=target, num_draft_tokens=2)
            if sample.verify_rounds:
                assert sample.tokens_per_round <= 3
            assert sum(sample.accepted_length_counts) == sample.verify_rounds
            assert sample.round_tokens <= sample.generated_tokens
    finally:
        target.tokenizer.eos_token_ids = saved


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("max_tokens", 0, "--max-tokens must be at least 1 (got 0)"),
        ("runs", 0, "--runs must be at least 1 (got 0)"),
        ("warmup", -1, "--warmup cannot be negative (got -1)"),
    ],
)
def test_settings_validation(field, value, message):
    from mlxdraft.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as excinfo:
        MeasureSettings(**{field: value}).validate()
    assert str(excinfo.value) == message


def test_time_forward_gives_repeats_per_width(loaded):
    seconds = ENGINE.time_forward(loaded["target"], list(range(5, 30)), [1, 3], repeats=2)
    assert sorted(seconds) == [1, 3] and all(len(v) == 2 and min(v) > 0 for v in seconds.values())
