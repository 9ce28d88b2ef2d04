"""The llama.cpp engine: llama-server in this process, through the `xllamacpp` wheel (the extra
`mlxdraft[llamacpp]`; prebuilt CPU wheels for Linux, Metal wheels for macOS).

What llama.cpp exposes, and what this engine reads (checked against the xllamacpp build it was
written with, llama.cpp b11549 inside xllamacpp 2026.10.11549):
- Speculation is a server setting, fixed when the server starts: `speculative.types`
  (DRAFT_SIMPLE with a draft GGUF and `draft.n_max` = k; NGRAM_SIMPLE with `ngram_simple.size_m`
  = k). Requests cannot change it (`speculative.n_max` in a request is ignored by this version) nor
  switch it off, so every (target, draft, method, k, parameters) gets its own server, and the
  baseline runs on a server of the target alone. Servers are kept until `free_memory()`.
- A streamed `/completion` with `return_tokens` and `timings_per_token` sends one event per
  emitted token: its id, its text, and llama.cpp's running totals `draft_n` (tokens proposed) and
  `draft_n_accepted`. A verify round shows as a step in those totals on the round's first token;
  the round then emits `accepted + 1` tokens. That gives exact per-round counts, so this engine's
  round_counts are "per-round"; the clock is read as each event arrives (time to first token, end
  of each round). In-process `Server.handle_completions` speaks the OpenAI format, whose stream
  carries no token ids once speculation is on, so requests go to the server's own HTTP endpoint,
  which xllamacpp binds to a free port on 127.0.0.1.
- llama.cpp samples the first token from the prompt's logits alone: that step is the prefill and
  is not a verify round. Near max-tokens llama.cpp proposes at most (tokens left - 1); such a round
  is `limited` and, as in the mlx-lm engine, left out of the round statistics.
- Memory is not measured (llama.cpp reports no per-request peak; the process's resident size would
  mix in everything else), so capabilities.peak_memory is False and peak_memory_gb is None (reports say "not measured").

`commands()` gives llama-server command lines for a setup; running them needs llama.cpp installed
(`brew install llama.cpp` on a Mac), not this wheel.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import platform
import shlex
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from ..catalog import split_parts
from ..errors import (
    IncompatibleModelsError,
    InvalidInputError,
    MissingDependencyError,
    MlxdraftError,
    ModelNotFoundError,
)
from ..measure import MeasureSettings, RoundTokens, Trace, VerifyRound
from ..memory import MemoryBudget, machine_memory_budget
from ..methods import Method
from ..prompts import Prompt
from ..results import machine_info, package_version
from ..sources import ModelSource, check_gguf_file, resolve_gguf
from .base import Capabilities, LoadedModel, describe_engine

EXTRA = "llamacpp"
INSTALL_HINT = f"pip install 'mlxdraft[{EXTRA}]'"
DRAFT_METHOD = "llama.cpp-draft"
NGRAM_METHOD = "llama.cpp-ngram"
SPEC_TYPES = {"baseline": "none", DRAFT_METHOD: "draft-simple", NGRAM_METHOD: "ngram-simple"}
CONTEXT_STEP = 512  # server contexts are sized in steps of this, so nearby requests share a server; small,
# since every setup's server holds a KV cache that size (the weights are memory-mapped and shared)
VOCAB_SIZE_SLACK = 128  # llama.cpp lets a draft's vocabulary be this much longer or shorter (padding)
REQUEST_TIMEOUT_S = 3600.0


def _xllamacpp():
    try:
        import xllamacpp
    except ImportError:
        raise MissingDependencyError(f"the llama.cpp engine needs xllamacpp; install it with {INSTALL_HINT}") from None
    return xllamacpp


def _gguf():
    try:
        import gguf
    except ImportError:
        raise MissingDependencyError(
            f"the llama.cpp engine reads GGUF files with the gguf package; install it with {INSTALL_HINT}"
        ) from None
    return gguf


# -- GGUF files ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GgufInfo:
    """What a GGUF file's header says, read without loading its weights."""

    path: Path
    architecture: str | None
    context_length: int | None
    file_type: str | None  # "q4_k_m", "f16", ... (general.file_type)
    tokens: tuple[str, ...]
    bos_token_id: int | None
    eos_token_id: int | None
    chat_template: str | None
    size_bytes: int
    tokenizer_model: str | None = None  # "gpt2" (byte-level BPE: Qwen, Llama 3, SmolLM2) or "llama" (SentencePiece)
    token_types: tuple[int, ...] = ()  # llama.cpp's token types (3: control, e.g. <|im_end|>)

    @property
    def eos_token_ids(self) -> set[int]:
        return {self.eos_token_id} if self.eos_token_id is not None else set()

    def config(self) -> dict:
        """The model record's config (LoadedModel.config): architecture and precision."""
        return {"model_type": self.architecture, "dtype": self.file_type or "unknown", "format": "gguf",
                "context_length": self.context_length}


