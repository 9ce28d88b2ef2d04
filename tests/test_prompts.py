import pytest

from mlxdraft.errors import InvalidInputError
from mlxdraft.prompts import load_default_prompts, load_prompts_file


def test_default_suite_covers_six_categories():
    prompts = load_default_prompts()
    assert len(prompts) >= 12
    assert {p.category for p in prompts} >= {"code", "structured", "lists", "prose", "math", "rewrite"}


def test_plain_and_jsonl_files(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("first prompt\n\n second prompt \n")
    assert [p.text for p in load_prompts_file(plain)] == ["first prompt", "second prompt"]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a", "category": "x"}\n{"prompt": "b"}\n')
    assert [(p.text, p.category) for p in load_prompts_file(jsonl)] == [("a", "x"), ("b", "custom")]


def test_bad_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(InvalidInputError, match="is empty"):
        load_prompts_file(empty)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "a"}\n{"text": "b"}\n')
    with pytest.raises(InvalidInputError, match="line 2: needs a non-empty string under the key 'prompt'"):
        load_prompts_file(broken)
