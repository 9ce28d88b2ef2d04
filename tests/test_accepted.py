"""Which tokens came from the draft (`mlxdraft.accepted`), on hand-made rounds with known answers,
its plain-text and HTML marking, and the token texts a measurement records for the HTML report:
kept for the first pass of speculative runs, written and read back, absent in older files."""

from __future__ import annotations

import json

import pytest
from synthetic import make_state

from mlxdraft import accepted
from mlxdraft.accepted import Segment, bracketed, html_marked, sample_segments, segments, token_origins
from mlxdraft.engines import get_engine
from mlxdraft.errors import InvalidInputError
from mlxdraft.measure import MeasureSettings, RunSample, Variant, iter_interleaved_runs
from mlxdraft.methods import get_method
from mlxdraft.prompts import Prompt, encode_prompt
from mlxdraft.results import load_results

T, F = True, False


def run_sample(token_ids, rounds=None, method="draft", token_texts=None, from_draft=None) -> RunSample:
    n = len(token_ids)
    return RunSample(3, 0, "c", 0, 5, n, 0.1, 50.0, n - 1, 0.1, 90.0, 0.2, 0.1, "length", list(token_ids),
                     method=method, rounds=rounds, token_texts=token_texts, from_draft=from_draft)


def test_each_round_is_its_accepted_draft_tokens_then_the_targets_own():
    rows = [[3, 3, 1], [3, 0, 1], [3, 1, 1]]  # 4 + 1 + 2 tokens
    assert token_origins(7, rows) == [T, T, T, F, F, T, F]


def test_a_last_round_cut_short_is_draft_tokens_only():
    # max-tokens (or an EOS) among the draft tokens: the last round never got its own token
    assert token_origins(6, [[3, 3, 1], [3, 2, 0]]) == [T, T, T, F, T, T]
    # a last round that did end with the target's token (cut only in its proposal)
    assert token_origins(7, [[3, 3, 1], [2, 2, 0]]) == [T, T, T, F, T, T, F]


def test_plain_decoding_and_per_token_flags():
    assert token_origins(3) == [F, F, F]
    assert token_origins(3, [], None) == [F, F, F]
    assert token_origins(3, [[3, 3, 1]], from_draft=[F, T, F]) == [F, T, F]  # flags win (schema-1 files)
    assert accepted.sample_origins(run_sample([1, 2], rounds=None, method="baseline")) == [F, F]


@pytest.mark.parametrize(("count", "rows"), [(9, [[3, 3, 1], [3, 0, 1]]), (3, [[3, 3, 1], [3, 0, 1]]),
                                            (4, [[3, 1, 1], [3, 3, 1]])])
def test_rounds_that_do_not_add_up_are_an_error(count, rows):
    with pytest.raises(InvalidInputError, match="do not add up"):
        token_origins(count, rows)
    with pytest.raises(InvalidInputError, match="draft flags for"):
        token_origins(2, from_draft=[T])


def test_segments_join_runs_and_skip_empty_pieces():
    parts = segments(["The", " capital", "", " of", " France", " is"], [F, T, T, T, F, T])
    assert parts == [Segment("The", F), Segment(" capital of", T), Segment(" France", F), Segment(" is", T)]
    assert parts[1] == (" capital of", True)  # plain tuples for callers
    with pytest.raises(ValueError):
        segments(["a", "b"], [T])


def test_plain_text_puts_accepted_runs_in_brackets():
    parts = [Segment("The", F), Segment(" capital of", T), Segment(" France", F), Segment(" is", T)]
    assert bracketed(parts) == "The [capital of] France [is]"
    assert bracketed([Segment("all draft", T)]) == "[all draft]"
    assert bracketed([Segment("none", F)]) == "none"
    marker = accepted.BracketMarker()  # the streaming form gives the same text piece by piece
    streamed = "".join(marker.feed(text, origin) for text, origin in
                       [("The", F), (" capital", T), (" of", T), (" France", F), (" is", T)]) + marker.close()
    assert streamed == "The [capital of] France [is]"


