"""The mlx-lm engine: every call into mlx and mlx-lm made while measuring lives here. It loads
models with `mlx_lm.load` (never with trust_remote_code), checks a pairing before gigabytes are
loaded, runs a method's rounds and reads the clock after each, and describes the machine."""

from __future__ import annotations

import contextlib
import functools
import math
import platform
import shlex
import time

from .. import distributed
from ..errors import IncompatibleModelsError, MlxdraftError, ModelNotFoundError
from ..measure import MeasureSettings, Trace, VerifyRound
from ..memory import WORKING_OVERHEAD, MemoryBudget, PairEstimate, estimate_pair, machine_memory_budget
from ..methods import Method
from ..prompts import Prompt, encode_prompt
from ..results import machine_info, package_version
from ..sources import ModelSource, check_model_folder, config_warnings, context_length, read_model_config, resolve_model
from .base import Capabilities, LoadedModel, describe_engine
from .mlx_loops import IMPLEMENTATIONS, MLX_LM_OWN, GenerationInputs, RunFunction


def _across_ranks(generate):
    """Under mlx.launch every rank runs the same generation over the sharded target: the ranks'
    emitted tokens are compared every few rounds and at the end (one error if they ever differ), a
    lost rank becomes one error, and every rank returns rank 0's timings, so that sweeps and races
    decide the same everywhere. In one process: the generation as it is."""

    @functools.wraps(generate)
    def wrapper(self, target, prompt_ids, settings, method, draft=None, num_draft_tokens=0, max_tokens=None,
                params=None, on_round=None):
        current = distributed.world()
        if not current.distributed:
            return generate(self, target, prompt_ids, settings, method, draft, num_draft_tokens, max_tokens,
                            params, on_round)
        check = distributed.TokenCheck(current)

        def checked(emitted):
            check.add(emitted)
            if on_round is not None:
                on_round(emitted)

        with _peer_errors(current):
            trace = generate(self, target, prompt_ids, settings, method, draft, num_draft_tokens, max_tokens,
                             params, checked)
            check.finish()
        return _leaders_timings(trace, current)

    return wrapper


def _leaders_timings(trace: Trace, current) -> Trace:
    """`trace` with rank 0's clock readings (its round ends, draft and target seconds, peak memory)."""
    nan = float("nan")
    values = distributed.broadcast_floats(
        [trace.peak_memory_gb, nan if trace.draft_s is None else trace.draft_s,
         nan if trace.target_s is None else trace.target_s, *trace.round_end_s], current)
    trace.peak_memory_gb = values[0]
    trace.draft_s = None if math.isnan(values[1]) else values[1]
    trace.target_s = None if math.isnan(values[2]) else values[2]
    trace.round_end_s = values[3:]
    return trace


@contextlib.contextmanager
def _peer_errors(current):
    """mlx raises RuntimeError from a collective whose peer is gone: say so once."""
    try:
        yield
    except RuntimeError as exc:
        raise distributed.PeerLostError(f"{current.where()} lost its connection to another rank ({exc}); that "
                                        "rank stopped or its machine is unreachable") from exc


def _leaders_seconds(time_forward):
    """time_forward across ranks: every rank runs the passes (their collectives included), and every
    rank returns rank 0's clock readings."""

    @functools.wraps(time_forward)
    def wrapper(self, loaded, context_ids, widths, repeats=5):
        current = distributed.world()
        if not current.distributed:
            return time_forward(self, loaded, context_ids, widths, repeats)
        distributed.all_sum_ints([1], current)  # start together: a rank arriving late is not timed as a pass
        with _peer_errors(current):
            seconds = time_forward(self, loaded, context_ids, widths, repeats)
        flat = distributed.broadcast_floats([s for n in widths for s in seconds[n]], current)
        return {n: flat[i * repeats:(i + 1) * repeats] for i, n in enumerate(widths)}

    return wrapper


