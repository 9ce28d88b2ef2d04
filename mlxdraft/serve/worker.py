"""The one thread that generates: requests wait in a bounded FIFO queue and run one at a time (MLX runs
one generation at a time here; see README "Serve the winner" for why there is no batching). Each
request becomes a `Job`; the worker sends its events (started, text, finished, failed) back through the
job's `deliver` callback, and stops a job at the next round when its client is gone or its time is up."""

from __future__ import annotations

import collections
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import MlxdraftError
from ..generation import generate_loaded
from ..measure import MeasureSettings, Trace, VerifyRound, sample_from_trace
from .protocol import DEFAULT_MAX_TOKENS, ApiError, CompletionRequest
from .setup import ServedModel

log = logging.getLogger("mlxdraft.serve")


# -- what the worker tells a request's handler -----------------------------------------------------------
@dataclass
class Started:
    queue_s: float  # seconds the request waited for the worker


@dataclass
class Text:
    text: str


@dataclass
class Finished:
    text: str
    finish_reason: str  # "stop" (EOS or a stop sequence) or "length" (max_tokens, or the request's time ran out)
    prompt_tokens: int
    completion_tokens: int
    extension: dict  # the request's speculative figures: the "mlxdraft" object of the answer


@dataclass
class Failed:
    error: ApiError


class QueueFull(Exception):
    def __init__(self, retry_after_s: int):
        super().__init__("the queue is full")
        self.retry_after_s = retry_after_s


@dataclass
class Job:
    request: CompletionRequest
    deliver: Callable[[object], None]  # thread-safe: hands an event to the request's handler
    timeout_s: float
    arrived: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)  # the client is gone

    @property
    def deadline(self) -> float:
        return self.arrived + self.timeout_s

    def cancel(self) -> None:
        self.cancelled.set()


class _Cancelled(Exception):
    """Raised from a round callback: the client disconnected."""


class _TimedOut(Exception):
    """Raised from a round callback: the request's time is up."""


class _StopSequence(Exception):
    """Raised from the text callback: the text reached a stop sequence."""


