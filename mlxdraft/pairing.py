"""Whether a target and a draft can run speculative decoding together, checked before any
generation: same token texts for every id, same special tokens, and trimmable caches."""

from __future__ import annotations

from .errors import IncompatibleModelsError, MlxdraftError, ModelNotFoundError


def _id_to_token(tokenizer) -> dict[int, str]:
    return {token_id: token for token, token_id in tokenizer.get_vocab().items()}


def check_tokenizers(target_tokenizer, draft_tokenizer, target_name="target", draft_name="draft") -> None:
    """Raise IncompatibleModelsError unless both tokenizers map every id to the same text.

    The models' logits widths (config vocab_size) may differ, as in Qwen2.5 0.5B-3B vs 7B+:
    what matters is that the tokenizers agree, since token ids pass between the models.
    """
    target_vocab = _id_to_token(target_tokenizer)
    draft_vocab = _id_to_token(draft_tokenizer)
    for token_id in sorted(target_vocab.keys() | draft_vocab.keys()):
        target_text = target_vocab.get(token_id)
        draft_text = draft_vocab.get(token_id)
        if target_text != draft_text:
            raise IncompatibleModelsError(
                f"{draft_name} cannot draft for {target_name}: their tokenizers differ at token id "
                f"{token_id} ({target_text!r} in the target, {draft_text!r} in the draft); "
                "pick a draft from the same model family"
            )
    for label in ("bos_token", "eos_token"):
        target_special = getattr(target_tokenizer, label, None)
        draft_special = getattr(draft_tokenizer, label, None)
        if target_special != draft_special:
            raise IncompatibleModelsError(
                f"{draft_name} cannot draft for {target_name}: different {label.replace('_', ' ')} "
                f"({target_special!r} vs {draft_special!r}); pick a draft from the same model family"
            )


def check_trimmable(model, name: str) -> None:
    """Speculative decoding rewinds rejected tokens, so every cache layer must be trimmable."""
    from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache

    cache = make_prompt_cache(model)
    if not can_trim_prompt_cache(cache):
        kinds = sorted({type(layer).__name__ for layer in cache if not layer.is_trimmable()})
        raise IncompatibleModelsError(
            f"{name} keeps a prompt cache that cannot be rewound ({', '.join(kinds)}), which "
            "speculative decoding needs; use a model with a standard KV cache"
        )


class TokenizerCache:
    """Tokenizers loaded from model folders alone (no weights), each folder once."""

    def __init__(self):
        self._by_path: dict[str, object] = {}

    def get(self, source):
        """The tokenizer of a ModelSource; a folder it cannot come from is a ModelNotFoundError."""
        from mlx_lm.utils import load_tokenizer

        from .sources import check_model_folder

        key = str(source.path)
        if key not in self._by_path:
            check_model_folder(source.path, source.name)
            try:
                self._by_path[key] = load_tokenizer(source.path)
            except MlxdraftError:
                raise
            except Exception as exc:  # transformers and tokenizers raise anything from OSError to TypeError
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ModelNotFoundError(
                    f"cannot read the tokenizer of {source.name} ({detail}); convert or download the model again"
                ) from exc
        return self._by_path[key]


def check_sources(target_source, draft_source, tokenizers: TokenizerCache | None = None) -> None:
    """Tokenizer preflight from the folders (ModelSource), before gigabytes of weights are loaded."""
    tokenizers = tokenizers or TokenizerCache()
    check_tokenizers(tokenizers.get(target_source), tokenizers.get(draft_source), target_source.name,
                     draft_source.name)


def check_caches(target, draft) -> None:
    """The loaded-model half of the preflight (LoadedModel objects)."""
    check_trimmable(target.model, target.name)
    check_trimmable(draft.model, draft.name)


def check_pair(target, draft) -> None:
    """Full preflight for two LoadedModel objects."""
    check_tokenizers(target.tokenizer, draft.tokenizer, target.name, draft.name)
    check_caches(target, draft)
