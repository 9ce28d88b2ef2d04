import pytest

from mlxdraft.measure import (
    MeasureSettings,
    RunSample,
    Variant,
    VerifyRound,
    add_round_counts,
    eos_ignored,
    iter_interleaved_runs,
    measure_generation,
    reconstruct_rounds,
)
from mlxdraft.prompts import Prompt, encode_prompt

SETTINGS = MeasureSettings(max_tokens=24, runs=1, warmup=0)


def test_rounds_from_flags():
    # k=3: round 1 accepts 2, round 2 accepts 0, round 3 accepts 3 (all)
    flags = [True, True, False, False, True, True, True, False]
    assert reconstruct_rounds(flags, 3, 100) == [
        VerifyRound(3, 2), VerifyRound(3, 0), VerifyRound(3, 3)
    ]


def test_round_cut_by_max_tokens_is_partial():
    # k=4, max 7: round 1 emits 5 (4 accepted + 1), then only 2 tokens may follow: 2 proposed
    flags = [True] * 4 + [False] + [True, True]
    assert reconstruct_rounds(flags, 4, 7) == [VerifyRound(4, 4), VerifyRound(2, 2, complete=False)]
    # a shorter proposal that still ends with the target's token is partial too: it could not reject k
    assert reconstruct_rounds([True, True, True, False, True, False], 3, 6) == [
        VerifyRound(3, 3), VerifyRound(2, 1, complete=False)]


def test_round_cut_by_eos_is_partial():
    flags = [True, False, True]
    assert reconstruct_rounds(flags, 2, 100) == [VerifyRound(2, 1), VerifyRound(2, 1, complete=False)]


def test_round_statistics_leave_partial_rounds_out():
    sample = RunSample(3, 0, "c", 0, 5, 10, 0.1, 50.0, 9, 0.1, 90.0, 0.2, 0.1, "length", list(range(10)))
    add_round_counts(sample, reconstruct_rounds([True] * 3 + [False] + [True] * 3 + [False] + [True] * 2, 3, 10), 3)
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
    samples = list(iter_interleaved_runs(target, [Variant(), Variant(draft, 2), Variant(draft, 5)],
                                         prompts, SETTINGS))
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


def test_eos_ignored_restores_the_tokenizer(loaded):
    tokenizer = loaded["target"].tokenizer
    before = set(tokenizer.eos_token_ids)
    assert before
    with eos_ignored(tokenizer, True):
        assert tokenizer.eos_token_ids == set()
    assert tokenizer.eos_token_ids == before


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
