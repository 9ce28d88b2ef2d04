"""Real `mlxdraft serve` processes for the serve tests: started on a free loopback port (--port 0, the
URL read from the line the server prints when it listens), their stderr kept for inspection, stopped
with SIGINT; and raw HTTP requests, for bodies no well-behaved client would send."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "test-key-1234"


class ServerProcess:
    def __init__(self, args: list[str], home: Path, start_timeout_s: float = 120.0):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MLXDRAFT_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        env.pop("MLXDRAFT_API_KEY", None)
        self.process = subprocess.Popen([sys.executable, "-m", "mlxdraft", "serve", *map(str, args)], env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        self.lines: list[str] = []
        self.url: str | None = None
        ready = threading.Event()

        def read():
            for line in self.process.stderr:
                self.lines.append(line)
                if self.url is None and line.startswith("Serving ") and " at http://" in line:
                    self.url = line.split(" at ", 1)[1].split()[0]
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + start_timeout_s
        while not ready.wait(0.1):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not start:\n" + self.stderr)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    @property
    def base(self) -> str:
        """http://host:port, without /v1."""
        return self.url.rsplit("/v1", 1)[0]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def request(base: str, method: str, path: str, body: bytes | dict | None = None, headers: dict | None = None,
            timeout: float = 60.0) -> tuple[int, dict, object]:
    """(status, headers, parsed JSON or the raw text) of one request on a fresh connection."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    sent = {"Content-Type": "application/json", **(headers or {})}
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        raw = response.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed
    finally:
        connection.close()


def health(base: str) -> dict:
    return request(base, "GET", "/health")[2]
