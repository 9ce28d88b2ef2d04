"""One generation with any method, for people who want the text: `mlxdraft generate` and the
Python API `mlxdraft.generate`. Models may be names, folders or `(model, tokenizer)` pairs already
loaded with `mlx_lm.load`, so a caller can sample many times without loading again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .engines import DEFAULT_ENGINE, LoadedModel, get_engine
from .errors import InvalidInputError
from .measure import MeasureSettings, sample_from_trace
from .methods import get_method
from .prompts import MAX_PROMPT_CHARS, Prompt, encode_prompt
from .sources import ModelSource


@dataclass
class RoundStats:
    proposed: int  # draft tokens proposed
    accepted: int  # of which accepted
    complete: bool  # not cut short by max-tokens or EOS


@dataclass
class GenerationResult:
    """What one generation produced and how fast."""

    text: str
    token_ids: list[int]
    method: str
    num_draft_tokens: int
    prompt_tokens: int
    finish_reason: str  # "stop" (EOS) or "length"
    ttft_s: float  # from the call to the first token
    wall_s: float  # from the call to the last token
    decode_tps: float | None  # tokens after the first round / their time
    e2e_tps: float | None  # all tokens / wall time
    peak_memory_gb: float
    proposed_draft_tokens: int = 0  # complete rounds only, as in every mlxdraft figure
    accepted_draft_tokens: int = 0
    acceptance_rate: float | None = None  # accepted / proposed draft tokens
    draft_token_share: float | None = None  # emitted tokens that came from the draft / all emitted
    tokens_per_round: float | None = None
    draft_s: float | None = None  # time spent drafting, when the method measures it
    target_s: float | None = None  # time spent in the target's verify passes
    rounds: list[RoundStats] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def as_loaded(model, engine, role: str, allow_download: bool = True, progress=None) -> LoadedModel:
    """A LoadedModel from a name or folder (loaded now), a LoadedModel, or an `mlx_lm.load` pair."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, tuple) and len(model) == 2:
        module, tokenizer = model
        name = f"<loaded {role}>"
        return LoadedModel(ModelSource(name, Path(name), "loaded"), module, tokenizer, {}, 0)
    if isinstance(model, (str, Path)):
        return engine.load(engine.resolve(str(model), allow_download=allow_download, progress=progress))
    raise InvalidInputError(f"{role} must be a model name, a folder or a (model, tokenizer) pair from mlx_lm.load")


def generate(target, prompt: str | list[int], *, draft=None, method: str = "draft", num_draft_tokens: int = 4,
             temp: float = 0.0, top_p: float = 1.0, top_k: int = 0, min_p: float = 0.0, seed: int = 0,
             max_tokens: int = 128, params: dict | None = None, stop_at_eos: bool = True,
             engine: str = DEFAULT_ENGINE, allow_download: bool = True, progress=None,
             on_text: Callable[[str], None] | None = None) -> GenerationResult:
    """Generate from `prompt` (text, sent through the chat template when the tokenizer has one, or
    token ids) with `method`: "baseline" runs the target alone; "mlx-lm", "draft" and
    "draft-adaptive" take a `draft`; "prompt-lookup" needs none. `on_text` receives the text as it
    is produced. Returns the token ids, the text and the per-round statistics."""
    chosen = get_method(method)
    if chosen.needs_draft and draft is None:
        raise InvalidInputError(f"the {method} method needs a draft model; pass draft=... (or --draft)")
    settings = MeasureSettings(max_tokens=max_tokens, warmup=0, temp=temp, top_p=top_p, top_k=top_k, min_p=min_p,
                               seed=seed, fixed_length=not stop_at_eos)
    settings.validate()
    k = num_draft_tokens if chosen.uses_k else 0
    if chosen.uses_k and not 1 <= k <= max_tokens:
        raise InvalidInputError(f"num_draft_tokens must be between 1 and max_tokens ({max_tokens}), got {k}")
    unknown = sorted(set(params or {}) - set(chosen.defaults))
    if unknown:
        known = ", ".join(chosen.defaults) or "none"
        raise InvalidInputError(f"{method} has no parameter {unknown[0]!r} (it has: {known})")
    backend = get_engine(engine)
    loaded_target = as_loaded(target, backend, "target", allow_download, progress)
    loaded_draft = as_loaded(draft, backend, "draft", allow_download, progress) if chosen.needs_draft else None
    if loaded_draft is not None:
        backend.check_loaded(loaded_target, loaded_draft)
    prompt_ids = _prompt_ids(loaded_target.tokenizer, prompt)
    detokenizer = loaded_target.tokenizer.detokenizer
    detokenizer.reset()

    def on_round(tokens):
        for token in tokens:
            if token not in loaded_target.tokenizer.eos_token_ids:
                detokenizer.add_token(token)
        _emit(detokenizer, on_text)

    trace = backend.generate(loaded_target, prompt_ids, settings, chosen, loaded_draft, k, params=params,
                             on_round=on_round)
    detokenizer.finalize()
    _emit(detokenizer, on_text)
    sample = sample_from_trace(trace, chosen.key, k, len(prompt_ids))
    return GenerationResult(
        text=detokenizer.text, token_ids=sample.token_ids, method=chosen.key, num_draft_tokens=k,
        prompt_tokens=len(prompt_ids), finish_reason=sample.finish_reason, ttft_s=sample.ttft_s,
        wall_s=sample.wall_s, decode_tps=sample.decode_tps, e2e_tps=sample.e2e_tps,
        peak_memory_gb=sample.peak_memory_gb, proposed_draft_tokens=sample.proposed_draft_tokens,
        accepted_draft_tokens=sample.accepted_draft_tokens, acceptance_rate=sample.acceptance_rate,
        draft_token_share=sample.draft_token_share, tokens_per_round=sample.tokens_per_round,
        draft_s=sample.draft_s, target_s=sample.target_s,
        rounds=[RoundStats(r.proposed, r.accepted, r.complete) for r in trace.rounds],
    )


def _emit(detokenizer, on_text) -> None:
    segment = detokenizer.last_segment  # reading it consumes it
    if on_text and segment:
        on_text(segment)


def _prompt_ids(tokenizer, prompt) -> list[int]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidInputError("the prompt is empty; give the text to generate from")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidInputError(f"the prompt has {len(prompt)} characters, more than the {MAX_PROMPT_CHARS} "
                                    "allowed; shorten it")
        return encode_prompt(tokenizer, Prompt(prompt))
    ids = list(prompt)
    if not ids or not all(isinstance(i, int) and i >= 0 for i in ids):
        raise InvalidInputError("a prompt given as token ids must be a non-empty list of non-negative integers")
    return ids