class MlxLmEngine:
    """mlx + mlx-lm, in this process."""

    name = "mlx-lm"
    label = "MLX (mlx-lm)"
    extra = None  # a core dependency

    def __init__(self):
        self._tokenizers: dict[str, object] = {}  # folder -> tokenizer, loaded without weights
        self.implementations: dict[str, RunFunction] = dict(IMPLEMENTATIONS)
        self.sharded: set[str] = set()  # folders of targets split across the ranks (under mlx.launch)
        self.distributed_plan: distributed.DistributedPlan | None = None
        self.sharding_modes: dict[str, str] = {}  # folder -> "tensor" or "pipeline", for the sharded ones

    def distribute(self, plan: distributed.DistributedPlan, target_folders) -> None:
        """Under mlx.launch, after the preflight: these targets load sharded across the ranks (their
        drafts whole on every rank), and results record `plan`."""
        self.distributed_plan = plan
        self.sharded = {str(folder) for folder in target_folders}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(methods=tuple(self.implementations), forward_timing=True, memory_estimate=True,
                            peak_memory=True, sampling=("temp", "top_p", "top_k", "min_p", "seed"),
                            round_counts="per-round")

    def implement(self, key: str, run: RunFunction) -> RunFunction:
        """Run the method `key` with `run` (a generator of Rounds over GenerationInputs): how a method
        defined outside mlxdraft gets an mlx-lm implementation, in one line."""
        self.implementations[key] = run
        return run

    def describe(self) -> dict:
        return describe_engine(self)

    # -- what we run on ------------------------------------------------------------------------
    def environment(self) -> dict:
        import mlx.core as mx

        device = {"default_device": str(mx.default_device())}
        try:
            device.update({k: v for k, v in mx.device_info().items() if isinstance(v, (int, float, str))})
        except Exception:  # device_info is not available on every backend/version
            pass
        environment = {
            "machine": {**machine_info(), "mlx_device": device, "mlx_generation": generation_environment()},
            "versions": {"python": platform.python_version(),
                         **{name: package_version(name) for name in ("mlx", "mlx-lm", "huggingface-hub", "mlxdraft")}},
        }
        if self.distributed_plan is not None:
            environment["machine"]["distributed"] = self.distributed_plan.to_dict()
        return environment

    def memory_budget(self, override_gb: float | None = None) -> MemoryBudget:
        """On Apple silicon the GPU's recommended working set (what Metal lets models use without
        swapping); elsewhere total RAM; `override_gb` wins."""
        if override_gb is not None:
            return MemoryBudget(float(override_gb), "--memory-gb")
        try:
            import mlx.core as mx

            working_set = mx.device_info().get("max_recommended_working_set_size")
            if working_set:
                return MemoryBudget(working_set / 1e9, "Metal recommended working set")
        except Exception:  # device_info is missing on some backends and versions
            pass
        return machine_memory_budget()

    def supports(self, method: Method) -> bool:
        return method.key in self.implementations

    # -- files, before anything is loaded ----------------------------------------------------------
    def resolve(self, name: str, allow_download: bool = True, progress=None) -> ModelSource:
        return resolve_model(name, allow_download=allow_download, progress=progress)

    def tokenizer(self, source: ModelSource):
        """The tokenizer of a model folder alone (no weights), each folder once."""
        from mlx_lm.utils import load_tokenizer

        key = str(source.path)
        if key not in self._tokenizers:
            check_model_folder(source.path, source.name)
            try:
                self._tokenizers[key] = load_tokenizer(source.path)
            except MlxdraftError:
                raise
            except Exception as exc:  # transformers and tokenizers raise anything from OSError to TypeError
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ModelNotFoundError(
                    f"cannot read the tokenizer of {source.name} ({detail}); convert or download the model again"
                ) from exc
        return self._tokenizers[key]

    def check_tokenizers(self, target: ModelSource, draft: ModelSource) -> None:
        check_same_tokens(self.tokenizer(target), self.tokenizer(draft), target.name, draft.name)

    def encode(self, source: ModelSource, prompt: Prompt) -> list[int]:
        return encode_prompt(self.tokenizer(source), prompt)

    def context_length(self, source: ModelSource) -> int | None:
        return context_length(read_model_config(source.path, source.name))

    def estimate_memory(self, target: ModelSource, draft: ModelSource | None, positions: int):
        estimate = estimate_pair(target.path, draft.path if draft else None, positions)
        size = distributed.world().size
        if str(target.path) not in self.sharded or size == 1:
            return estimate
        share = estimate.target_weights_gb / size  # one rank's: its shard of the target, the draft whole
        overhead = (WORKING_OVERHEAD - 1) * (share + estimate.draft_weights_gb + estimate.kv_cache_gb)
        return PairEstimate(share, estimate.draft_weights_gb, estimate.kv_cache_gb, overhead)

    # -- models in memory --------------------------------------------------------------------------
    def load(self, source: ModelSource) -> LoadedModel:
        import mlx_lm

        current = distributed.world()
        sharded = current.distributed and str(source.path) in self.sharded
        error = None
        try:
            with callers_random_state():  # building the model draws initial weights from the global generator
                # a target to shard loads lazily: each rank reads only its shard's weights into memory
                model, tokenizer, config = mlx_lm.load(str(source.path), return_config=True, lazy=sharded)
            if sharded:
                self.sharding_modes[str(source.path)] = shard_model(model, current)
        except MlxdraftError as exc:
            error = exc
        except Exception as exc:  # mlx-lm raises ValueError/KeyError/OSError for unusable folders
            error = ModelNotFoundError(f"cannot load {source.name}: {exc}")
            error.__cause__ = exc
        if current.distributed:  # every rank loaded it, or every rank stops naming the one that could not
            distributed.agree(error, f"loading {source.name}", current)
        elif error is not None:
            raise error
        weights_bytes = sum(f.stat().st_size for f in source.path.glob("*.safetensors"))
        return LoadedModel(source, model, tokenizer, config, weights_bytes, config_warnings(config))

    def check_loaded(self, target: LoadedModel, draft: LoadedModel) -> None:
        if draft is not target:
            check_same_tokens(target.tokenizer, draft.tokenizer, target.name, draft.name)
        check_trimmable(target.model, target.name)
        check_trimmable(draft.model, draft.name)

    def pieces(self, loaded: LoadedModel) -> TokenPieces:
        """A decoder of emitted tokens into text pieces, as they arrive (mlx-lm's streaming detokenizer)."""
        return TokenPieces(loaded.tokenizer)

    def eos_token_ids(self, loaded: LoadedModel) -> set[int]:
        return set(loaded.tokenizer.eos_token_ids)

    def free_memory(self) -> None:
        """Give memory of models no longer referenced back before the next one loads."""
        import gc

        import mlx.core as mx

        gc.collect()
        mx.clear_cache()

    # -- one generation -----------------------------------------------------------------------------
    @_across_ranks
    def generate(self, target: LoadedModel, prompt_ids: list[int], settings: MeasureSettings, method: Method,
                 draft: LoadedModel | None = None, num_draft_tokens: int = 0, max_tokens: int | None = None,
                 params: dict | None = None, on_round=None) -> Trace:
        """Run `method` once and read the clock after every round. Stops at max-tokens, and at EOS
        unless the settings fix the length (the EOS token itself is kept, as mlx-lm does). The
        generation is seeded with settings.seed (mlx-lm's loops through MLX's global generator, as
        mlx_lm.generate is; the own loops through their own stream), and the global generator's
        state (the caller's) is given back afterwards. draft_s and target_s are the sums of the rounds'
        when every round measured them (draft_s stays None for a method without a draft model).
        Every generation runs as mlx_lm.generate runs one (`as_mlx_lm_generates`: the wired limit on
        Metal, mlx-lm's generation stream; the clock starts inside it, as stream_generate's does), and
        every loop prefills the prompt in chunks of mlx_lm.generate's step (`prefill_step_size`)."""
        import mlx.core as mx

        max_tokens = max_tokens or settings.max_tokens
        inputs = GenerationInputs(
            model=target.model, draft_model=draft.model if draft is not None else None, prompt=list(prompt_ids),
            max_tokens=max_tokens, num_draft_tokens=num_draft_tokens, sampling=settings.sampling,
            params={**method.defaults, **(params or {})}, seed=settings.seed, prefill_step_size=prefill_step_size(),
        )
        eos = set() if settings.fixed_length else set(target.tokenizer.eos_token_ids)
        tokens: list[int] = []
        sizes: list[int] = []
        ends: list[float] = []
        rounds: list[VerifyRound] = []
        draft_s, target_s = 0.0, 0.0
        finish_reason = "length"
        with callers_random_state(), as_mlx_lm_generates(target.model):
            mx.random.seed(settings.seed)  # mlx-lm's loops draw from the global generator, as mlx_lm.generate does
            mx.reset_peak_memory()
            start = time.perf_counter()
            steps = iter(self._implementation(method)(inputs))
            try:
                for step in steps:
                    now = time.perf_counter()
                    emitted = step.tokens[: max_tokens - len(tokens)]
                    stop = next((i for i, token in enumerate(emitted) if token in eos), None)
                    if stop is not None:
                        emitted = emitted[: stop + 1]
                        finish_reason = "stop"
                    tokens += emitted
                    sizes.append(len(emitted))
                    ends.append(now - start)
                    if method.uses_k:
                        complete = not step.limited and len(emitted) == step.accepted + 1
                        rounds.append(VerifyRound(step.proposed, min(step.accepted, len(emitted)), complete))
                    draft_s = None if draft_s is None or step.draft_s is None else draft_s + step.draft_s
                    target_s = None if target_s is None or step.target_s is None else target_s + step.target_s
                    if on_round is not None:
                        on_round(emitted)
                    if finish_reason == "stop" or len(tokens) >= max_tokens:
                        break
            finally:
                getattr(steps, "close", lambda: None)()  # a generator left early releases its caches now
        peak_memory_gb = mx.get_peak_memory() / 1e9
        return Trace(tokens, sizes, ends, rounds, peak_memory_gb, finish_reason,
                     draft_s if method.uses_k else None, target_s if method.uses_k else None,
                     token_texts=token_texts(target.tokenizer, tokens))  # after the clock: not timed

    def _implementation(self, method: Method) -> RunFunction:
        try:
            return self.implementations[method.key]
        except KeyError:
            raise MlxdraftError(f"the {self.name} engine does not run the {method.key} method") from None

    @_leaders_seconds
    def time_forward(self, loaded: LoadedModel, context_ids: list[int], widths: list[int],
                     repeats: int = 5) -> dict[int, list[float]]:
        """Seconds for one forward pass of n tokens (each n in `widths`) on top of a cache holding
        `context_ids`: the cost of a verify pass of width n (and, for a draft, of one token). The
        widths are interleaved within every repeat, after one unmeasured pass of each. Timed inside the
        same wired limit and generation stream as the generations, so the speedup model predicts them."""
        import mlx.core as mx
        from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

        with as_mlx_lm_generates(loaded.model):  # timed as the generations run: wired limit, generation stream
            cache = make_prompt_cache(loaded.model)
            mx.eval(loaded.model(mx.array(context_ids)[None], cache=cache))
            token = context_ids[-1]
            seconds: dict[int, list[float]] = {n: [] for n in widths}
            for repeat in range(repeats + 1):
                for n in widths:
                    inputs = mx.array([[token] * n])
                    start = time.perf_counter()
                    mx.eval(loaded.model(inputs, cache=cache))
                    elapsed = time.perf_counter() - start
                    trim_prompt_cache(cache, n)
                    if repeat:
                        seconds[n].append(elapsed)
        return seconds

    def time_communication(self, loaded: LoadedModel, widths: list[int],
                           repeats: int = 5) -> dict[int, list[float]] | None:
        """Seconds of the communication alone that one forward pass of n tokens makes across the ranks
        (each n in `widths`): for a tensor-parallel target, the two all-reduces of an (n x hidden)
        activation per layer (after attention and after the MLP, mlx-lm's `sharded-to-all` layers), in
        sequence, in the model's activation dtype. Every rank returns rank 0's clock readings. None
        when the target is not sharded, or sharded in pipeline stages (not measured)."""
        current = distributed.world()
        if not current.distributed or self.sharding_modes.get(str(loaded.source.path)) != "tensor":
            return None
        import mlx.core as mx

        inner = getattr(loaded.model, "model", loaded.model)
        layers = len(inner.layers)
        hidden = int(loaded.config.get("hidden_size") or loaded.config["text_config"]["hidden_size"])
        norm = getattr(inner, "norm", None)
        dtype = norm.weight.dtype if norm is not None and hasattr(norm, "weight") else mx.float16
        seconds: dict[int, list[float]] = {n: [] for n in widths}
        with _peer_errors(current):
            for repeat in range(repeats + 1):
                for n in widths:
                    x = mx.zeros((1, n, hidden), dtype=dtype)
                    mx.eval(x, mx.distributed.all_sum(mx.array(1.0), group=current.group))  # start together
                    start = time.perf_counter()
                    for _ in range(2 * layers):  # each waits for the one before, as in the forward pass
                        x = mx.distributed.all_sum(x, group=current.group)
                    mx.eval(x)
                    if repeat:
                        seconds[n].append(time.perf_counter() - start)
        flat = distributed.broadcast_floats([s for n in widths for s in seconds[n]], current)
        return {n: flat[i * repeats:(i + 1) * repeats] for i, n in enumerate(widths)}

    # -- outside mlxdraft ------------------------------------------------------------------------
    def commands(self, target: dict, draft: dict | None, method: Method, num_draft_tokens: int,
                 settings: dict, params: dict | None = None) -> list[str]:
        """Commands that use this setup (model records: repo id, else local path), with the
        sampling settings it was measured with: mlx-lm's own when it runs the method itself, else
        `mlxdraft generate` and `mlxdraft serve` (whose requests bring their own sampling)."""
        model = shlex.quote(target.get("repo_id") or target["path"])
        draft_model = shlex.quote(draft.get("repo_id") or draft["path"]) if draft else None
        sampling = _sampling_flags(settings)
        if method.key in MLX_LM_OWN:
            speculative = f" --draft-model {draft_model} --num-draft-tokens {num_draft_tokens}" if draft else ""
            return [f"mlx_lm.generate --model {model}{speculative}{sampling} --prompt 'Hello'",
                    f"mlx_lm.server --model {model}{speculative}{sampling}"]
        options = f" --draft {draft_model}" if draft_model else ""
        options += f" --method {method.key}" + (f" -k {num_draft_tokens}" if method.uses_k else "")
        for key, value in sorted((params or {}).items()):
            if value != method.defaults.get(key):
                options += f" --param {key}={value}"
        return [f"mlxdraft generate {model}{options}{sampling} --prompt 'Hello'",
                f"mlxdraft serve {model}{options}"]  # sampling comes with each request


