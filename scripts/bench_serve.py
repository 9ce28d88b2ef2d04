#!/usr/bin/env python3
"""How `mlxdraft serve` performs, on the offline SmolLM2 models (mlxdraft.offline prepare).

1. Overhead: the same setup and prompts through the server (streamed, timed by the client) and through
   `mlxdraft generate`'s library call in this process, alternating per prompt (A B A B ...). Decode tok/s
   ratio serve / generate, median over prompts; target >= 0.97. Both the engine's own decode figure (the
   answer's "mlxdraft" object) and the client's (tokens after the first chunk / their time) are shown.
2. Against `mlx_lm.server` (a subprocess with the same target and draft, the same openai client and
   prompts, both servers up and measured in alternating order): at temperature 0 and 0.7, with 1 and 4
   concurrent clients: throughput (completion tokens / s of wall time), p50 and p95 time to first token and
   request latency. Every request's prompt is new to the server (mlx_lm.server keeps a prompt cache, and
   would answer a repeated prompt without prefilling it); the chat template's shared opening may still be
   reused there, as in real use.
3. Memory: N requests in a row (200 by default); the server's resident memory after the first one and
   after the last.
4. Would batching pay? One forward pass of B sequences against B passes of one, for the target's verify
   width (k + 1 tokens) and the draft's (1 token), on a cache of the prompt's length, interleaved, medians.
   A ratio t(B) / t(1) near B means the machine is already busy with one sequence: batching the requests
   would not raise throughput; near 1, it could (up to B times).

Usage: python scripts/bench_serve.py [--quick] [--tiny] [--target fp16 --draft q8 --method draft -k 4]
       [--json results/bench-serve.json]
--target/--draft: a SmolLM2 variant (fp32, bf16, fp16, q8, q6, q4, q3; built offline on first use) or a
model folder. --quick (under a minute on a quiet machine): 2 prompts, 8 tokens, 2 requests per cell, 10 in
a row. --tiny: the test kit's tiny random models instead (seconds; checks the script, measures nothing
meaningful). The figures depend on the machine: run the full version on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.97
PROMPTS = [
    "Explain why the sky is blue in two sentences.",
    "Write a Python function that returns the n-th Fibonacci number.",
    "List three facts about the planet Mars.",
    "Summarize the plot of Romeo and Juliet in one paragraph.",
    "What is the difference between a list and a tuple in Python?",
    "Give me a short recipe for pancakes.",
    "Translate 'good morning, how are you?' into French and Spanish.",
    "Describe how a bicycle works to a child.",
]


class Server:
    """A server subprocess (mlxdraft serve or mlx_lm.server) on a free port, ready when /v1/models answers."""

    def __init__(self, name: str, command: list[str], port: int, model: str):
        self.name, self.port, self.model = name, port, model  # model: the name requests use
        self.url = f"http://127.0.0.1:{port}/v1"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.log = open(os.devnull, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        try:
            self._wait_until_ready(command)
        except BaseException:
            self.stop()  # never leave a server behind
            raise

    def _wait_until_ready(self, command: list[str]) -> None:
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.process.returncode}: {' '.join(command)}")
            try:  # /health: mlx_lm.server's /v1/models lists the Hugging Face cache, which may not exist
                with urllib.request.urlopen(f"{self.url.rsplit('/v1', 1)[0]}/health", timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{self.name} did not start in 180 s") from None
                time.sleep(0.3)

    def rss_mb(self) -> float:
        text = subprocess.run(["ps", "-o", "rss=", "-p", str(self.process.pid)], capture_output=True,
                              text=True).stdout.strip()
        return int(text) / 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_request(client, model: str, prompt: str, max_tokens: int, temp: float, seed: int) -> dict:
    """A streamed chat request timed by the client: time to the first text, to the last, the token count."""
    start = time.perf_counter()
    first = last = None
    chunks, extension, usage = 0, None, None
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                            max_tokens=max_tokens, temperature=temp, seed=seed, stream=True,
                                            stream_options={"include_usage": True})
    for chunk in stream:
        now = time.perf_counter()
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or now
            last = now
            chunks += 1
        extension = (chunk.model_extra or {}).get("mlxdraft") or extension
        usage = chunk.usage or usage
    end = time.perf_counter()
    tokens = usage.completion_tokens if usage else chunks
    return {"ttft_s": (first or end) - start, "latency_s": end - start, "tokens": tokens, "first_s": first,
            "last_s": last, "extension": extension}


def client_decode_tps(result: dict, first_round_tokens: int) -> float | None:
    """Tokens after the first round / the time from the first text chunk to the last: the client's view of
    decoding (at temperature 0 the rounds are the library run's, so its first round's size is used)."""
    if not result["first_s"] or not result["last_s"] or result["last_s"] <= result["first_s"]:
        return None
    return (result["tokens"] - first_round_tokens) / (result["last_s"] - result["first_s"])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def run_cell(server: Server, prompts: list[str], requests: int, concurrency: int, max_tokens: int,
             temp: float, cell: int = 0) -> dict:
    """`requests` streamed requests, `concurrency` at a time. Each prompt is new to the server ("Question
    <cell>.<i>: ..."), so that no server answers from a cache of an earlier identical prompt; the chat
    template's opening, shared by all, may still be reused by a server that caches prefixes (mlx_lm.server)."""
    import openai

    client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=600)
    jobs = [(f"Question {cell}.{i}: {prompts[i % len(prompts)]}", i) for i in range(requests)]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda job: one_request(client, server.model, job[0], max_tokens, temp, job[1]),
                                jobs))
    wall = time.perf_counter() - start
    ttft = [r["ttft_s"] for r in results]
    latency = [r["latency_s"] for r in results]
    return {"server": server.name, "temp": temp, "concurrency": concurrency, "requests": requests,
            "tokens": sum(r["tokens"] for r in results), "wall_s": wall,
            "throughput_tps": sum(r["tokens"] for r in results) / wall,
            "ttft_p50_s": percentile(ttft, 0.5), "ttft_p95_s": percentile(ttft, 0.95),
            "latency_p50_s": percentile(latency, 0.5), "latency_p95_s": percentile(latency, 0.95)}