def read_gguf(path: Path, name: str | None = None) -> GgufInfo:
    """The header of a GGUF file (the first part of a split one); ModelNotFoundError for a missing,
    foreign or damaged file."""
    shown = name or str(path)
    if not path.is_file():
        raise ModelNotFoundError(f"GGUF file {shown} does not exist; check the path")
    check_gguf_file(path, shown)
    gguf = _gguf()
    try:
        reader = gguf.GGUFReader(str(path))
        fields = reader.fields
    except Exception as exc:  # the reader raises ValueError, IndexError, struct errors... for damaged files
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(f"cannot read GGUF file {shown} ({detail}); download or convert it again") from exc

    def value(key):
        field_ = fields.get(key)
        if field_ is None:
            return None
        try:
            return field_.contents()
        except Exception:  # a field of an unexpected type reads as absent
            return None

    architecture = value("general.architecture")
    tokens = value("tokenizer.ggml.tokens")
    if not architecture or not tokens:
        raise ModelNotFoundError(f"GGUF file {shown} has no {'architecture' if not architecture else 'tokenizer'}; "
                                 "it is not a model llama.cpp can run")
    context = value(f"{architecture}.context_length")
    file_type = value("general.file_type")
    try:
        type_name = gguf.LlamaFileType(file_type).name.split("_", 1)[1].lower() if file_type is not None else None
    except ValueError:
        type_name = None
    return GgufInfo(path=path, architecture=str(architecture),
                    context_length=int(context) if isinstance(context, (int, float)) and context > 0 else None,
                    file_type=type_name, tokens=tuple(str(t) for t in tokens),
                    bos_token_id=_int_or_none(value("tokenizer.ggml.bos_token_id")),
                    eos_token_id=_int_or_none(value("tokenizer.ggml.eos_token_id")),
                    chat_template=value("tokenizer.chat_template") or None,
                    tokenizer_model=str(value("tokenizer.ggml.model") or "") or None,
                    token_types=tuple(int(t) for t in (value("tokenizer.ggml.token_type") or ())),
                    size_bytes=sum((path.parent / part).stat().st_size
                                   for part in split_parts(path.name) or [path.name]))


CONTROL_TOKEN = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL: rendered as no text, as llama-server's content does


