"""A small HTTP server on 127.0.0.1 that speaks the part of the Hugging Face Hub API that
huggingface_hub uses to list and download a model: repo info (with file sizes), the recursive
tree listing, and HEAD/GET on resolve URLs with commit and ETag headers and Range requests.

Repos are folders on disk. Faults for tests: break transfers of a file off at an offset, mark
repos gated, or lie about file sizes in the listing."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeHub:
    repos: dict[str, Path] = field(default_factory=dict)  # repo id -> folder
    gated: set[str] = field(default_factory=set)
    # "repo/file" -> [absolute byte offset, times]: the next `times` GETs of that file break off there
    cut_at: dict[str, list[int]] = field(default_factory=dict)
    size_lies: dict[str, int] = field(default_factory=dict)  # "repo/file" -> size reported in listings
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    url: str = ""

    def files(self, repo_id: str) -> dict[str, Path]:
        root = self.repos[repo_id]
        return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}

    def fetched(self) -> list[str]:
        """Paths of resolve requests, as 'repo/file'."""
        out = []
        for _, path, _ in self.requests:
            match = re.match(r"^/(.+?/.+?)/resolve/[^/]+/(.+)$", path)
            if match:
                out.append(f"{match.group(1)}/{match.group(2)}")
        return out


def _sha1_git(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _entry(hub: FakeHub, repo_id: str, name: str, path: Path) -> dict:
    data = path.read_bytes()
    size = hub.size_lies.get(f"{repo_id}/{name}", len(data))
    entry = {"type": "file", "path": name, "size": size, "oid": _sha1_git(data)}
    if name.endswith(".safetensors"):
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": size, "pointerSize": 134}
    return entry


def make_handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output clean
            pass

        def _send_json(self, payload, status=200, headers=None):
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _not_found(self, repo_id):
            self._send_json({"error": f"Repository {repo_id} not found"}, 404,
                            {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})

        def _gated(self, repo_id):
            self._send_json({"error": f"Access to model {repo_id} is restricted."}, 401,
                            {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access restricted"})

        def _handle(self):
            parsed = urlparse(self.path)
            path = unquote(parsed.path)
            hub.requests.append((self.command, path, self.headers.get("Range")))
            api = re.match(r"^/api/models/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+)(?:/.*)?)?$", path)
            if api:
                repo_id, kind = api.group(1), api.group(2)
                if repo_id not in hub.repos:
                    return self._not_found(repo_id)
                if repo_id in hub.gated:
                    return self._gated(repo_id)
                entries = [_entry(hub, repo_id, n, p) for n, p in hub.files(repo_id).items()]
                if kind == "tree":
                    return self._send_json(entries)
                siblings = [{"rfilename": e["path"], "size": e["size"], "blobId": e["oid"],
                             **({"lfs": {"sha256": e["lfs"]["oid"], "size": e["size"], "pointerSize": 134}}
                                if "lfs" in e else {})} for e in entries]
                return self._send_json({"id": repo_id, "modelId": repo_id, "sha": COMMIT, "private": False,
                                        "gated": False, "disabled": False, "tags": [], "downloads": 0,
                                        "likes": 0, "siblings": siblings})
            resolve = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
            if resolve:
                repo_id, _, name = resolve.groups()
                if repo_id not in hub.repos:
                    return self._not_found(repo_id)
                if repo_id in hub.gated:
                    return self._gated(repo_id)
                files = hub.files(repo_id)
                if name not in files:
                    return self._send_json({"error": "Entry not found"}, 404, {"X-Error-Code": "EntryNotFound"})
                data = files[name].read_bytes()
                entry = _entry(hub, repo_id, name, files[name])
                etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
                start = 0
                range_header = self.headers.get("Range")
                if range_header:
                    start = int(re.match(r"bytes=(\d+)-", range_header).group(1))
                body = data[start:]
                self.send_response(206 if range_header else 200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{etag}"')
                if "lfs" in entry:
                    self.send_header("X-Linked-Etag", f'"{etag}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(body)))
                if range_header:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if self.command == "HEAD":
                    return None
                cut = hub.cut_at.get(f"{repo_id}/{name}")
                if cut and cut[1] > 0:
                    cut[1] -= 1
                    self.wfile.write(body[: max(cut[0] - start, 0)])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                self.wfile.write(body)
                return None
            return self._send_json({"error": "unknown endpoint"}, 404)

        do_GET = _handle
        do_HEAD = _handle

    return Handler


class HubServer:
    """Runs a FakeHub on a free loopback port in a background thread."""

    def __init__(self, hub: FakeHub):
        self.hub = hub
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(hub))
        hub.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self.hub

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
