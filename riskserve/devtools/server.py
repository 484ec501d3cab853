"""Start and stop a real `bentoml serve` process for tests and benchmarks (loopback only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
BENTOML = Path(sys.executable).parent / "bentoml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A running service: its URLs, key and log file."""

    proc: subprocess.Popen[bytes]
    port: int
    grpc_port: int
    key: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop_group(self.proc)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a server's whole process group (workers too); SIGKILL it if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def start(log: Path, env: Mapping[str, str], key: str = "test-key", workers: int = 1,
          timeout_s: float = 90.0, wait: bool = True, cwd: Path = REPO) -> Served:
    """Launch `bentoml serve service:RiskServe` on free ports and poll /readyz until ready.

    Each server gets a BentoML home of its own that links to the shared model store: BentoML
    empties `$BENTOML_HOME/prometheus_multiproc_dir` when it starts, so two servers on one home
    would wipe each other's metrics. `cwd`: the checkout served (its service.py and riskserve
    package come first on sys.path), this one unless the bench serves an older commit.
    """
    port, grpc_port = free_port(), free_port()
    shared = Path(env.get("BENTOML_HOME", os.environ["BENTOML_HOME"]))
    env = {**env, "BENTOML_HOME": str(private_home(log.parent / f"{log.stem}-home", shared))}
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "RISKSERVE_API_KEYS": key,
                "RISKSERVE_GRPC_PORT": str(grpc_port), "RISKSERVE_GRPC_HOST": "127.0.0.1",
                "RISKSERVE_WORKERS": str(workers),
                **env}
    fh = log.open("wb")
    proc = subprocess.Popen(
        [str(BENTOML), "serve", "service:RiskServe", "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd, env=full_env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    served = Served(proc, port, grpc_port, key, log)
    if wait:
        wait_ready(served, timeout_s)
    return served


def private_home(home: Path, shared: Path) -> Path:
    """A BentoML home whose model store and production pointers are the shared ones."""
    home.mkdir(parents=True, exist_ok=True)
    (shared / "riskserve").mkdir(parents=True, exist_ok=True)
    (shared / "models").mkdir(parents=True, exist_ok=True)
    for part in ("models", "riskserve"):
        if not (home / part).exists():
            (home / part).symlink_to(shared / part)
    return home


def wait_ready(served: Served, timeout_s: float) -> None:
    """Poll /readyz with a deadline; fail with the log tail if the process dies or stalls."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if served.proc.poll() is not None:
            raise RuntimeError(f"bentoml serve exited ({served.proc.returncode}):\n"
                               f"{served.log_text()[-3000:]}")
        try:
            if httpx.get(f"{served.url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling interval, not synchronisation: the loop checks readiness
    served.stop()
    raise RuntimeError(f"service not ready after {timeout_s}s:\n{served.log_text()[-3000:]}")
