"""The bench's wrk load generator: every body reaches the server byte for byte, in turn, with
its headers; non-2xx answers are errors, not successes; latencies come back in milliseconds.

Runs only where Debian's `wrk` is installed (`make bench` installs it; the bench falls back to
aiohttp without it).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks import load

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")

BODIES = [b'{"rows": [{"a": 1}]}', b'{"b": "\\"quoted\\" \\\\ back\\nslash"}', bytes(range(256))]


@pytest.fixture()
def server() -> Iterator[tuple[str, Counter[bytes]]]:
    seen: Counter[bytes] = Counter()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            seen[body] += 1
            ok = self.headers.get("x-api-key") == "k" and body in BODIES[:2]
            self.send_response(200 if ok else 422)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/predict", seen
    finally:
        httpd.shutdown()


def test_wrk_sends_every_body_with_headers_and_counts_errors(
        server: tuple[str, Counter[bytes]]) -> None:
    url, seen = server
    result = asyncio.run(load.wrk_load(url, BODIES, {"x-api-key": "k"}, 2, 1.0, warmup_s=0))
    assert set(seen) == set(BODIES)  # all three, byte for byte (escaping, NUL, high bytes)
    assert max(seen.values()) - min(seen.values()) <= 2  # cycled in turn by each connection
    assert result.ok > 0 and result.errors["non-2xx"] > 0
    assert abs(result.errors["non-2xx"] - result.ok / 2) <= 0.1 * result.ok  # 1 body in 3 fails
    assert 0 < result.p50 <= result.p99 < 1000  # milliseconds


def test_remote_targets_are_refused() -> None:
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(load.wrk_load("http://example.com/", BODIES, {}, 1, 1.0, warmup_s=0))