def overhead(server: Server, target, draft, args, prompts: list[str]) -> dict:
    """Decode tok/s through the server and through the library, alternating per prompt."""
    import openai

    import mlxdraft

    client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=600)
    rows = []
    for index, prompt in enumerate(prompts * args.overhead_passes):
        order = ("serve", "generate") if index % 2 == 0 else ("generate", "serve")
        runs = {}
        for variant in order:
            if variant == "serve":
                runs[variant] = one_request(client, server.model, prompt, args.max_tokens, 0.0, 0)
            else:
                runs[variant] = mlxdraft.generate(target, prompt, draft=draft, method=args.method,
                                                  num_draft_tokens=args.k, max_tokens=args.max_tokens, temp=0.0)
        library, served = runs["generate"], runs["serve"]
        first_round = library.rounds[0].accepted + 1 if library.rounds else 1
        rows.append({"prompt": prompt, "generate_tps": library.decode_tps,
                     "serve_engine_tps": served["extension"]["decode_tps"],
                     "serve_client_tps": client_decode_tps(served, first_round),
                     "same_tokens": served["tokens"] == len(library.token_ids)})
    engine_ratios = [r["serve_engine_tps"] / r["generate_tps"] for r in rows
                     if r["serve_engine_tps"] and r["generate_tps"]]
    client_ratios = [r["serve_client_tps"] / r["generate_tps"] for r in rows
                     if r["serve_client_tps"] and r["generate_tps"]]
    return {"runs": rows, "engine_ratio_median": statistics.median(engine_ratios) if engine_ratios else None,
            "client_ratio_median": statistics.median(client_ratios) if client_ratios else None,
            "target_ratio": TARGET_RATIO}


