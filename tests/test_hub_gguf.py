"""GGUF downloads against the local Hub server (tests/hubserver.py): only the listed file, or every
part of a split one, never the rest of the repo; through the real huggingface_hub in a subprocess
(it reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is imported)."""

import json
import os
import subprocess
import sys

import pytest
from hubserver import FakeHub, HubServer

REPO = "someone/Tiny-GGUF"
SPLIT = ["tiny-Q8_0-00001-of-00002.gguf", "tiny-Q8_0-00002-of-00002.gguf"]
LIST = f'''family = "tiny"
engine = "llama.cpp"

[[models]]
name = "tiny:q4_k_m"
repo = "{REPO}"
files = ["tiny-Q4_K_M.gguf"]
params_b = 0.001
precision = "q4_k_m"
size_gb = 0.001

[[models]]
name = "tiny:q8_0"
repo = "{REPO}"
files = {json.dumps(SPLIT)}
params_b = 0.001
precision = "q8_0"
size_gb = 0.001

[[models]]
name = "tiny:q6_k"
repo = "{REPO}"
files = ["tiny-Q6_K.gguf"]
params_b = 0.001
precision = "q6_k"
size_gb = 0.001
'''


@pytest.fixture
def hub(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ["tiny-Q4_K_M.gguf", "tiny-f16.gguf", *SPLIT]:
        (repo / name).write_bytes(b"GGUF\x03\x00\x00\x00" + name.encode() * 50)
    (repo / "README.md").write_text("# tiny\n")
    (repo / "pytorch_model.bin").write_bytes(b"a pickle: never downloaded")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "tiny.toml").write_text(LIST)
    with HubServer(FakeHub(repos={REPO: repo})) as fake:
        yield fake


def resolve(hub, tmp_path, name, allow_download=True):
    code = ("import sys\nfrom mlxdraft.errors import MlxdraftError\nfrom mlxdraft.sources import resolve_gguf\n"
            "try:\n    s = resolve_gguf(sys.argv[1], allow_download=sys.argv[2] == '1', progress=print)\n"
            "except MlxdraftError as exc:\n    print(f'Error: {exc}')\n    sys.exit(1)\n"
            "print(s.path)\nprint(s.revision)\n")
    return subprocess.run([sys.executable, "-c", code, name, "1" if allow_download else "0"], env=env(hub, tmp_path),
                          capture_output=True, text=True, timeout=300)


def env(hub, tmp_path):
    values = dict(os.environ, HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="0",
                  MLXDRAFT_HOME=str(tmp_path / "home"), MLXDRAFT_MODEL_LISTS=str(tmp_path / "lists"),
                  HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_ETAG_TIMEOUT="5",
                  HF_HUB_DOWNLOAD_TIMEOUT="5")
    values.pop("HF_TOKEN", None)
    return values


def models_json(hub, tmp_path):
    result = subprocess.run([sys.executable, "-m", "mlxdraft", "models", "--family", "tiny", "--json"],
                            env=env(hub, tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return {m["name"]: m["local"] for m in json.loads(result.stdout)["models"]}


def test_one_file_per_quantization_and_every_split_part(hub, tmp_path):
    assert models_json(hub, tmp_path) == {"tiny:q4_k_m": "absent", "tiny:q8_0": "absent", "tiny:q6_k": "absent"}
    single = resolve(hub, tmp_path, "tiny:q4_k_m")
    assert single.returncode == 0, single.stderr + single.stdout
    lines = single.stdout.strip().splitlines()
    assert lines[0].startswith(f"Downloading tiny-Q4_K_M.gguf from {REPO} (")
    assert lines[-2].endswith("/tiny-Q4_K_M.gguf") and lines[-1] == "0123456789abcdef0123456789abcdef01234567"
    assert set(hub.fetched()) == {f"{REPO}/tiny-Q4_K_M.gguf"}  # HEAD and GET of that file only
    split = resolve(hub, tmp_path, "tiny:q8_0")
    assert split.returncode == 0, split.stderr + split.stdout
    assert split.stdout.strip().splitlines()[-2].endswith("/" + SPLIT[0])
    assert sorted(set(hub.fetched())) == sorted([f"{REPO}/tiny-Q4_K_M.gguf"] + [f"{REPO}/{s}" for s in SPLIT])
    assert models_json(hub, tmp_path) == {"tiny:q4_k_m": "downloaded", "tiny:q8_0": "downloaded",
                                          "tiny:q6_k": "absent"}
    hub.requests.clear()
    again = resolve(hub, tmp_path, "tiny:q8_0", allow_download=False)  # from the cache, no request
    assert again.returncode == 0 and hub.requests == []


def test_a_listed_file_the_repo_lacks(hub, tmp_path):
    result = resolve(hub, tmp_path, "tiny:q6_k")
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1] == (
        f"Error: {REPO} has no file tiny-Q6_K.gguf on the Hugging Face Hub (its GGUF files: tiny-Q4_K_M.gguf, "
        "tiny-Q8_0-00001-of-00002.gguf, tiny-Q8_0-00002-of-00002.gguf, tiny-f16.gguf); the model list is out "
        "of date, or the file was renamed")
    assert hub.fetched() == []


def test_no_download_and_missing_repo(hub, tmp_path):
    result = resolve(hub, tmp_path, "tiny:q4_k_m", allow_download=False)
    assert result.returncode == 1 and "is not in the local Hugging Face cache" in result.stdout
    del hub.repos[REPO]
    result = resolve(hub, tmp_path, "tiny:q4_k_m")
    assert result.stdout.strip().splitlines()[-1].startswith(f"Error: {REPO} was not found on the Hugging Face Hub")


def test_pull_fetches_a_gguf_entry(hub, tmp_path):
    result = subprocess.run([sys.executable, "-m", "mlxdraft", "pull", "tiny:q8_0"], env=env(hub, tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("tiny:q8_0: ") and result.stdout.rstrip().endswith("/" + SPLIT[0])
    assert set(hub.fetched()) == {f"{REPO}/{name}" for name in SPLIT}