def shard_model(model, current) -> str:
    """Split a lazily loaded model across the ranks with mlx-lm's own sharding, then read its weights:
    tensor parallel (`model.shard`) where the model has it, else pipeline stages. Returns the mode."""
    import mlx.core as mx

    if hasattr(model, "shard"):
        model.shard(current.group)
        mode = "tensor"
    elif hasattr(getattr(model, "model", None), "pipeline"):
        model.model.pipeline(current.group)
        mode = "pipeline"
    else:
        raise IncompatibleModelsError(f"mlx-lm cannot shard a {type(model).__module__} model across ranks")
    mx.eval(model.parameters())
    return mode


def _mlx_lm_generate_attribute(name: str):
    """The module mlx_lm.generate's `name` (the package's `mlx_lm.generate` is the function), read at
    call time (tests replace it), or None in mlx-lm versions without it."""
    import importlib

    try:
        module = importlib.import_module("mlx_lm.generate")
    except ImportError:
        return None
    return getattr(module, name, None)


@contextlib.contextmanager
def as_mlx_lm_generates(model):
    """The context mlx_lm.stream_generate runs every generation in (and mlx_lm.generate through it):
    mlx-lm's own `wired_limit(model, [generation_stream])`, which on Metal raises the wired-memory
    limit to the recommended working set for the generation and, after it, synchronizes the stream
    and sets the old limit back (elsewhere it does nothing); inside it, mlx-lm's `generation_stream`
    as the default stream, where its generate_step computes, so every method's work (mlx-lm's
    loops and the own ones alike) runs there. An mlx-lm without them: no limit, the default stream.
    The warning wired_limit prints to stdout for a model close to the working set becomes a Python
    warning instead (stderr, once: `--json | jq` stays valid and a sweep does not repeat it every run)."""
    import io
    import warnings

    import mlx.core as mx

    stream = _mlx_lm_generate_attribute("generation_stream")
    wired_limit = _mlx_lm_generate_attribute("wired_limit")
    with contextlib.ExitStack() as stack:
        if wired_limit is not None:
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                stack.enter_context(wired_limit(model, None if stream is None else [stream]))
            if printed.getvalue().strip():
                warnings.warn(f"mlx-lm: {printed.getvalue().strip()}", RuntimeWarning, stacklevel=3)
        if stream is not None:
            stack.enter_context(mx.stream(stream))
        yield


