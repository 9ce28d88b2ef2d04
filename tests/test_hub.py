"""Downloads against a local server speaking the Hub's file API (HF_ENDPOINT), through the
real huggingface_hub and the real CLI in a subprocess (huggingface_hub reads HF_ENDPOINT,
HF_HOME and HF_HUB_OFFLINE when it is imported)."""

import os
import shutil
import subprocess
import sys

import pytest
from hubserver import FakeHub, HubServer

REPO = "mlx-community/tiny-test-model"


@pytest.fixture
def hub(tiny, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(tiny.target, repo)
    (repo / "README.md").write_text("# tiny test model\n")
    for unwanted in ("pytorch_model.bin", "optimizer.pt", "weights.pth", "modeling_evil.py"):
        (repo / unwanted).write_bytes(b"pickle or code: must never be downloaded")
    with HubServer(FakeHub(repos={REPO: repo})) as fake:
        yield fake


def mlxdraft(hub, tmp_path, *args, offline=False):
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1" if offline else "0",
               MLXDRAFT_HOME=str(tmp_path / "home"), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               HF_HUB_ETAG_TIMEOUT="5", HF_HUB_DOWNLOAD_TIMEOUT="5")
    env.pop("HF_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "mlxdraft", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def snapshot_files(tmp_path):
    snapshots = list((tmp_path / "hf" / "hub").glob("models--*/snapshots/*"))
    return sorted(p.name for s in snapshots for p in s.iterdir())


@pytest.mark.slow
def test_pull_then_load_and_generate(hub, tmp_path):
    pulled = mlxdraft(hub, tmp_path, "pull", REPO)
    assert pulled.returncode == 0, pulled.stderr
    assert "Downloading mlx-community/tiny-test-model" in pulled.stderr
    assert snapshot_files(tmp_path) == ["README.md", "config.json", "model.safetensors", "tokenizer.json",
                                        "tokenizer_config.json"]
    unwanted = [f for f in hub.fetched() if f.endswith((".bin", ".pt", ".pth", ".py"))]
    assert unwanted == []
    paired = mlxdraft(hub, tmp_path, "pair", REPO, REPO, "--max-tokens", "6", "-w", "0", "--prompt", "Hi",
                      "--json", "--no-download")
    assert paired.returncode == 0, paired.stderr
    assert '"repo_id": "mlx-community/tiny-test-model"' in paired.stdout
    assert '"revision": "0123456789abcdef0123456789abcdef01234567"' in paired.stdout


def test_models_reports_local_status(hub, tmp_path, monkeypatch):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "tiny.toml").write_text(
        'family = "tiny"\nsource = "hub"\n\n[[models]]\nname = "tiny:test"\n'
        f'repo = "{REPO}"\nparams_b = 0.001\nprecision = "fp32"\nrole = "both"\nsize_gb = 0.001\n')
    monkeypatch.setenv("MLXDRAFT_MODEL_LISTS", str(lists))
    before = mlxdraft(hub, tmp_path, "models", "--family", "tiny", "--json")
    assert '"local": "absent"' in before.stdout
    assert mlxdraft(hub, tmp_path, "pull", "tiny:test").returncode == 0
    after = mlxdraft(hub, tmp_path, "models", "--family", "tiny")
    assert "downloaded" in after.stdout


def test_repo_that_does_not_exist(hub, tmp_path):
    result = mlxdraft(hub, tmp_path, "pull", "mlx-community/no-such-model")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: mlx-community/no-such-model was not found on the Hugging Face Hub (or is private); check the "
        "repo id, for example with `mlxdraft models`")
    assert "Traceback" not in result.stderr


def test_gated_repo(hub, tmp_path):
    hub.gated.add(REPO)
    result = mlxdraft(hub, tmp_path, "pull", REPO)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {REPO} is gated: accept its license on the Hugging Face Hub, then set HF_TOKEN to a token of "
        "that account")


@pytest.fixture
def big_hub(tmp_path):
    """A repo whose weights exceed huggingface_hub's 10 MB write chunk, so a broken-off transfer has
    written part of the file before it breaks."""
    from mlxdraft.testkit import TinyModelSpec, build_model_folder, train_tokenizer

    repo = tmp_path / "big-repo"
    build_model_folder(repo, TinyModelSpec(hidden_size=512, num_hidden_layers=2, intermediate_size=2048,
                                           num_attention_heads=8, num_key_value_heads=4), train_tokenizer())
    assert (repo / "model.safetensors").stat().st_size > 25_000_000
    with HubServer(FakeHub(repos={REPO: repo})) as fake:
        yield fake


def weights_requests(hub):
    return [(method, r) for method, path, r in hub.requests if path.endswith("model.safetensors") and method == "GET"]


def test_transfer_cut_halfway_resumes_from_where_it_broke(big_hub, tmp_path):
    big_hub.cut_at[f"{REPO}/model.safetensors"] = [15_000_000, 1]
    result = mlxdraft(big_hub, tmp_path, "pull", REPO)
    assert result.returncode == 0, result.stderr
    assert weights_requests(big_hub) == [("GET", None), ("GET", f"bytes={10 * 1024 * 1024}-")]
    downloaded = next((tmp_path / "hf" / "hub").glob("models--*/snapshots/*/model.safetensors"))
    assert downloaded.read_bytes() == (big_hub.repos[REPO] / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_failed_pull_keeps_finished_files(big_hub, tmp_path):
    big_hub.cut_at[f"{REPO}/model.safetensors"] = [15_000_000, 6]  # outlasts the library's retries
    first = mlxdraft(big_hub, tmp_path, "pull", REPO)
    assert first.returncode == 1
    assert first.stderr.strip().splitlines()[-1].startswith(
        f"Error: could not download {REPO} from the Hugging Face Hub (")
    assert "Traceback" not in first.stderr
    big_hub.requests.clear()
    second = mlxdraft(big_hub, tmp_path, "pull", REPO)
    assert second.returncode == 0, second.stderr
    fetched_again = [f.rsplit("/", 1)[1] for f in big_hub.fetched()]
    assert "config.json" not in fetched_again and "model.safetensors" in fetched_again
    downloaded = next((tmp_path / "hf" / "hub").glob("models--*/snapshots/*/model.safetensors"))
    assert downloaded.read_bytes() == (big_hub.repos[REPO] / "model.safetensors").read_bytes()


def test_disk_space_refusal(hub, tmp_path):
    hub.size_lies[f"{REPO}/model.safetensors"] = 10**16  # 10 PB
    result = mlxdraft(hub, tmp_path, "pull", REPO)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: not enough disk space for {REPO}: it needs 10000000.00 GB, ")
    assert last.endswith("free some space or point HF_HOME at a larger disk")
    assert not any(f.endswith("model.safetensors") for f in hub.fetched())


@pytest.mark.slow
def test_offline_mode_uses_the_cache(hub, tmp_path):
    assert mlxdraft(hub, tmp_path, "pull", REPO).returncode == 0
    hub.requests.clear()
    result = mlxdraft(hub, tmp_path, "pair", REPO, REPO, "--max-tokens", "4", "-w", "0", "--prompt", "Hi",
                      offline=True)
    assert result.returncode == 0, result.stderr
    assert hub.requests == []
    missing = mlxdraft(hub, tmp_path, "pull", "mlx-community/not-cached", offline=True)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1] == (
        "Error: cannot download mlx-community/not-cached: offline mode is on (HF_HUB_OFFLINE) and it is not in "
        "the cache; unset HF_HUB_OFFLINE or pull it on a connected machine")
