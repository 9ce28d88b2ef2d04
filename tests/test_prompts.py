import pytest

from mlxdraft.errors import InvalidInputError
from mlxdraft.prompts import (
    MAX_PROMPT_CHARS,
    MAX_PROMPTS,
    MAX_PROMPTS_FILE_BYTES,
    load_default_prompts,
    load_prompts_file,
)


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


def error_of(path):
    with pytest.raises(InvalidInputError) as excinfo:
        load_prompts_file(path)
    return str(excinfo.value)


def test_byte_order_mark_and_windows_line_ends(tmp_path):
    plain = tmp_path / "bom.txt"
    plain.write_bytes("\ufefffirst\r\nsecond\r\n".encode())
    assert [p.text for p in load_prompts_file(plain)] == ["first", "second"]
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes('\ufeff{"prompt": "a"}\n'.encode())
    assert [p.text for p in load_prompts_file(jsonl)] == ["a"]


def test_jsonl_line_separators_inside_strings_stay_one_prompt(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "one\u2028two\x85three"}\n', encoding="utf-8")
    assert [p.text for p in load_prompts_file(jsonl)] == ["one\u2028two\x85three"]


@pytest.mark.parametrize("lines, message", [
    (['{"prompt": "a"}', "", "# a comment", '{"prompt": "b"}'],
     'line 3: not a JSON object; this file is JSONL (it starts with one), so every non-blank line must be '
     '{"prompt": "..."}; comments are not allowed'),
    (['{"prompt": "a"}', "plain text"], "line 2: not a JSON object; this file is JSONL"),
    (["", "", '{"prompt": "a"', '{"prompt": "b"}'], "line 3: not valid JSON ("),
    (['{"prompt": "a"}', '["prompt"]'], "line 2: not a JSON object"),
    (['{"prompt": "a"}', '{"prompt": 3}'], "line 2: needs a non-empty string under the key 'prompt'"),
    (['{"prompt": "a"}', '{"prompt": "  "}'], "line 2: needs a non-empty string under the key 'prompt'"),
    (['{"prompt": "a", "category": 3}'],
     "line 1: 'category' must be a non-empty string (got 3); fix it or leave it out"),
])
def test_jsonl_errors_name_the_line(tmp_path, lines, message):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert error_of(path).startswith(f"prompts file {path}, {message}")


def test_plain_files_are_plain(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text('Summarize this\n{"not": "a prompt record"}\n# not a comment either\n')
    assert [p.text for p in load_prompts_file(path)] == [
        "Summarize this", '{"not": "a prompt record"}', "# not a comment either"]


def test_jsonl_with_a_comment_first_is_an_error_not_plain_text(tmp_path):
    message = ("a JSON object in a plain-text prompts file; if the file is JSONL, every non-blank line must be an "
               "object (no comments, also not on the first line)")
    path = tmp_path / "p.txt"
    path.write_text('# my prompts\n{"prompt": "Hi"}\n')
    assert error_of(path) == f"prompts file {path}, line 2: {message}"
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('# my prompts\n{"prompt": "Hi"}\n')
    assert error_of(jsonl).startswith(f"prompts file {jsonl}, line 1: not a JSON object")


def test_limits(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text("short\n\n" + "x" * (MAX_PROMPT_CHARS + 1) + "\n")
    assert error_of(path) == (f"prompts file {path}, line 3: the prompt has 32,001 characters, more than the "
                              "32,000 allowed; shorten it")
    path.write_text('{"prompt": "%s"}\n' % ("y" * (MAX_PROMPT_CHARS + 1)))
    assert "line 1: the prompt has 32,001 characters" in error_of(path)
    path.write_text("".join(f"prompt {i}\n" for i in range(MAX_PROMPTS + 1)))
    assert error_of(path) == (f"prompts file {path} has 1001 prompts, more than the 1000 mlxdraft runs at once; "
                              "split it into several files")
    path.write_text("".join(f"prompt {i}\n" for i in range(MAX_PROMPTS)))
    assert len(load_prompts_file(path)) == MAX_PROMPTS
    path.write_bytes(b"a" * (MAX_PROMPTS_FILE_BYTES + 1))
    assert error_of(path) == f"prompts file {path} is larger than 1 MiB, the most mlxdraft reads; pass a smaller file"


def test_endless_device_is_refused_quickly():
    import time

    start = time.perf_counter()
    assert error_of("/dev/zero") == (
        "prompts file /dev/zero is larger than 1 MiB, the most mlxdraft reads; pass a smaller file")
    assert time.perf_counter() - start < 5


def test_a_folder_is_not_a_prompts_file(tmp_path):
    assert error_of(tmp_path) == (
        f"prompts file {tmp_path} is a folder, not a file; pass an existing UTF-8 text file to --prompts")