def prefill_step_size() -> int:
    """Prompt tokens per prefill chunk for every loop: mlx_lm.generate's DEFAULT_PREFILL_STEP_SIZE,
    which its command line and mlx_lm.server pass to generate_step and speculative_generate_step
    alike (the latter's own default, 512, is what only Python callers of stream_generate get)."""
    value = _mlx_lm_generate_attribute("DEFAULT_PREFILL_STEP_SIZE")
    return value if isinstance(value, int) and value > 0 else 2048


def generation_environment() -> dict:
    """How as_mlx_lm_generates runs every generation here, for the results file: the wired limit
    (bytes; None off Metal), the stream and mlx-lm's prefill step."""
    import mlx.core as mx

    try:
        working_set = mx.device_info().get("max_recommended_working_set_size")
    except Exception:  # device_info is not available on every backend/version
        working_set = None
    limit = None
    if _mlx_lm_generate_attribute("wired_limit") is None:
        wired = "none: this mlx-lm has no wired_limit"
    elif working_set:
        limit = int(working_set)
        wired = f"{limit} bytes (Metal's recommended working set), set by mlx-lm's wired_limit per generation"
    else:
        wired = "not Metal: mlx-lm's wired_limit sets none"
    stream = _mlx_lm_generate_attribute("generation_stream")
    return {"wired_limit": wired, "wired_limit_bytes": limit,
            "stream": "mlx-lm's generation_stream" if stream is not None else "the default stream",
            "prefill_step_size": prefill_step_size()}