# -- the worker -----------------------------------------------------------------------------------------
class Worker:
    """One generation thread fed by a FIFO queue of at most `queue_size` waiting requests."""

    def __init__(self, served: ServedModel, queue_size: int, timeout_s: float,
                 default_max_tokens: int = DEFAULT_MAX_TOKENS):
        self.served, self.queue_size, self.timeout_s = served, queue_size, timeout_s
        self.default_max_tokens = default_max_tokens
        self.counts: collections.Counter = collections.Counter()  # completed, cancelled, timed_out, refused, failed
        self._jobs: collections.deque[Job] = collections.deque()
        self._durations: collections.deque[float] = collections.deque(maxlen=20)  # recent generation seconds
        self._condition = threading.Condition()
        self._current: Job | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="mlxdraft-generation", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait_s: float = 10.0) -> None:
        """Stop after the current round: the running job is cancelled, waiting ones are refused."""
        with self._condition:
            self._stopping = True
            if self._current is not None:
                self._current.cancel()
            waiting, self._jobs = list(self._jobs), collections.deque()
            self._condition.notify_all()
        for job in waiting:
            job.deliver(Failed(ApiError(503, "the server is shutting down", type="server_error", code="shutdown")))
        self._thread.join(wait_s)

    def submit(self, job: Job) -> None:
        """Queue `job`, or raise QueueFull when `queue_size` requests already wait behind the running one."""
        with self._condition:
            if self._stopping:
                raise QueueFull(self._retry_after_s(len(self._jobs)))
            busy = len(self._jobs) + (self._current is not None)
            if busy >= 1 + self.queue_size:
                self.counts["refused"] += 1
                raise QueueFull(self._retry_after_s(len(self._jobs)))
            self._jobs.append(job)
            self._condition.notify()

    def state(self) -> dict:
        with self._condition:
            return {"generating": self._current is not None, "waiting": len(self._jobs),
                    "queue_size": self.queue_size, **{key: self.counts[key] for key in
                                                      ("completed", "cancelled", "timed_out", "refused", "failed")}}

    def _retry_after_s(self, waiting: int) -> int:
        """Seconds until a place is likely free: the recent mean request time for each request ahead."""
        mean = sum(self._durations) / len(self._durations) if self._durations else 1.0
        return max(1, math.ceil(mean * (waiting + 1)))

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._jobs and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                job = self._current = self._jobs.popleft()
            started = time.monotonic()
            try:
                self._serve(job)
            finally:
                with self._condition:
                    self._current = None
                    self._durations.append(time.monotonic() - started)

    def _cancelled(self, job: Job) -> None:
        """A job whose client left (or that shutdown stopped): counted, and its handler told."""
        self.counts["cancelled"] += 1
        job.deliver(Failed(ApiError(503, "the request was cancelled", type="server_error", code="cancelled")))

    def _serve(self, job: Job) -> None:
        if job.cancelled.is_set():
            self._cancelled(job)
            return
        now = time.monotonic()
        if now > job.deadline:
            self.counts["timed_out"] += 1
            job.deliver(Failed(ApiError(503, f"the request waited {now - job.arrived:.0f} s for the server, past "
                                             f"its {self.timeout_s:g} s limit; try again later", type="server_error",
                                        code="timeout", headers={"Retry-After": str(self._retry_after_s(0))})))
            return
        job.deliver(Started(now - job.arrived))
        try:
            finished = run_job(self.served, job, self.default_max_tokens)
        except _Cancelled:
            self._cancelled(job)
            return
        except ApiError as exc:
            self.counts["failed"] += 1
            job.deliver(Failed(exc))
            return
        except MlxdraftError as exc:  # a request the models cannot run (for example a token id past the vocabulary)
            self.counts["failed"] += 1
            job.deliver(Failed(ApiError(400, str(exc))))
            return
        except Exception:  # a bug: logged here, never shown to the client
            log.exception("generation failed")
            self.counts["failed"] += 1
            job.deliver(Failed(ApiError(500, "the server failed to generate this answer; see its log",
                                        type="server_error", code="internal_error")))
            return
        self.counts["timed_out" if finished.extension["timed_out"] else "completed"] += 1
        job.deliver(finished)


