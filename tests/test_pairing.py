import pytest

from mlxdraft.engines import get_engine
from mlxdraft.engines.mlx_lm import MlxLmEngine, check_same_tokens
from mlxdraft.errors import IncompatibleModelsError


def check_pair(target, draft):
    check_same_tokens(target.tokenizer, draft.tokenizer)
    get_engine().check_loaded(target, draft)


def test_same_family_is_compatible(loaded):
    check_pair(loaded["target"], loaded["draft"])


def test_different_logits_width_with_same_tokenizer_is_compatible(loaded):
    target, draft = loaded["target_qwen"], loaded["draft_qwen_wide"]
    assert target.config["vocab_size"] != draft.config["vocab_size"]
    check_pair(target, draft)


def test_different_tokenizer_names_first_differing_id(loaded):
    target, other = loaded["target"], loaded["other"]
    with pytest.raises(IncompatibleModelsError) as excinfo:
        check_same_tokens(target.tokenizer, other.tokenizer, "T", "D")
    message = str(excinfo.value)
    assert message.startswith("D cannot draft for T: their tokenizers differ at token id ")
    token_id = int(message.split("token id ")[1].split(" ")[0])
    target_text = target.tokenizer.convert_ids_to_tokens(token_id)
    assert f"({target_text!r} in the target" in message
    assert all(
        target.tokenizer.convert_ids_to_tokens(i) == other.tokenizer.convert_ids_to_tokens(i)
        for i in range(token_id)
    )


def broken_copy(source, folder, breakage):
    import shutil

    shutil.copytree(source, folder)
    breakage(folder)
    return folder


BREAKAGES = {
    "config.json is not valid JSON (Expecting value at line 1, column 16); convert or download the model again":
        lambda f: (f / "config.json").write_text('{"model_type": '),
    "config.json holds a list, not a JSON object; convert or download the model again":
        lambda f: (f / "config.json").write_text("[1, 2]"),
    "has no tokenizer (tokenizer.json, tokenizer.model or a .tiktoken file); copy the tokenizer files of the "
    "original model into the folder":
        lambda f: (f / "tokenizer.json").unlink(),
}


@pytest.mark.parametrize("message", list(BREAKAGES))
def test_tokenizer_preflight_on_broken_folders(tiny, tmp_path, message):
    from pathlib import Path

    from mlxdraft.errors import ModelNotFoundError
    from mlxdraft.sources import ModelSource, resolve_model

    folder = broken_copy(tiny.draft, tmp_path / "broken", BREAKAGES[message])
    broken = ModelSource(str(folder), Path(folder), "local")  # as a Hub snapshot would arrive: unchecked
    separator = "/" if message.startswith("config.json") else " "
    with pytest.raises(ModelNotFoundError) as excinfo:
        MlxLmEngine().tokenizer(broken)
    assert str(excinfo.value) == f"{folder}{separator}{message}"
    with pytest.raises(ModelNotFoundError):
        MlxLmEngine().check_tokenizers(resolve_model(str(tiny.target)), broken)


def test_unparsable_tokenizer_is_one_error(tiny, tmp_path):
    from pathlib import Path

    from mlxdraft.errors import ModelNotFoundError
    from mlxdraft.sources import ModelSource

    folder = broken_copy(tiny.draft, tmp_path / "broken", lambda f: (f / "tokenizer.json").write_text("garbage"))
    with pytest.raises(ModelNotFoundError) as excinfo:
        MlxLmEngine().tokenizer(ModelSource("mine", Path(folder), "local"))
    assert str(excinfo.value).startswith("cannot read the tokenizer of mine (")
    assert str(excinfo.value).endswith("); convert or download the model again")
