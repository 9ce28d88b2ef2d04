"""GGUF models given directly: a .gguf file or a folder holding one, split files included; every
problem is one ModelNotFoundError that says what to do."""

import pytest

from mlxdraft.errors import ModelNotFoundError
from mlxdraft.sources import find_gguf, resolve_gguf


def gguf(path, body=b"GGUF\x03\x00\x00\x00rest"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def test_a_file_and_a_folder_with_one_model(tmp_path):
    model = gguf(tmp_path / "m" / "model-Q8_0.gguf")
    gguf(tmp_path / "m" / "mmproj-model-f16.gguf")  # a vision projector beside it is not a second model
    (tmp_path / "m" / "README.md").write_text("hi")
    for name in (str(model), str(tmp_path / "m")):
        source = resolve_gguf(name)
        assert (source.path, source.kind) == (model.resolve(), "local")


def test_split_files_resolve_to_the_first_part(tmp_path):
    parts = [gguf(tmp_path / f"big-Q8_0-0000{i}-of-00003.gguf") for i in (1, 2, 3)]
    assert resolve_gguf(str(tmp_path)).path == parts[0].resolve()
    with pytest.raises(ModelNotFoundError, match="is part 2 of a split GGUF; pass the first part, "
                                                 "big-Q8_0-00001-of-00003.gguf"):
        resolve_gguf(str(parts[1]))
    parts[2].unlink()
    with pytest.raises(ModelNotFoundError, match=r"is split into 3 parts and 1 of them are missing beside it "
                                                 r"\(big-Q8_0-00003-of-00003.gguf\); download them all"):
        resolve_gguf(str(parts[0]))


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "does not exist; check the path"),
    (lambda d: d.mkdir(), "holds no .gguf file; pass a GGUF file or a folder with one"),
    (lambda d: (gguf(d / "a.gguf"), gguf(d / "b.gguf")), "holds 2 GGUF models (a.gguf, b.gguf); pass the file"),
    (lambda d: gguf(d / "a.gguf", b"PK\x03\x04zip"), "is not a GGUF file (it does not start with the GGUF magic"),
])
def test_problems(tmp_path, setup, message):
    folder = tmp_path / "models"
    setup(folder)
    with pytest.raises(ModelNotFoundError) as excinfo:
        find_gguf(folder)
    assert message in str(excinfo.value)


def test_names_that_are_none_of_these():
    with pytest.raises(ModelNotFoundError, match="an empty model name"):
        resolve_gguf("  ")
    with pytest.raises(ModelNotFoundError, match="'owner/model' is not a .gguf file, a folder holding one, or a GGUF "
                                                 "short name"):
        resolve_gguf("owner/model")