def _byte_decoder() -> dict[str, int]:
    """Byte-level BPE's printable stand-ins (GPT-2's table: bytes that are not printable shift to 256+),
    character -> the byte it stands for."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1),
                 *range(ord("\xae"), ord("\xff") + 1)]
    table, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            table[chr(byte)] = byte
        else:
            table[chr(256 + shifted)] = byte
            shifted += 1
    return table


class GgufPieces:
    """Each emitted token's piece of the text, from the GGUF's own vocabulary (no server call): byte-level
    BPE pieces map back to bytes through GPT-2's table, SentencePiece pieces turn \u2581 into spaces and
    <0xNN> into bytes; the bytes are decoded incrementally as UTF-8, so a character split over tokens comes
    with the token that completes it. End-of-sequence and control tokens are ''. The same interface as
    the mlx-lm engine's TokenPieces (add, finish)."""

    _BYTES = None

    def __init__(self, info: GgufInfo):
        import codecs

        self.info = info
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        if GgufPieces._BYTES is None:
            GgufPieces._BYTES = _byte_decoder()

    def _bytes(self, token: int) -> bytes:
        piece = self.info.tokens[token] if 0 <= token < len(self.info.tokens) else ""
        if self.info.tokenizer_model == "llama":  # SentencePiece
            if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                return bytes([int(piece[3:5], 16)])
            return piece.replace("\u2581", " ").encode("utf-8")
        table = GgufPieces._BYTES
        return bytes(table[ch] for ch in piece if ch in table) if all(ch in table for ch in piece) \
            else piece.encode("utf-8")

    def add(self, token: int) -> str:
        types = self.info.token_types
        if token in self.info.eos_token_ids or (token < len(types) and types[token] == CONTROL_TOKEN):
            return ""
        return self.decoder.decode(self._bytes(token))

    def finish(self) -> str:
        return self.decoder.decode(b"", final=True)