# -- one job ---------------------------------------------------------------------------------------------
def run_job(served: ServedModel, job: Job, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> Finished:
    """Generate one request's answer with the served setup, streaming its text to `job.deliver`."""
    request = job.request
    room = (served.context_length - len(request.prompt_ids)) if served.context_length else None
    max_tokens = request.max_tokens or (min(default_max_tokens, room) if room else default_max_tokens)
    seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
    settings = MeasureSettings(max_tokens=max_tokens, warmup=0, temp=request.temp, top_p=request.top_p,
                               top_k=request.top_k, min_p=request.min_p, seed=seed, fixed_length=False)
    gate = TextGate(request.stop, lambda text: job.deliver(Text(text)))
    rounds = RoundLog(job)
    try:
        result = generate_loaded(served.engine, served.target, request.prompt_ids, served.method, settings,
                                 served.draft, served.k, served.setup.params, on_text=gate.feed,
                                 on_round=rounds.on_round)
    except (_StopSequence, _TimedOut) as exc:  # ended early: the figures come from the rounds seen
        timed_out = isinstance(exc, _TimedOut)
        gate.finish(stopped=not timed_out)
        sample = rounds.sample(served, settings, "length" if timed_out else "stop")
        return Finished(gate.text, "length" if timed_out else "stop", len(request.prompt_ids),
                        len(sample.token_ids), {**extension(served, sample, timed_out), "seed": seed})
    gate.finish(stopped=gate.stopped)
    return Finished(gate.text, "stop" if gate.stopped else result.finish_reason, len(request.prompt_ids),
                    len(result.token_ids), {**extension(served, result, False), "seed": seed})


def extension(served: ServedModel, figures, timed_out: bool) -> dict:
    """The "mlxdraft" object of an answer: the setup and this request's speculative figures. `figures` is
    a GenerationResult or a RunSample (both carry these fields)."""
    speculative = served.method.uses_k
    rounds = figures.rounds
    return {
        "method": served.method.key,
        "draft": served.setup.draft,
        "k": served.k if speculative else None,
        "proposed": figures.proposed_draft_tokens if speculative else None,
        "accepted": figures.accepted_draft_tokens if speculative else None,
        "acceptance": figures.acceptance_rate,
        "draft_token_share": figures.draft_token_share,
        "rounds": len(rounds) if speculative and rounds is not None else None,
        "decode_tps": figures.decode_tps,
        "ttft_s": figures.ttft_s,
        "wall_s": figures.wall_s,
        "timed_out": timed_out,
    }


class TextGate:
    """The answer's text on its way to the client: its end held back while it could still begin a stop
    sequence, and the text cut before the first stop sequence, which ends the generation."""

    def __init__(self, stop: list[str], emit: Callable[[str], None]):
        self.stop, self.emit = stop, emit
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.text = ""
        self.sent = 0  # characters passed to emit
        self.stopped = False

    def feed(self, piece: str) -> None:
        if self.stopped:
            return
        start = max(0, len(self.text) - self.hold)
        self.text += piece
        cuts = [index for index in (self.text.find(s, start) for s in self.stop) if index >= 0]
        if cuts:
            self.text = self.text[:min(cuts)]
            self.stopped = True
            self._send(len(self.text))
            raise _StopSequence
        self._send(len(self.text) - self._held())

    def _held(self) -> int:
        """Characters at the end that could still begin a stop sequence: the longest such tail."""
        for size in range(min(self.hold, len(self.text)), 0, -1):
            tail = self.text[-size:]
            if any(stop.startswith(tail) for stop in self.stop):
                return size
        return 0

    def finish(self, stopped: bool) -> None:
        self.stopped = stopped
        self._send(len(self.text))

    def _send(self, end: int) -> None:
        if end > self.sent:
            self.emit(self.text[self.sent:end])
            self.sent = end


class RoundLog:
    """What the engine emitted round by round and when, and the cancellation check before each round's
    tokens go on: a job whose client left, or whose time is up, ends at its next round."""

    def __init__(self, job: Job):
        self.job = job
        self.start = time.perf_counter()
        self.tokens: list[int] = []
        self.sizes: list[int] = []
        self.ends: list[float] = []

    def on_round(self, tokens: list[int]) -> None:
        if self.job.cancelled.is_set():
            raise _Cancelled
        if time.monotonic() > self.job.deadline:
            raise _TimedOut
        self.tokens += tokens
        self.sizes.append(len(tokens))
        self.ends.append(time.perf_counter() - self.start)

    def sample(self, served: ServedModel, settings: MeasureSettings, finish_reason: str):
        """The figures of a generation ended before the engine returned its trace: every round but the
        last emitted its accepted draft tokens and one of the target's own, so accepted = size - 1; a
        method that proposes k every round (fixed_k) proposed k in each round that had k + 1 tokens of
        room. The last round, and the rounds of methods whose proposals vary, count as partial (their
        proposals are unknown here)."""
        method, k = served.method, served.k
        rounds: list[VerifyRound] = []
        if method.uses_k:
            emitted = 0
            for index, size in enumerate(self.sizes):
                room = settings.max_tokens - emitted > k
                complete = method.fixed_k and room and index < len(self.sizes) - 1
                rounds.append(VerifyRound(k if complete else 0, size - 1 if complete else 0, complete))
                emitted += size
        trace = Trace(list(self.tokens), list(self.sizes), list(self.ends), rounds, 0.0, finish_reason)
        return sample_from_trace(trace, method.key, k, len(self.job.request.prompt_ids))
