"""One generation with any method, for people who want the text: `mlxdraft generate` and the
Python API `mlxdraft.generate`. Models may be names, folders or `(model, tokenizer)` pairs already
loaded with `mlx_lm.load`, so a caller can sample many times without loading again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .accepted import round_origins, token_origins
from .engines import DEFAULT_ENGINE, LoadedModel, get_engine
from .errors import InvalidInputError
from .measure import MeasureSettings, sample_from_trace
from .methods import Method, get_method
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
    finish_reason: str  # "stop" (EOS) or "length" (max_tokens)
    ttft_s: float  # from the call to the first token
    wall_s: float  # from the call to the last token
    decode_tps: float | None  # tokens after the first round / their time
    e2e_tps: float | None  # all tokens / wall time
    peak_memory_gb: float | None  # None when the engine does not measure it
    proposed_draft_tokens: int = 0  # complete rounds only, as in every mlxdraft figure
    accepted_draft_tokens: int = 0
    acceptance_rate: float | None = None  # accepted / proposed draft tokens
    draft_token_share: float | None = None  # emitted tokens that came from the draft / all emitted
    tokens_per_round: float | None = None
    draft_s: float | None = None  # time the draft model spent drafting (None: not measured, or no draft model)
    target_s: float | None = None  # time spent in the target's verify passes, when measured
    rounds: list[RoundStats] = field(default_factory=list)
    token_texts: list[str] = field(default_factory=list)  # each token's piece of `text`
    from_draft: list[bool] = field(default_factory=list)  # each token: an accepted draft token?

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
             on_text: Callable[[str], None] | None = None,
             on_token: Callable[[str, bool], None] | None = None) -> GenerationResult:
    """Generate from `prompt` (text, sent through the chat template when the tokenizer has one, or
    token ids) with `method`: "baseline" runs the target alone; "mlx-lm", "draft" and
    "draft-adaptive" take a `draft`; "prompt-lookup" needs none. Every round proposes
    min(num_draft_tokens, tokens left), as mlx-lm does, so k may exceed max_tokens. `on_text`
    receives the text as it is produced; `on_token(text, from_draft)` each token's piece of it and
    whether it was an accepted draft token (the last round's tokens come when the run ends, since
    only then is it known whether that round was cut short). The generation is seeded with
    `seed` (mlx-lm's loops through MLX's global generator, as `mlx_lm.generate`; the own loops
    through their own stream), and the global generator's state is given back afterwards, model
    loading included. Returns the
    token ids, the text and the per-round statistics."""
    chosen = get_method(method)
    if chosen.needs_draft and draft is None:
        raise InvalidInputError(f"the {method} method needs a draft model; pass draft=... (or --draft)")
    settings = MeasureSettings(max_tokens=max_tokens, warmup=0, temp=temp, top_p=top_p, top_k=top_k, min_p=min_p,
                               seed=seed, fixed_length=not stop_at_eos)
    settings.validate()
    k = num_draft_tokens if chosen.uses_k else 0
    if chosen.uses_k and k < 1:
        raise InvalidInputError(f"num_draft_tokens must be at least 1, got {k}")
    unknown = sorted(set(params or {}) - set(chosen.defaults))
    if unknown:
        known = ", ".join(chosen.defaults) or "none"
        raise InvalidInputError(f"{method} has no parameter {unknown[0]!r} (it has: {known})")
    chosen.checked_params(params)  # before anything loads
    backend = get_engine(engine)
    from .sweep import check_sampling

    check_sampling(settings, [backend])
    loaded_target = as_loaded(target, backend, "target", allow_download, progress)
    loaded_draft = as_loaded(draft, backend, "draft", allow_download, progress) if chosen.needs_draft else None
    if loaded_draft is not None:
        backend.check_loaded(loaded_target, loaded_draft)
    prompt_ids = _prompt_ids(backend, loaded_target, prompt)
    return generate_loaded(backend, loaded_target, prompt_ids, chosen, settings, loaded_draft, k, params,
                           on_text=on_text, on_token=on_token)


def generate_loaded(backend, target: LoadedModel, prompt_ids: list[int], method: Method, settings: MeasureSettings,
                    draft: LoadedModel | None = None, k: int = 0, params: dict | None = None,
                    on_text: Callable[[str], None] | None = None,
                    on_token: Callable[[str, bool], None] | None = None,
                    on_round: Callable[[list[int]], None] | None = None) -> GenerationResult:
    """`generate` for models already loaded and paired (check_loaded done once) and settings already
    checked: what a caller that generates many times (`mlxdraft serve`) runs per request. `on_round`,
    when given, sees each round's token ids before their text goes to `on_text`; an exception it
    raises ends the generation there and propagates."""
    _check_vocabulary(prompt_ids, [loaded for loaded in (target, draft) if loaded is not None])
    stream = _TokenStream(backend.pieces(target), method.uses_k, settings.max_tokens,
                          set() if settings.fixed_length else set(backend.eos_token_ids(target)), on_text, on_token)

    def each_round(tokens: list[int]) -> None:
        if on_round is not None:
            on_round(tokens)
        stream.on_round(tokens)

    trace = backend.generate(target, prompt_ids, settings, method, draft, k, params=params, on_round=each_round)
    origins = token_origins(len(trace.token_ids), trace.rounds if method.uses_k else None)
    stream.finish(origins)
    if stream.unknown:  # the engine streamed placeholders for ids it learnt only at the end (llama.cpp's held
        # tokens): the text streamed live may show U+FFFD there; the result is decoded again from the exact ids
        pieces = backend.pieces(target)
        stream.pieces = [pieces.add(token) for token in trace.token_ids]
        if stream.pieces:
            stream.pieces[-1] += pieces.finish()
    sample = sample_from_trace(trace, method.key, k, len(prompt_ids))
    return GenerationResult(
        text="".join(stream.pieces), token_ids=sample.token_ids, method=method.key, num_draft_tokens=k,
        prompt_tokens=len(prompt_ids), finish_reason=sample.finish_reason, ttft_s=sample.ttft_s,
        wall_s=sample.wall_s, decode_tps=sample.decode_tps, e2e_tps=sample.e2e_tps,
        peak_memory_gb=sample.peak_memory_gb, proposed_draft_tokens=sample.proposed_draft_tokens,
        accepted_draft_tokens=sample.accepted_draft_tokens, acceptance_rate=sample.acceptance_rate,
        draft_token_share=sample.draft_token_share, tokens_per_round=sample.tokens_per_round,
        draft_s=sample.draft_s, target_s=sample.target_s,
        rounds=[RoundStats(r.proposed, r.accepted, r.complete) for r in trace.rounds],
        token_texts=list(stream.pieces), from_draft=origins,
    )


class _TokenStream:
    """Passes the text on as the rounds come: to `on_text` at once; to `on_token` with each token's
    origin (accepted.round_origins), which for every round but the last is its accepted draft
    tokens and then the target's own. The last round (it reached max_tokens or an EOS) may have
    been cut short among the draft tokens, so its tokens wait for the trace's counts (`finish`)."""

    def __init__(self, pieces, speculative: bool, max_tokens: int, eos: set[int], on_text, on_token):
        self.decoder, self.speculative, self.max_tokens, self.eos = pieces, speculative, max_tokens, eos
        self.on_text, self.on_token = on_text, on_token
        self.pieces: list[str] = []
        self.sent = 0  # tokens passed to on_token
        self.unknown = False  # a round held a placeholder (a negative id) that the engine fills in after the run

    def on_round(self, tokens: list[int]) -> None:
        given = getattr(tokens, "texts", None)  # the engine's own text of each token (measure.RoundTokens)
        if given is not None and len(given) == len(tokens):
            texts = list(given)
        else:
            self.unknown = self.unknown or any(token < 0 for token in tokens)
            texts = [self.decoder.add(token) for token in tokens]
        self.pieces += texts
        if self.on_text and "".join(texts):
            self.on_text("".join(texts))
        last = len(self.pieces) >= self.max_tokens or (tokens and tokens[-1] in self.eos)
        if self.on_token and not (self.speculative and last):
            origins = round_origins(len(tokens), len(tokens) - 1) if self.speculative else [False] * len(tokens)
            self._send(texts, origins)

    def finish(self, origins: list[bool]) -> None:
        rest = self.decoder.finish()  # text held back, which belongs to the last token
        if self.on_token:
            self._send(self.pieces[self.sent:], origins[self.sent:])
            if rest and self.pieces:
                self.on_token(rest, origins[-1])
        if rest and self.pieces:
            self.pieces[-1] += rest
            if self.on_text:
                self.on_text(rest)

    def _send(self, texts: list[str], origins: list[bool]) -> None:
        for text, from_draft in zip(texts, origins):
            self.on_token(text, from_draft)
        self.sent += len(texts)