def test_html_marks_accepted_runs_and_escapes_everything():
    parts = [Segment("if a < b", F), Segment(' & "c"', T), Segment("\n<br>", F)]
    assert html_marked(parts) == ('if a &lt; b<mark class="accepted"> &amp; &quot;c&quot;</mark>\n&lt;br&gt;')
    assert html_marked([]) == ""


def test_sample_segments_read_a_run_sample():
    sample = run_sample([5, 6, 7, 8, 9], rounds=[[2, 2, 1], [2, 2, 0]], token_texts=["A", " b", " c", " d", "e"])
    assert sample_segments(sample) == [Segment("A b", T), Segment(" c", F), Segment(" de", T)]
    assert sample_segments(run_sample([5, 6], rounds=[[2, 1, 1]])) is None  # no texts recorded
    with pytest.raises(InvalidInputError, match="1 token texts for 2 tokens"):
        sample_segments(run_sample([5, 6], rounds=[[2, 1, 1]], token_texts=["x"]))


def test_a_setup_shows_its_first_recorded_answer():
    later = run_sample([5, 6], rounds=[[2, 1, 1]], token_texts=["x", "y"])
    later.prompt_index = 1
    first = run_sample([7, 8], rounds=[[2, 1, 1]], token_texts=["<a", "b"])
    chosen, parts = accepted.first_marked_sample([run_sample([1, 2], rounds=[[2, 1, 1]]), later, first])
    assert chosen is first and html_marked(parts) == '<mark class="accepted">&lt;a</mark>b'
    assert accepted.first_marked_sample([run_sample([1, 2], rounds=[[2, 1, 1]])]) is None


def test_accepted_is_engine_free():
    """It imports nothing of mlxdraft but its errors, and loading it loads no mlx or tokenizer."""
    import ast
    import subprocess
    import sys

    tree = ast.parse(open(accepted.__file__, encoding="utf-8").read())
    own = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    assert own == {"errors"}
    code = ("import sys, mlxdraft.accepted; print([m for m in sys.modules if m.split('.')[0] in "
            "('mlx', 'mlx_lm', 'transformers', 'tokenizers')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- what a measurement records ------------------------------------------------------------------
def test_speculative_runs_record_token_texts_on_the_first_pass_only(loaded):
    target = loaded["target"]
    prompts = [Prompt("The capital of France is")]
    encoded = [encode_prompt(target.tokenizer, prompts[0])]
    settings = MeasureSettings(max_tokens=10, runs=2, warmup=0)
    variants = [Variant(get_method("baseline")), Variant(get_method("draft"), target, 3)]
    samples = list(iter_interleaved_runs(get_engine("mlx-lm"), target, variants, prompts, encoded, settings))
    baseline, first, _, later = samples
    assert baseline.token_texts is None and later.pass_index == 1 and later.token_texts is None
    assert len(first.token_texts) == len(first.token_ids) == 10
    assert "".join(first.token_texts) == target.tokenizer.decode(first.token_ids)
    # a model drafting for itself: rounds of 3 accepted + 1 own; the own loop's last round proposes
    # only what leaves room for the target's token (1 here)
    assert accepted.sample_origins(first) == [T, T, T, F, T, T, T, F, T, F]
    assert sample_segments(first) == segments(first.token_texts, accepted.sample_origins(first))


def test_token_texts_are_written_and_read_back_and_older_files_load(tmp_path):
    state = make_state({}, prompts=2)
    group = next(iter(state["groups"].values()))
    speculative = next(s for s in group["samples"] if s["num_draft_tokens"])
    speculative["token_texts"] = ["x"] * len(speculative["token_ids"])
    path = tmp_path / "with-texts.json"
    path.write_text(json.dumps(state))
    samples = next(iter(load_results(path).groups.values())).samples
    assert sum(s.token_texts is not None for s in samples) == 1
    speculative["token_texts"] = [1] * len(speculative["token_ids"])  # damaged: not strings
    path.write_text(json.dumps(state))
    with pytest.raises(InvalidInputError, match=r"token_texts\[0\] must be a string"):
        load_results(path)
    del speculative["token_texts"]  # files written before the field existed
    path.write_text(json.dumps(state))
    assert all(s.token_texts is None for s in next(iter(load_results(path).groups.values())).samples)