class TokenPieces:
    """Each emitted token's piece of the text, read from mlx-lm's streaming detokenizer as the
    tokens arrive: the pieces joined are the generated text. Text the detokenizer holds back (part
    of a character, a lone space) comes with the token that completes it; an EOS token is ''."""

    def __init__(self, tokenizer):
        self.detokenizer = tokenizer.detokenizer  # a fresh copy per access
        self.eos = set(tokenizer.eos_token_ids)

    def add(self, token: int) -> str:
        if token in self.eos:
            return ""
        self.detokenizer.add_token(token)
        return self.detokenizer.last_segment  # reading it consumes it

    def finish(self) -> str:
        """The text still held back, which belongs to the last token."""
        self.detokenizer.finalize()
        return self.detokenizer.last_segment


@contextlib.contextmanager
def callers_random_state():
    """Give MLX's global random state back as it was on entry, whatever draws from it meanwhile
    (model loading initialises weights from it; mlx-lm's samplers draw from it)."""
    import mlx.core as mx

    high, low = mx.random.state[0].tolist()
    try:
        yield
    finally:
        mx.random.seed((high << 32) | low)  # a key is its seed's two 32-bit halves: this restores the state


def token_texts(tokenizer, token_ids: list[int]) -> list[str]:
    """Every token's piece of the text (TokenPieces), the held-back rest added to the last one."""
    pieces = TokenPieces(tokenizer)
    texts = [pieces.add(token) for token in token_ids]
    rest = pieces.finish()
    if texts and rest:
        texts[-1] += rest
    return texts


def _sampling_flags(settings: dict) -> str:
    text = ""
    if settings.get("temp"):
        text += f" --temp {settings['temp']:g}"
        if settings.get("top_p") not in (None, 0, 1, 1.0):
            text += f" --top-p {settings['top_p']:g}"
        if settings.get("top_k"):
            text += f" --top-k {settings['top_k']}"
        if settings.get("min_p"):
            text += f" --min-p {settings['min_p']:g}"
    return text


def _id_to_token(tokenizer) -> dict[int, str]:
    return {token_id: token for token, token_id in tokenizer.get_vocab().items()}


def check_same_tokens(target_tokenizer, draft_tokenizer, target_name="target", draft_name="draft") -> None:
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