def _check_vocabulary(prompt_ids: list[int], models: list[LoadedModel]) -> None:
    """Refuse a prompt id the models cannot embed (an id past the embedding table crashes MLX)."""
    sizes = [size for size in map(_vocabulary_size, models) if size]
    if not sizes:
        return
    size = min(sizes)
    bad = next((token for token in prompt_ids if token >= size), None)
    if bad is not None:
        raise InvalidInputError(f"the prompt has token id {bad}, but the model's vocabulary has only {size} "
                                f"tokens (ids 0 to {size - 1})")


def _vocabulary_size(loaded: LoadedModel) -> int | None:
    """Rows of the model's embedding table: config vocab_size, else the model's own arguments."""
    size = (loaded.config or {}).get("vocab_size")
    if size is None:
        size = getattr(getattr(loaded.model, "args", None), "vocab_size", None)
    return int(size) if size else None


def _prompt_ids(backend, loaded: LoadedModel, prompt) -> list[int]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidInputError("the prompt is empty; give the text to generate from")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidInputError(f"the prompt has {len(prompt)} characters, more than the {MAX_PROMPT_CHARS} "
                                    "allowed; shorten it")
        if loaded.source.kind == "loaded":  # an (model, tokenizer) pair from mlx_lm.load: its own tokenizer
            return encode_prompt(loaded.tokenizer, Prompt(prompt))
        return backend.encode(loaded.source, Prompt(prompt))  # the engine's chat template and tokenizer
    ids = list(prompt)
    if not ids or not all(isinstance(i, int) and i >= 0 for i in ids):
        raise InvalidInputError("a prompt given as token ids must be a non-empty list of non-negative integers")
    return ids