def batch_probe(loaded, width: int, batch: int, context: int = 64, repeats: int = 10) -> dict:
    """Median seconds of one forward pass of `width` tokens for 1 sequence and for `batch` sequences, each on
    a cache of `context` tokens (rewound after every pass), the two interleaved."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

    seconds: dict[int, list[float]] = {1: [], batch: []}
    caches = {}
    for size in seconds:
        caches[size] = make_prompt_cache(loaded.model)
        mx.eval(loaded.model(mx.array([[7] * context] * size), cache=caches[size]))
    for repeat in range(repeats + 1):
        for size in seconds:
            tokens = mx.array([[11] * width] * size)
            start = time.perf_counter()
            mx.eval(loaded.model(tokens, cache=caches[size]))
            elapsed = time.perf_counter() - start
            trim_prompt_cache(caches[size], width)
            if repeat:
                seconds[size].append(elapsed)
    one, many = statistics.median(seconds[1]), statistics.median(seconds[batch])
    return {"width": width, "batch": batch, "one_s": one, "batch_s": many, "ratio": many / one}


def memory(server: Server, prompts: list[str], count: int, max_tokens: int) -> dict:
    import openai

    client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=600)
    one_request(client, server.model, prompts[0], max_tokens, 0.7, 0)
    start_mb = server.rss_mb()
    samples = []
    for index in range(count):
        one_request(client, server.model, prompts[index % len(prompts)], max_tokens, 0.7, index)
        if index % max(1, count // 10) == 0:
            samples.append(round(server.rss_mb(), 1))
    return {"requests": count, "rss_start_mb": start_mb, "rss_end_mb": server.rss_mb(), "rss_samples_mb": samples}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute) that checks it works")
    parser.add_argument("--tiny", action="store_true", help="the test kit's tiny models (checks the script only)")
    parser.add_argument("--target", default="fp16", help="SmolLM2 variant or model folder")
    parser.add_argument("--draft", default="q8", help="SmolLM2 variant or model folder")
    parser.add_argument("--method", default="draft")
    parser.add_argument("-k", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=16, help="requests per cell of the comparison")
    parser.add_argument("--in-a-row", type=int, default=200, help="requests for the memory check")
    parser.add_argument("--overhead-passes", type=int, default=2)
    parser.add_argument("--no-mlx-lm-server", action="store_true", help="skip the comparison with mlx_lm.server")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run, of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    args.only = {name.strip() for name in args.only.split(",") if name.strip()}
    if not args.only or args.only - set(SECTIONS):
        parser.error(f"--only takes sections of {', '.join(SECTIONS)}")
    prompts = PROMPTS
    if args.quick:
        prompts, args.max_tokens, args.requests, args.in_a_row, args.overhead_passes = PROMPTS[:2], 8, 2, 10, 1

    from mlxdraft.engines import get_engine

    engine = get_engine("mlx-lm")
    with tempfile.TemporaryDirectory() as folder:
        if args.tiny:
            from mlxdraft.testkit import build_tiny_family

            family = build_tiny_family(Path(folder))
            args.target, args.draft = str(family.target), str(family.draft)
        target_source = engine.resolve(model_folder(args.target))
        draft_source = engine.resolve(model_folder(args.draft))
        return measure(args, engine, target_source, draft_source, prompts)


def model_folder(name: str) -> str:
    """A SmolLM2 variant's folder (built offline on first use), or the folder given."""
    from mlxdraft import offline

    if name in offline.PRECISION_BY_VARIANT:
        return str(offline.prepare([name])[name])
    return name


SECTIONS = ("batching", "overhead", "compare", "memory")


