"""A real Prometheus for tests: Debian's binary on 127.0.0.1, an ephemeral port, temp storage.

Used by tests/test_dashboards.py to check that every dashboard query parses, and meant for the
end-to-end test that scrapes a running service and expects each query to return series:

    with run_prometheus(tmp_path, scrape_targets=["127.0.0.1:3000"], rule_files=[RULES]) as prom:
        prom.query(panel_query.promql())
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

READY_TIMEOUT_S = 30.0


def require_binary(name: str) -> str:
    """Path of a Debian `prometheus` package binary, or a one-line failure saying what to run."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: run `make deps` (Debian package prometheus)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrometheusServer:
    """A running Prometheus: its base URL and its log (stdout and stderr)."""

    url: str
    log: Path

    def get(self, path: str, **params: str) -> dict[str, Any]:
        """GET an API path and return the JSON body, also for 4xx answers (status "error")."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as answer:
                return dict(json.load(answer))
        except urllib.error.HTTPError as error:
            # Prometheus answers a bad query with 400 and a JSON body naming the problem.
            return dict(json.loads(error.read() or b"{}"))

    def query(self, promql: str, time: str | None = None) -> dict[str, Any]:
        """An instant query through /api/v1/query."""
        params = {"query": promql} | ({"time": time} if time is not None else {})
        return self.get("/api/v1/query", **params)


def _config(
    scrape_targets: Sequence[str], rule_files: Sequence[Path], job: str, interval: str
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path.resolve()) for path in rule_files],
    }
    if scrape_targets:
        config["scrape_configs"] = [
            {"job_name": job, "static_configs": [{"targets": list(scrape_targets)}]}
        ]
    return config


@contextmanager
def run_prometheus(
    workdir: Path,
    *,
    scrape_targets: Sequence[str] = (),
    rule_files: Sequence[Path] = (),
    job: str = "riskserve",
    interval: str = "1s",
) -> Iterator[PrometheusServer]:
    """Start Prometheus in `workdir`, yield it once /-/ready answers, and always stop it.

    The default job name matches the rules' `job=~".*riskserve.*"` target selector.
    """
    binary = require_binary("prometheus")
    config = workdir / "prometheus.yml"
    # JSON is YAML, and needs no YAML library here.
    config.write_text(json.dumps(_config(scrape_targets, rule_files, job, interval)))
    log = workdir / "prometheus.log"
    port = _free_port()
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = PrometheusServer(f"http://127.0.0.1:{port}", log)
    try:
        _wait_ready(server, process)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(server: PrometheusServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        # Waiting on the process both paces the polling and notices an early exit (bad config,
        # port taken) instead of polling a dead server until the deadline.
        try:
            code = process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"prometheus exited with {code}:\n{server.log.read_text()[-2000:]}")
    raise TimeoutError(f"prometheus not ready after {READY_TIMEOUT_S}s:\n{server.log.read_text()}")
