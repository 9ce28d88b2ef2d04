"""Tiny random models in the Hugging Face folder layout, for tests and offline demos.

Everything here is built locally in seconds: a byte-level BPE tokenizer trained with the
`tokenizers` library on a built-in corpus, and small Llama or Qwen2 models with random weights,
saved as `config.json` + `model.safetensors` + tokenizer files and loadable with `mlx_lm.load`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = """
Speculative decoding lets a small draft model guess several tokens that a large target model
then checks in one forward pass. Every accepted guess is a token the target did not have to
generate on its own. The capital of France is Paris. The capital of Italy is Rome.
def add(a, b):
    return a + b
{"name": "mlx", "version": 1, "tags": ["fast", "local"]}
| model | bits | tokens per second |
|-------|------|-------------------|
| 7B    | 4    | 42.0              |
1. Preheat the oven. 2. Mix flour and water. 3. Bake for twenty minutes.
If a train travels 60 kilometres in 45 minutes, its speed is 80 kilometres per hour.
Summarize: the quick brown fox jumps over the lazy dog while the cat sleeps in the sun.
"""


@dataclass
class TinyModelSpec:
    """Shape of a tiny test model; defaults give a ~100k-parameter Llama."""

    model_type: str = "llama"  # "llama" or "qwen2"
    hidden_size: int = 64
    num_hidden_layers: int = 2
    intermediate_size: int = 128
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vocab_padding: int = 0  # extra logits beyond the tokenizer (like Qwen2.5 7B+)
    seed: int = 0
    dtype: str = "float32"
    extra_config: dict = field(default_factory=dict)


def train_tokenizer(vocab_size: int = 400, corpus: str = _CORPUS, seed_text: str = ""):
    """Train a small byte-level BPE tokenizer; returns a `tokenizers.Tokenizer`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [line for line in (seed_text + corpus).splitlines() if line.strip()]
    tokenizer.train_from_iterator(lines * 4, trainer=trainer)
    return tokenizer


def write_tokenizer(folder: Path, tokenizer) -> None:
    """Save `tokenizer.json` and a `tokenizer_config.json` with a chat template."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "add_bos_token": False,
        "chat_template": CHAT_TEMPLATE,
        "model_max_length": 4096,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def _model_config(spec: TinyModelSpec, vocab_size: int, eos_token_id: int) -> dict:
    config = {
        "model_type": spec.model_type,
        "architectures": ["Qwen2ForCausalLM" if spec.model_type == "qwen2" else "LlamaForCausalLM"],
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "intermediate_size": spec.intermediate_size,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "vocab_size": vocab_size + spec.vocab_padding,
        "tie_word_embeddings": spec.model_type == "qwen2",
        "max_position_embeddings": 4096,
        "eos_token_id": eos_token_id,
        "torch_dtype": spec.dtype,
    }
    config.update(spec.extra_config)
    return config


def build_model_folder(
    folder: Path,
    spec: TinyModelSpec | None = None,
    tokenizer=None,
    quantize_bits: int | None = None,
) -> Path:
    """Create a tiny random model at `folder` (HF layout) and return the folder."""
    import importlib

    spec = spec or TinyModelSpec()
    tokenizer = tokenizer or train_tokenizer()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_tokenizer(folder, tokenizer)

    eos_token_id = tokenizer.token_to_id("<|im_end|>")
    config = _model_config(spec, tokenizer.get_vocab_size(), eos_token_id)
    architecture = importlib.import_module(f"mlx_lm.models.{spec.model_type}")  # public: one module per type
    mx.random.seed(spec.seed)
    model = architecture.Model(architecture.ModelArgs.from_dict(config))
    model.set_dtype(getattr(mx, spec.dtype))
    # Random init has tiny logits; scale the embedding so greedy choices are not near-ties.
    model.update({"model": {"embed_tokens": {"weight": model.model.embed_tokens.weight * 8}}})
    if quantize_bits:
        nn.quantize(model, group_size=32, bits=quantize_bits)
        config["quantization"] = {"group_size": 32, "bits": quantize_bits}
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(folder / "model.safetensors"), weights, metadata={"format": "mlx"})
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


@dataclass
class TinyFamily:
    """Paths of a set of tiny models built for one test session."""

    target: Path
    draft: Path
    target_qwen: Path
    draft_qwen_wide: Path
    other_tokenizer: Path


def build_tiny_family(root: Path) -> TinyFamily:
    """Build the standard set: a Llama target and draft sharing a tokenizer, a Qwen2 pair whose
    logits widths differ but whose tokenizer agrees, and a model with a different tokenizer."""
    root = Path(root)
    shared = train_tokenizer()
    other = train_tokenizer(vocab_size=380, seed_text="zebra quokka xylophone jackal\n" * 3)
    return TinyFamily(
        target=build_model_folder(
            root / "tiny-target",
            TinyModelSpec(hidden_size=96, num_hidden_layers=3, intermediate_size=192, seed=1),
            shared,
        ),
        draft=build_model_folder(root / "tiny-draft", TinyModelSpec(seed=2), shared),
        target_qwen=build_model_folder(
            root / "tiny-qwen-target",
            TinyModelSpec(model_type="qwen2", hidden_size=96, intermediate_size=192, seed=3,
                          vocab_padding=64),
            shared,
        ),
        draft_qwen_wide=build_model_folder(
            root / "tiny-qwen-draft",
            TinyModelSpec(model_type="qwen2", seed=4, vocab_padding=16),
            shared,
        ),
        other_tokenizer=build_model_folder(root / "tiny-other", TinyModelSpec(seed=5), other),
    )