def _int_or_none(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def check_same_vocabulary(target: GgufInfo, draft: GgufInfo, target_name: str = "target",
                          draft_name: str = "draft") -> None:
    """Raise IncompatibleModelsError unless the draft's token ids mean the target's: every id both
    files list maps to the same text, the lengths differ by padding at most (llama.cpp's own rule:
    128 ids), and the end-of-sequence token is the same."""
    family = "pick a draft from the same model family"
    if abs(len(target.tokens) - len(draft.tokens)) > VOCAB_SIZE_SLACK:
        raise IncompatibleModelsError(
            f"{draft_name} cannot draft for {target_name}: their vocabularies have {len(draft.tokens)} and "
            f"{len(target.tokens)} tokens; {family}")
    for token_id, (target_text, draft_text) in enumerate(zip(target.tokens, draft.tokens)):
        if target_text != draft_text:
            raise IncompatibleModelsError(
                f"{draft_name} cannot draft for {target_name}: their tokenizers differ at token id {token_id} "
                f"({target_text!r} in the target, {draft_text!r} in the draft); {family}")
    if target.eos_token_id != draft.eos_token_id:
        raise IncompatibleModelsError(
            f"{draft_name} cannot draft for {target_name}: different end-of-sequence tokens "
            f"({target.eos_token_id} vs {draft.eos_token_id}); {family}")


# -- reading llama.cpp's stream -------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenEvent:
    """One event of a streamed /completion: the tokens it carries, their text, when it arrived, and
    llama.cpp's running totals of proposed and accepted draft tokens at that point."""

    tokens: tuple[int, ...]
    text: str
    time_s: float
    drafted: int = 0
    accepted: int = 0
    predicted: int | None = None  # llama.cpp's running count of generated tokens (tokens_predicted)


@dataclass
class Step:
    """One target step as the stream shows it: the prefill's first token, a verify round (proposed
    > 0), or a plain decoding step where nothing was proposed."""

    proposed: int
    accepted: int
    limited: bool  # llama.cpp could propose fewer than k because max-tokens left less room
    tokens: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    end_s: float = 0.0

    @property
    def expected(self) -> int:
        return self.accepted + 1

    @property
    def complete(self) -> bool:
        return not self.limited and len(self.tokens) == self.expected


HIDDEN = -1  # a token llama.cpp generated but did not stream (see with_hidden_tokens)


def with_hidden_tokens(events):
    """llama-server holds back a token whose text ends inside a UTF-8 character and then streams only the
    last token of the held ones (with all of their text): its running count (tokens_predicted) shows how
    many were held. Each held token comes out here as HIDDEN, so that rounds and counts stay exact; the
    engine fills in their ids after the run."""
    seen = 0
    for event in events:
        held = event.predicted - seen - len(event.tokens) if event.predicted is not None else 0
        if held > 0:
            event = dataclasses.replace(event, tokens=(HIDDEN,) * held + event.tokens)
        seen += len(event.tokens)
        yield event


def group_steps(events, max_tokens: int, num_draft_tokens: int, on_step=None) -> list[Step]:
    """Group streamed token events into target steps (a generator of events is read as it comes).
    A step starts at the first token after the previous step's last; when llama.cpp's running total
    of proposed tokens has grown there, the step is a verify round that proposed the growth and
    accepted the growth of accepted tokens, and it emits accepted + 1 tokens. `on_step(tokens)` is
    called as soon as a step's last token has arrived."""
    steps: list[Step] = []
    drafted = accepted = 0
    emitted = 0
    for event in events:
        if not event.tokens:
            continue
        grown = event.drafted > drafted or event.accepted > accepted
        pieces = [""] * (len(event.tokens) - 1) + [event.text]  # the text arrives with the event's last token
        for token, piece in zip(event.tokens, pieces):
            if not steps or len(steps[-1].tokens) >= steps[-1].expected:
                proposed, kept = 0, 0
                if grown and steps:
                    proposed, kept = event.drafted - drafted, event.accepted - accepted
                    drafted, accepted, grown = event.drafted, event.accepted, False
                room = max_tokens - emitted - 1  # the most llama.cpp proposes with this many tokens left
                steps.append(Step(proposed, kept, limited=bool(steps) and room < num_draft_tokens))
            step = steps[-1]
            step.tokens.append(token)
            step.texts.append(piece)
            step.end_s = event.time_s
            emitted += 1
            if on_step is not None and len(step.tokens) == step.expected:
                on_step(RoundTokens(step.tokens, list(step.texts)))
        if grown:  # the totals grew on an event that started no step: the stream is not what this reads
            raise MlxdraftError("llama.cpp's stream reported proposed tokens that no round emitted; "
                                "this xllamacpp version streams differently from the one mlxdraft knows")
    if steps and on_step is not None and len(steps[-1].tokens) < steps[-1].expected:
        on_step(RoundTokens(steps[-1].tokens, list(steps[-1].texts)))  # the last step, cut short by end-of-sequence
    return steps


def trace_from_steps(steps: list[Step], speculative: bool, finish_reason: str) -> Trace:
    """The Trace of one generation: every step a round (for a speculative method, with its proposed and
    accepted counts; the first step, the prefill's token, proposed nothing)."""
    tokens = [token for step in steps for token in step.tokens]
    texts = [text for step in steps for text in step.texts]
    # llama.cpp samples the first token from the prompt's logits before any draft proposes: a round that proposed
    # nothing, counted as the mlx-lm engine counts a round whose proposer found nothing (prompt lookup). mlx-lm's
    # loops already propose in their first round, so llama.cpp's tokens per round are lower by that one round
    # per run: a real difference of the engine. The rounds cover every token (accepted.token_origins needs it)
    rounds = [VerifyRound(s.proposed, min(s.accepted, len(s.tokens)), s.complete) for s in steps] \
        if speculative else []
    return Trace(tokens, [len(s.tokens) for s in steps], [s.end_s for s in steps], rounds, None, finish_reason,
                 None, None, token_texts=texts)


# -- servers --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServerKey:
    target: str
    draft: str | None
    spec_type: str  # "none", "draft-simple", "ngram-simple"
    num_draft_tokens: int
    params: tuple  # sorted (name, value) pairs of the method's parameters
    n_ctx: int

    @property
    def setup(self) -> tuple:
        """Everything but the context size."""
        return (self.target, self.draft, self.spec_type, self.num_draft_tokens, self.params)


class LlamaServer:
    """One llama-server (xllamacpp.Server) in this process, and requests to its loopback endpoint."""

    def __init__(self, key: ServerKey, names: tuple[str, str | None]):
        xllamacpp = _xllamacpp()
        params = xllamacpp.CommonParams()
        params.model.path = key.target
        params.n_ctx = key.n_ctx
        params.n_parallel = 1  # one request at a time: the slot's whole context is this request's
        params.cache_ram_mib = 0  # no prompt cache between requests: every run prefills its prompt
        params.port = 0  # a free port on 127.0.0.1
        params.verbosity = -1  # llama.cpp's log stays quiet; errors come back as exceptions
        # threads: llama.cpp's own default (-1: its count of math cores; Metal does the work on a Mac)
        speculative = params.speculative
        values = dict(key.params)
        if key.spec_type == "draft-simple":
            speculative.types = [xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]
            speculative.draft.mparams.path = key.draft
            speculative.draft.n_max = key.num_draft_tokens
            speculative.draft.n_min = int(values["n_min"])
            speculative.draft.p_min = float(values["p_min"])
        elif key.spec_type == "ngram-simple":
            speculative.types = [xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE]
            speculative.ngram_simple.size_n = int(values["ngram_size"])
            speculative.ngram_simple.size_m = key.num_draft_tokens
            speculative.ngram_simple.min_hits = int(values["min_hits"])
        try:
            self.server = xllamacpp.Server(params)
        except Exception as exc:  # xllamacpp raises RuntimeError("Failed to init server...") for any failure
            models = names[0] + (f" with draft {names[1]}" if names[1] else "")
            raise ModelNotFoundError(f"llama.cpp cannot load {models} ({exc}); check that the GGUF files "
                                     "are complete and of an architecture this llama.cpp knows") from exc
        address = urllib.parse.urlsplit(self.server.listening_address)
        self.host, self.port = address.hostname or "127.0.0.1", address.port

    def connection(self) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
        connection.connect()
        return connection

    def post(self, path: str, body: dict) -> dict:
        connection = self.connection()
        try:
            connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise MlxdraftError(f"llama.cpp's {path} failed: {_error_message(data)}")
        return json.loads(data)

    def stream(self, body: dict, connection: http.client.HTTPConnection, start: float):
        """TokenEvents of a streamed /completion on an open connection, timed from `start`; the
        final event's summary (stop type, totals) is returned as the generator's value."""
        connection.request("POST", "/completion", json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            raise MlxdraftError(f"llama.cpp's /completion failed: {_error_message(response.read())}")
        while True:
            line = response.readline()
            now = time.perf_counter() - start
            if not line:
                raise MlxdraftError("llama.cpp's stream ended before its last event")
            line = line.strip()
            if not line.startswith(b"data: "):
                if line.startswith(b"error: "):
                    raise MlxdraftError(f"llama.cpp's /completion failed: {_error_message(line[7:])}")
                continue
            data = json.loads(line[6:])
            if "error" in data:
                raise MlxdraftError(f"llama.cpp's /completion failed: {_error_message(line[6:])}")
            timings = data.get("timings") or {}
            if data.get("stop"):
                if data.get("tokens") or data.get("tokens_predicted"):  # the last event may carry tokens, or
                    # count tokens held back to the end (a character left unfinished at max-tokens)
                    yield TokenEvent(tuple(data["tokens"]), data.get("content") or "", now,
                                     int(timings.get("draft_n") or 0), int(timings.get("draft_n_accepted") or 0),
                                     data.get("tokens_predicted"))
                return data
            yield TokenEvent(tuple(data.get("tokens") or ()), data.get("content") or "", now,
                             int(timings.get("draft_n") or 0), int(timings.get("draft_n_accepted") or 0),
                             data.get("tokens_predicted"))


def _error_message(data: bytes) -> str:
    try:
        parsed = json.loads(data)
        error = parsed.get("error", parsed)
        return str(error.get("message") or error) if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        return data.decode("utf-8", "replace").strip()[:300] or "no message"


# -- the engine -----------------------------------------------------------------------------------------
class LlamaCppEngine:
    """llama.cpp (llama-server), in this process through xllamacpp."""

    name = "llama.cpp"
    label = "llama.cpp"
    extra = EXTRA
    capabilities = Capabilities(
        methods=("baseline", DRAFT_METHOD, NGRAM_METHOD),
        forward_timing=False,  # llama-server cannot time one forward pass of n tokens
        memory_estimate=False,
        peak_memory=False,
        sampling=("temp", "top_p", "top_k", "min_p", "seed"),
        round_counts="per-round",  # read from the running totals on every streamed token
    )

    def __init__(self):
        self._files: dict[Path, GgufInfo] = {}
        self._servers: dict[ServerKey, LlamaServer] = {}

    def describe(self) -> dict:
        return describe_engine(self)

    def supports(self, method: Method) -> bool:
        return method.key in self.capabilities.methods

    # -- what we run on ------------------------------------------------------------------------
    def environment(self) -> dict:
        xllamacpp = _xllamacpp()
        devices = [{"name": d.get("name"), "description": d.get("description"),
                    "memory_total_gb": (d.get("memory_total") or 0) / 1e9} for d in xllamacpp.get_device_info()]
        return {
            "machine": {**machine_info(), "llama_cpp_devices": devices},
            "versions": {"python": platform.python_version(),
                         **{name: package_version(name) for name in ("xllamacpp", "gguf", "mlxdraft")}},
        }

    def memory_budget(self, override_gb: float | None = None) -> MemoryBudget:
        """The largest accelerator's memory as llama.cpp sees it (on a Mac, Metal's recommended
        working set); with none, total RAM; `override_gb` wins."""
        if override_gb is not None:
            return MemoryBudget(float(override_gb), "--memory-gb")
        xllamacpp = _xllamacpp()
        accelerators = [d for d in xllamacpp.get_device_info() if d.get("name") != "CPU" and d.get("memory_total")]
        if accelerators:
            best = max(accelerators, key=lambda d: d["memory_total"])
            return MemoryBudget(best["memory_total"] / 1e9, f"llama.cpp device {best['name']}")
        return machine_memory_budget()

    # -- files, before anything is loaded ----------------------------------------------------------
    def resolve(self, name: str, allow_download: bool = True, progress=None) -> ModelSource:
        """A GGUF model's file (a .gguf file, a folder holding one, or a GGUF short name; see
        `sources.resolve_gguf`), its header checked."""
        source = resolve_gguf(name, allow_download=allow_download, progress=progress)
        self.info(source.path, source.name)
        return source

    def info(self, path: Path, name: str | None = None) -> GgufInfo:
        path = Path(path)
        if path not in self._files:
            self._files[path] = read_gguf(path, name)
        return self._files[path]

    def check_tokenizers(self, target: ModelSource, draft: ModelSource) -> None:
        check_same_vocabulary(self.info(target.path, target.name), self.info(draft.path, draft.name),
                              target.name, draft.name)

    def encode(self, source: ModelSource, prompt: Prompt) -> list[int]:
        """The prompt as llama-server's chat endpoint sees it: the GGUF's chat template (its
        /apply-template), then its tokenizer (/tokenize, special tokens parsed and BOS added as the
        GGUF asks); a GGUF without a template gets the text alone."""
        info = self.info(source.path, source.name)
        server = self._server(source, None, "baseline", 0, {}, 0)
        if info.chat_template:
            text = server.post("/apply-template", {"messages": [{"role": "user", "content": prompt.text}]})["prompt"]
        else:
            text = prompt.text
        return [int(t) for t in server.post("/tokenize", {"content": text, "add_special": True,
                                                         "parse_special": True})["tokens"]]

    def context_length(self, source: ModelSource) -> int | None:
        return self.info(source.path, source.name).context_length

    # -- models in memory --------------------------------------------------------------------------
    def load(self, source: ModelSource) -> LoadedModel:
        """The GGUF's header, checked; llama.cpp loads the weights when a setup's server starts."""
        info = self.info(source.path, source.name)
        return LoadedModel(source, model=str(info.path), tokenizer=info, config=info.config(),
                           weights_bytes=info.size_bytes)

    def check_loaded(self, target: LoadedModel, draft: LoadedModel) -> None:
        if draft is not target:
            self.check_tokenizers(target.source, draft.source)

    def pieces(self, loaded: LoadedModel) -> GgufPieces:
        """A decoder of emitted tokens into text pieces, as they arrive (TokenPieces' interface)."""
        return GgufPieces(loaded.tokenizer)

    def eos_token_ids(self, loaded: LoadedModel) -> set[int]:
        return loaded.tokenizer.eos_token_ids

    def free_memory(self) -> None:
        """Stop every server (each holds its models and KV cache)."""
        import gc

        servers, self._servers = self._servers, {}
        servers.clear()
        gc.collect()

    def _server(self, target: ModelSource, draft: ModelSource | None, method_key: str, num_draft_tokens: int,
                params: dict, positions: int) -> LlamaServer:
        """The running server for this setup whose context holds `positions`; started when there is
        none, and then replacing one of the same setup with a context too small."""
        key = ServerKey(target=str(target.path), draft=str(draft.path) if draft else None,
                        spec_type=SPEC_TYPES[method_key], num_draft_tokens=num_draft_tokens,
                        params=tuple(sorted(params.items())), n_ctx=0)
        for running, server in list(self._servers.items()):
            if running.setup == key.setup:
                if running.n_ctx >= positions:
                    return server
                del self._servers[running]
        n_ctx = max(CONTEXT_STEP, -(-positions // CONTEXT_STEP) * CONTEXT_STEP)
        trained = self.info(target.path, target.name).context_length
        if trained and positions <= trained < n_ctx:
            n_ctx = trained
        key = dataclasses.replace(key, n_ctx=n_ctx)
        self._servers[key] = LlamaServer(key, (target.name, draft.name if draft else None))
        return self._servers[key]

    # -- one generation -----------------------------------------------------------------------------
    def generate(self, target: LoadedModel, prompt_ids: list[int], settings: MeasureSettings, method: Method,
                 draft: LoadedModel | None = None, num_draft_tokens: int = 0, max_tokens: int | None = None,
                 params: dict | None = None, on_round=None) -> Trace:
        """Run one streamed /completion of `prompt_ids` and read the clock as each token arrives.
        Stops at max-tokens, and at end-of-sequence unless the settings fix the length (llama.cpp's
        ignore_eos; the end-of-sequence token is kept, as the mlx-lm engine keeps it)."""
        if not self.supports(method):
            raise MlxdraftError(f"the {self.name} engine does not run the {method.key} method")
        max_tokens = max_tokens or settings.max_tokens
        values = method.checked_params(params) if method.key != "baseline" else {}
        k = num_draft_tokens if method.uses_k else 0
        if method.uses_k and k < 1:
            raise InvalidInputError(f"{method.key} needs a number of draft tokens (-k) of at least 1")
        if method.needs_draft and draft is None:
            raise InvalidInputError(f"{method.key} needs a draft model")
        if values.get("n_min", 0) > k:
            raise InvalidInputError(f"n_min ({values['n_min']}) cannot exceed -k ({k}): no proposal would be verified")
        positions = len(prompt_ids) + max_tokens + k + 1
        server = self._server(target.source, draft.source if method.needs_draft else None, method.key, k, values,
                              positions)
        request = {
            "prompt": [int(t) for t in prompt_ids], "n_predict": max_tokens, "stream": True,
            "return_tokens": True, "timings_per_token": True, "cache_prompt": False,
            "ignore_eos": settings.fixed_length, "seed": settings.seed,
            "temperature": settings.temp, "top_k": settings.top_k, "top_p": settings.top_p, "min_p": settings.min_p,
        }
        connection = server.connection()
        try:
            start = time.perf_counter()
            events = server.stream(request, connection, start)
            summary: dict = {}

            def read():
                summary.update((yield from events))

            steps = group_steps(with_hidden_tokens(read()), max_tokens, k, on_round)
        finally:
            connection.close()
        if not steps:
            raise MlxdraftError("llama.cpp returned no tokens")
        trace = trace_from_steps(steps, method.uses_k, "stop" if summary.get("stop_type") in ("eos", "word")
                                 else "length")
        _check_totals(trace, summary, method.uses_k)
        if HIDDEN in trace.token_ids:  # after the clock: the same request again, whole, for the held tokens' ids
            trace.token_ids = _fill_hidden(trace.token_ids, server.post("/completion", {**request, "stream": False}))
        return trace

    # -- outside mlxdraft ------------------------------------------------------------------------
    def commands(self, target: dict, draft: dict | None, method: Method, num_draft_tokens: int,
                 settings: dict, params: dict | None = None) -> list[str]:
        """llama-server with this setup (llama.cpp installed: `brew install llama.cpp`), and a request
        with the sampling settings it was measured with."""
        line = f"llama-server -m {shlex.quote(target['path'])}"
        values = {**method.defaults, **(params or {})}
        if method.key == DRAFT_METHOD and draft:
            line += (f" --spec-type draft-simple --spec-draft-model {shlex.quote(draft['path'])}"
                     f" --spec-draft-n-max {num_draft_tokens}")
            if values.get("p_min"):
                line += f" --spec-draft-p-min {values['p_min']:g}"
            if values.get("n_min"):
                line += f" --spec-draft-n-min {values['n_min']}"
        elif method.key == NGRAM_METHOD:
            line += (f" --spec-type ngram-simple --spec-ngram-simple-size-n {values['ngram_size']}"
                     f" --spec-ngram-simple-size-m {num_draft_tokens}")
            if values.get("min_hits", 1) != 1:
                line += f" --spec-ngram-simple-min-hits {values['min_hits']}"
        request = {"prompt": "Hello", "n_predict": settings.get("max_tokens", 128),
                   "temperature": settings.get("temp", 0)}
        if settings.get("temp"):
            request.update(top_p=settings.get("top_p", 1.0), top_k=settings.get("top_k", 0),
                           min_p=settings.get("min_p", 0.0), seed=settings.get("seed", 0))
        return [line, f"curl -s http://127.0.0.1:8080/completion -d {shlex.quote(json.dumps(request))}"]


def _fill_hidden(streamed: list[int], whole: dict) -> list[int]:
    """The streamed ids with each HIDDEN one taken from the same request run again without streaming (the
    same seed and settings: the same tokens), checked against every id the stream did show."""
    ids = [int(t) for t in whole.get("tokens") or ()]
    if len(ids) != len(streamed) or any(s != HIDDEN and s != t for s, t in zip(streamed, ids)):
        raise MlxdraftError("llama.cpp held back some token ids while streaming, and running the request again to "
                            "read them gave other tokens; this generation cannot be recorded exactly")
    return ids


def _check_totals(trace: Trace, summary: dict, speculative: bool) -> None:
    """The rounds read from the stream must add up to llama.cpp's own totals for the request."""
    timings = summary.get("timings") or {}
    predicted = summary.get("tokens_predicted")
    problems = []
    if predicted is not None and predicted != len(trace.token_ids):
        problems.append(f"{len(trace.token_ids)} tokens streamed, {predicted} predicted")
    if speculative:
        proposed = sum(r.proposed for r in trace.rounds)
        accepted = sum(r.accepted for r in trace.rounds)
        if (proposed, accepted) != (int(timings.get("draft_n") or 0), int(timings.get("draft_n_accepted") or 0)):
            problems.append(f"rounds add up to {proposed} proposed / {accepted} accepted, llama.cpp counted "
                            f"{timings.get('draft_n')} / {timings.get('draft_n_accepted')}")
    if problems:
        raise MlxdraftError("llama.cpp's stream does not add up (" + "; ".join(problems) + ")")
