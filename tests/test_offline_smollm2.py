"""The real offline model: SmolLM2-135M-Instruct from PyPI, converted to MLX. Slow: CI runs
these; skip them locally with `make test-fast`."""

import os
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import pytest
from click.testing import CliRunner

from mlxdraft.analysis import compare
from mlxdraft.cli import cli
from mlxdraft.engines import get_engine
from mlxdraft.measure import MeasureSettings, sample_from_trace
from mlxdraft.methods import get_method
from mlxdraft.prompts import Prompt, encode_prompt
from mlxdraft.sources import ModelSource

pytestmark = pytest.mark.slow

CACHE = Path(os.environ.get("MLXDRAFT_TEST_CACHE", Path(__file__).parent.parent / ".cache" / "home"))
PARAGRAPH = (
    "The history of the town goes back more than two thousand years. It was founded on the banks "
    "of a wide river, where farmers and traders met to exchange grain, salt and cloth. Over the "
    "centuries it grew into a busy market town with a stone bridge, a church and a school."
)
FRANCE = Prompt("What is the capital of France?")


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """All seven variants, built once into a cache shared between test runs."""
    from mlxdraft import offline

    saved = os.environ.get("MLXDRAFT_HOME")
    os.environ["MLXDRAFT_HOME"] = str(CACHE)
    try:
        paths = offline.prepare()
    finally:
        if saved is None:
            os.environ.pop("MLXDRAFT_HOME", None)
        else:
            os.environ["MLXDRAFT_HOME"] = saved
    loaded = {}

    def get(variant):
        if variant not in loaded:
            loaded[variant] = get_engine().load(ModelSource(f"smollm2:{variant}", paths[variant], "offline"))
        return loaded[variant]

    return get


def measure_generation(target, ids, settings, draft=None, num_draft_tokens=0):
    method = get_method("mlx-lm" if draft is not None else "baseline")
    trace = get_engine().generate(target, ids, settings, method, draft, num_draft_tokens)
    return sample_from_trace(trace, method.key, num_draft_tokens, len(ids))


def greedy_ids(model, max_tokens):
    ids = encode_prompt(model.tokenizer, FRANCE)
    settings = MeasureSettings(max_tokens=max_tokens, warmup=0, fixed_length=False)
    return measure_generation(model, ids, settings).token_ids


def test_knows_the_capital_of_france(smollm2):
    fp32 = smollm2("fp32")
    answer = fp32.tokenizer.decode(greedy_ids(fp32, 24))
    assert "Paris" in answer


def test_plain_english_is_predictable(smollm2):
    fp32 = smollm2("fp32")
    ids = mx.array(fp32.tokenizer.encode(PARAGRAPH))[None]
    logits = fp32.model(ids[:, :-1]).astype(mx.float32)
    nll = nn.losses.cross_entropy(logits, ids[:, 1:]).mean().item()
    assert nll < 3.0, f"mean next-token NLL {nll:.2f} nats"


def test_8bit_agrees_with_float32(smollm2):
    assert greedy_ids(smollm2("q8"), 20) == greedy_ids(smollm2("fp32"), 20)


def test_every_variant_has_its_precision(smollm2):
    expected = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "q8": "8bit", "q6": "6bit",
                "q4": "4bit", "q3": "3bit"}
    for variant, precision in expected.items():
        assert smollm2(variant).precision == precision
        assert smollm2(variant).config["rope_theta"] == 100000.0


def test_speculative_on_real_weights_is_lossless(smollm2):
    target, draft = smollm2("fp16"), smollm2("q8")
    ids = encode_prompt(target.tokenizer, FRANCE)
    settings = MeasureSettings(max_tokens=24, warmup=0)
    baseline = measure_generation(target, ids, settings)
    speculative = measure_generation(target, ids, settings, draft=draft, num_draft_tokens=4)
    comparison = compare([baseline], [speculative], 4, greedy=True)
    assert comparison.lossless.identical
    assert speculative.acceptance_rate > 0.5


def test_short_names_work_in_the_cli(smollm2, monkeypatch):
    monkeypatch.setenv("MLXDRAFT_HOME", str(CACHE))
    result = CliRunner().invoke(cli, ["pair", "smollm2:q8", "smollm2:q8", "--max-tokens", "6", "-w", "0",
                                      "--prompt", "Hi", "--no-download"])
    assert result.exit_code == 0, result.output
    assert "smollm2:q8 (llama, 8bit" in result.stdout
    prepared = CliRunner().invoke(cli, ["prepare", "smollm2", "--json"])
    assert prepared.exit_code == 0
    assert str(CACHE) in prepared.stdout