def measure(args, engine, target_source, draft_source, prompts: list[str]) -> int:
    target, draft = engine.load(target_source), engine.load(draft_source)
    report: dict = {"setup": {"target": args.target, "draft": args.draft, "method": args.method, "k": args.k,
                              "max_tokens": args.max_tokens, "quick": args.quick},
                    "machine": engine.environment()["machine"]}
    if "batching" in args.only:
        print(f"Batching: one forward pass of 4 sequences against one of 1 ({args.method} k={args.k})", flush=True)
        report["batching"] = {"target_verify": batch_probe(target, args.k + 1, 4),
                              "draft_step": batch_probe(draft, 1, 4)}
        for role, probe in report["batching"].items():
            print(f"  {role}: {probe['width']} tokens x 1 sequence {probe['one_s'] * 1e3:.1f} ms, x {probe['batch']} "
                  f"sequences {probe['batch_s'] * 1e3:.1f} ms: {probe['ratio']:.2f}x the time for {probe['batch']}x "
                  "the work", flush=True)
    servers = []
    try:
        port = free_port()
        ours = Server("mlxdraft serve", [sys.executable, "-m", "mlxdraft", "serve", str(target_source.path),
                                         "--draft", str(draft_source.path), "--method", args.method, "-k", str(args.k),
                                         "--queue-size", "64", "--port", str(port)], port, str(target_source.path))
        servers.append(ours)
        if "overhead" in args.only:
            print(f"Overhead: {len(prompts) * args.overhead_passes} prompts, {args.max_tokens} tokens, T=0",
                  flush=True)
            report["overhead"] = overhead(ours, target, draft, args, prompts)
            show_overhead(report["overhead"])
        del target, draft
        engine.free_memory()
        if "compare" in args.only:
            if not args.no_mlx_lm_server:
                port = free_port()
                theirs = Server("mlx_lm.server", [sys.executable, "-m", "mlx_lm.server", "--model",
                                                  str(target_source.path), "--draft-model", str(draft_source.path),
                                                  "--num-draft-tokens", str(args.k), "--port", str(port)],
                                port, "default_model")
                servers.append(theirs)
            for server in servers:  # one unmeasured request each (mlx_lm.server loads its models on the first)
                run_cell(server, prompts[:1], 1, 1, 4, 0.0)
            print(f"Against mlx_lm.server: {args.requests} requests per cell, {args.max_tokens} tokens", flush=True)
            report["cells"] = []
            for index, (temp, concurrency) in enumerate([(0.0, 1), (0.0, 4), (0.7, 1), (0.7, 4)]):
                order = servers if index % 2 == 0 else servers[::-1]  # A B, B A, ...: drift hits both alike
                for server in order:
                    report["cells"].append(run_cell(server, prompts, args.requests, concurrency, args.max_tokens,
                                                    temp, cell=index + 1))
            report["cells"].sort(key=lambda c: (c["server"] != "mlxdraft serve", c["temp"], c["concurrency"]))
            show_cells(report["cells"])
        if "memory" in args.only:
            print(f"Memory: {args.in_a_row} requests in a row", flush=True)
            report["memory"] = mem = memory(ours, prompts, args.in_a_row, args.max_tokens)
            print(f"  resident memory {mem['rss_start_mb']:.0f} MB after the first request, {mem['rss_end_mb']:.0f} MB "
                  f"after the last ({mem['rss_end_mb'] - mem['rss_start_mb']:+.0f} MB)")
    finally:
        for server in servers:
            server.stop()
    return write(report, args.json)


def write(report: dict, path: str | None) -> int:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2))
        print(f"Wrote {path}")
    return 0


def show_overhead(result: dict) -> None:
    engine, client = result["engine_ratio_median"], result["client_ratio_median"]
    print(f"  decode tok/s, serve / mlxdraft generate (median of {len(result['runs'])} prompts): "
          f"engine's figure {engine:.3f}, client's {client:.3f} (target >= {TARGET_RATIO})" if engine and client
          else "  no decode figures (answers too short)", flush=True)


def show_cells(cells: list[dict]) -> None:
    print(f"\n{'server':<15} {'T':>4} {'clients':>7} {'req':>4} {'tok/s':>7} {'TTFT p50':>9} {'p95':>7} "
          f"{'latency p50':>12} {'p95':>7}")
    for c in cells:
        print(f"{c['server']:<15} {c['temp']:>4g} {c['concurrency']:>7} {c['requests']:>4} "
              f"{c['throughput_tps']:>7.1f} {c['ttft_p50_s']:>8.3f}s {c['ttft_p95_s']:>6.3f}s "
              f"{c['latency_p50_s']:>11.3f}s {c['latency_p95_s']:>6.3f}s")


def _exit_on_sigterm(number, frame):
    raise SystemExit(143)  # so that the servers started are stopped on the way out (finally blocks)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sys.exit(main())
