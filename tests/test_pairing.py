import pytest

from mlxdraft.errors import IncompatibleModelsError
from mlxdraft.pairing import check_pair, check_tokenizers


def test_same_family_is_compatible(loaded):
    check_pair(loaded["target"], loaded["draft"])


def test_different_logits_width_with_same_tokenizer_is_compatible(loaded):
    target, draft = loaded["target_qwen"], loaded["draft_qwen_wide"]
    assert target.config["vocab_size"] != draft.config["vocab_size"]
    check_pair(target, draft)


def test_different_tokenizer_names_first_differing_id(loaded):
    target, other = loaded["target"], loaded["other"]
    with pytest.raises(IncompatibleModelsError) as excinfo:
        check_tokenizers(target.tokenizer, other.tokenizer, "T", "D")
    message = str(excinfo.value)
    assert message.startswith("D cannot draft for T: their tokenizers differ at token id ")
    token_id = int(message.split("token id ")[1].split(" ")[0])
    target_text = target.tokenizer.convert_ids_to_tokens(token_id)
    assert f"({target_text!r} in the target" in message
    assert all(
        target.tokenizer.convert_ids_to_tokens(i) == other.tokenizer.convert_ids_to_tokens(i)
        for i in range(token_id)
    )
