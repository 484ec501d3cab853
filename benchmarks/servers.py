"""Start, wait for and stop the servers under test, all bound to 127.0.0.1 on free ports.

- riskserve: the real `bentoml serve service:RiskServe` through riskserve/devtools/server.py;
  the baseline (`--baseline REF`) the same from a worktree of REF (benchmarks/baseline.py).
- seed: the seed-style FastAPI app (benchmarks/seed_app.py) under `uvicorn --workers N`, in its
  own venv, loading a pickle of the same stored model version.
- mlserver: MLServer 1.7 with its xgboost / lightgbm runtimes on the stored native model files
  (model.ubj, model.txt), in its own venv, with `parallel_workers` = N.
- kserve: KServe's Python model server (benchmarks/kserve_app.py), one `kserve.Model` per
  booster, REST v2, `workers` = N.
- ray: Ray Serve (benchmarks/ray_app.py), one deployment with `num_replicas` = N of one CPU.

Every start is timed from process launch to ready (cold start), and RSS is read over the
server's whole process tree (per worker: that sum divided by N, what each unit of parallelism
costs, front processes included).

Peer venvs are built from the pinned lock files in benchmarks/ with `pip install --no-deps`
and reused while the lock file's hash is unchanged. Readiness waits until every worker of a
server has loaded its models (polled with a deadline), so no run measures a half-started server.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from riskserve.core.compiled import NATIVES_IMPORTED
from riskserve.core.scoring import ScoringModel
from riskserve.devtools import server as rs_server

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = REPO / ".cache" / "bench"
# Like riskserve's nthread=1: with N workers on N cores, one OpenMP thread per model call, so
# no server oversubscribes the cores (XGBoost and LightGBM default to one thread per core).
PEER_ENV = {"OMP_NUM_THREADS": "1"}
LOCKS = {"fastapi": HERE / "requirements-fastapi.txt",
         "mlserver": HERE / "requirements-mlserver.txt",
         "kserve": HERE / "requirements-kserve.txt",
         "ray": HERE / "requirements-ray.txt"}
# Peers that serve only the boosters (their runtimes take the native XGBoost/LightGBM files).
BOOSTER_FRAMEWORKS = ("xgboost", "lightgbm")


@dataclass
class Stored:
    """One production model version: loaded for riskserve's encoder, and its folder's files."""

    model: ScoringModel
    path: Path

    @property
    def framework(self) -> str:
        """The native framework (the compiled runtime riskserve may serve is not the peers')."""
        return self.model.native_adapter().framework

    @property
    def booster_file(self) -> tuple[str, Path]:
        """(framework, native model file) for the booster peers."""
        name = "model.ubj" if self.framework == "xgboost" else "model.txt"
        return self.framework, self.path / name


def boosters(models: dict[str, Stored]) -> dict[str, Stored]:
    """The models the tensor peers (MLServer, KServe, Ray Serve) can serve."""
    return {n: m for n, m in models.items() if m.framework in BOOSTER_FRAMEWORKS}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_venv(kind: str) -> Path:
    """The peer's venv bin/ directory, (re)built when its lock file changed."""
    lock = LOCKS[kind]
    venv = CACHE / f"{kind}-venv"
    stamp = venv / ".lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest:
        return venv / "bin"
    log(f"building the {kind} peer venv from {lock.relative_to(REPO)} (once; minutes)")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", "--no-deps", "-r", str(lock)],
                   check=True, timeout=1800)
    stamp.write_text(digest)
    return venv / "bin"


@dataclass
class Running:
    """A started server: its process group, endpoints and log."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    http_url: str
    grpc_target: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stopper: Callable[[], None] | None = None
    workers: int = 1
    started_at: float = field(default_factory=time.monotonic)
    cold_start_s: float = float("nan")  # process launch -> ready (every worker)

    def _tree(self) -> list[psutil.Process]:
        """The server and every process under it (workers, helpers); empty once it is gone."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _sum(self, measure: Callable[[psutil.Process], float]) -> float:
        tree = self._tree()
        if not tree:
            return float("nan")
        total = 0.0
        for p in tree:
            try:
                total += measure(p)
            except psutil.NoSuchProcess:  # a worker exited between listing and reading
                continue
        return total

    def rss_mb(self) -> float:
        """Resident memory of the whole process tree (parent, workers, helpers), in MiB."""
        return self._sum(lambda p: p.memory_info().rss) / 2**20

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the whole process tree."""
        return self._sum(lambda p: sum(p.cpu_times()[:2]))

    def rss_per_worker_mb(self) -> float:
        return self.rss_mb() / self.workers

    def processes(self) -> int:
        return len(self._tree())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.stopper is not None:
            self.stopper()
            return
        rs_server.stop_group(self.proc)


def _wait(running: Running, ready: Callable[[], bool], timeout_s: float = 120.0,
          cold_start: bool = True) -> None:
    """Poll `ready` with a deadline; fail with the log tail if the server dies or stalls.

    `cold_start`: record the time to ready as the server's cold start.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not running.alive():
            raise RuntimeError(f"{running.name} exited:\n{running.log_path.read_text()[-3000:]}")
        try:
            if ready():
                if cold_start:
                    running.cold_start_s = time.monotonic() - running.started_at
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)  # polling interval; readiness is what the loop checks
    running.stop()
    raise RuntimeError(f"{running.name} not ready after {timeout_s}s:\n"
                       f"{running.log_path.read_text()[-3000:]}")


# BentoML logs this once per worker and startup hook (riskserve has one hook per worker).
_HOOK_DONE = re.compile(r"Completed async startup hook: \w+")
_STARTUP_FAILED = "Application startup failed"


def precompile(root: Path) -> None:
    """Write the served tree's bytecode, as Python does on a first start anywhere that lets
    it: this machine sets PYTHONDONTWRITEBYTECODE=1, so every start would otherwise compile
    riskserve's ~9,400 lines again in the arbiter and in each worker (~0.35 s a process here),
    a cost a user's second start never pays. Incremental: unchanged files are skipped."""
    import compileall

    compileall.compile_dir(root / "riskserve", quiet=1)
    compileall.compile_file(root / "service.py", quiet=1)


def start_riskserve(workers: int, logs: Path, env: dict[str, str] | None = None,
                    key: str = "bench-key", baseline: Path | None = None,
                    name: str = "riskserve") -> Running:
    """`bentoml serve` on free ports; ready once /readyz is 200 and every worker's hook ran.

    `baseline`: serve the worktree at that path (benchmarks/baseline.py) instead of this
    checkout.
    """
    log_path = logs / f"{name}-w{workers}.log"
    precompile(baseline or REPO)
    t0 = time.monotonic()
    served = rs_server.start(log_path, env or {}, key=key, workers=workers, wait=False,
                             cwd=baseline or REPO)
    running = Running(name, served.proc, served.log, served.url,
                      f"127.0.0.1:{served.grpc_port}", served.headers, served.stop,
                      workers=workers, started_at=t0)

    def ready() -> bool:
        # /readyz answers once one worker is up; each worker logs its startup (gRPC) hook.
        text = served.log_text()
        if _STARTUP_FAILED in text:  # the arbiter lives on; the failed worker will not
            running.stop()
            raise RuntimeError(f"{name} failed to start:\n{text[-3000:]}")
        return (len(_HOOK_DONE.findall(text)) >= workers
                and httpx.get(f"{served.url}/readyz", timeout=2).status_code == 200)

    def warm() -> bool:
        # Serving already; measured cells start once the background imports are done too.
        return served.log_text().count(NATIVES_IMPORTED) >= workers

    _wait(running, ready)
    if baseline is None:
        _wait(running, warm, cold_start=False)
    return running


def write_seed_pickle(models: dict[str, Stored], path: Path) -> None:
    """What a seed project shipped: the estimator pickled, plus the encoder's tables.

    XGBoost as an XGBClassifier and scikit-learn estimators as fitted (the forest keeps the
    n_jobs it was trained with), so the seed app calls predict_proba on a pandas frame;
    LightGBM as its Booster.
    """
    import lightgbm as lgb
    import xgboost as xgb

    bundle: dict[str, Any] = {}
    for name, stored in models.items():
        m, model_dir = stored.model, stored.path
        if stored.framework == "xgboost":
            est: Any = xgb.XGBClassifier()
            est.load_model(str(model_dir / "model.ubj"))
        elif stored.framework == "lightgbm":
            est = lgb.Booster(model_file=str(model_dir / "model.txt"))
        else:
            est = m.native_adapter().estimator  # type: ignore[attr-defined]
        bundle[name] = {
            "model": est,
            "features": list(m.spec.feature_names),
            "vocabularies": m.encoder.vocabularies,
            "target_maps": m.encoder.target_maps,
            "target_priors": m.encoder.target_priors,
        }
    path.write_bytes(pickle.dumps(bundle))


def start_seed(workers: int, pickle_path: Path, logs: Path) -> Running:
    """uvicorn --workers N serving benchmarks/seed_app.py from the FastAPI venv."""
    bin_dir = ensure_venv("fastapi")
    port = rs_server.free_port()
    ready_dir = CACHE / "seed-ready"
    ready_dir.mkdir(parents=True, exist_ok=True)
    for f in ready_dir.iterdir():
        f.unlink()
    log_path = logs / f"seed-w{workers}.log"
    # `python -m` from cwd=REPO puts the repository on sys.path: no PYTHONPATH needed.
    env = {**os.environ, **PEER_ENV, "BENCH_SEED_PICKLE": str(pickle_path),
           "BENCH_SEED_READY_DIR": str(ready_dir)}
    t0 = time.monotonic()
    proc = subprocess.Popen(
        # benchmarks.seed_serve is `uvicorn` with TCP_NODELAY restored (see its docstring).
        [str(bin_dir / "python"), "-m", "benchmarks.seed_serve", "benchmarks.seed_app:app",
         "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        cwd=REPO, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    running = Running("seed", proc, log_path, f"http://127.0.0.1:{port}", workers=workers,
                      started_at=t0)

    def ready() -> bool:
        return (len(list(ready_dir.iterdir())) >= workers
                and httpx.get(f"{running.http_url}/openapi.json", timeout=2).status_code == 200)

    _wait(running, ready)
    return running


def write_mlserver_repo(models: dict[str, Stored], root: Path, workers: int,
                        http_port: int, grpc_port: int, metrics_port: int) -> None:
    """settings.json + one model-settings.json per model, pointing at the stored model files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "settings.json").write_text(json.dumps({
        "debug": False, "host": "127.0.0.1", "http_port": http_port, "grpc_port": grpc_port,
        "metrics_port": metrics_port, "parallel_workers": workers,
        "model_repository_root": str(root), "load_models_at_startup": True,
        "metrics_dir": str(root / ".metrics"), "environments_dir": str(root / ".envs"),
    }, indent=1))
    for name, stored in boosters(models).items():
        framework, uri = stored.booster_file
        impl = {"xgboost": "mlserver_xgboost.XGBoostModel",
                "lightgbm": "mlserver_lightgbm.LightGBMModel"}[framework]
        folder = root / name
        folder.mkdir(exist_ok=True)
        (folder / "model-settings.json").write_text(json.dumps({
            "name": name, "implementation": impl,
            "parameters": {"uri": str(uri), "version": stored.model.version},
        }, indent=1))


def start_mlserver(workers: int, models: dict[str, Stored], logs: Path) -> Running:
    bin_dir = ensure_venv("mlserver")
    http_port, grpc_port, metrics_port = (rs_server.free_port() for _ in range(3))
    root = CACHE / "mlserver-repo"
    write_mlserver_repo(models, root, workers, http_port, grpc_port, metrics_port)
    log_path = logs / f"mlserver-w{workers}.log"
    t0 = time.monotonic()
    proc = subprocess.Popen([str(bin_dir / "mlserver"), "start", str(root)], cwd=root,
                            env={**os.environ, **PEER_ENV},
                            stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    running = Running("mlserver", proc, log_path, f"http://127.0.0.1:{http_port}",
                      f"127.0.0.1:{grpc_port}", workers=workers, started_at=t0)
    _wait(running, lambda: _v2_models_ready(running.http_url, boosters(models)))
    return running


def _v2_models_ready(url: str, models: dict[str, Stored]) -> bool:
    return all(httpx.get(f"{url}/v2/models/{n}/ready", timeout=2).status_code == 200
               for n in models)


def _booster_manifest(models: dict[str, Stored], path: Path) -> Path:
    """{name: {framework, path}} for the KServe and Ray Serve apps (they import no riskserve)."""
    entries = {}
    for name, stored in boosters(models).items():
        framework, file = stored.booster_file
        entries[name] = {"framework": framework, "path": str(file)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=1))
    return path


def start_kserve(workers: int, models: dict[str, Stored], logs: Path) -> Running:
    """KServe's ModelServer (REST v2, gRPC off) with `workers` = N, in its own venv."""
    bin_dir = ensure_venv("kserve")
    port = rs_server.free_port()
    manifest = _booster_manifest(models, CACHE / "kserve-models.json")
    log_path = logs / f"kserve-w{workers}.log"
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(bin_dir / "python"), "-m", "benchmarks.kserve_app", "--models", str(manifest),
         "--http_port", str(port), "--workers", str(workers), "--enable_grpc", "false"],
        cwd=REPO, env={**os.environ, **PEER_ENV}, stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT, start_new_session=True)
    running = Running("kserve", proc, log_path, f"http://127.0.0.1:{port}", workers=workers,
                      started_at=t0)
    _wait(running, lambda: _v2_models_ready(running.http_url, boosters(models)))
    return running


def start_ray(workers: int, models: dict[str, Stored], logs: Path) -> Running:
    """Ray Serve, `num_replicas` = N of one CPU each, HTTP on 127.0.0.1, in its own venv."""
    bin_dir = ensure_venv("ray")
    port = rs_server.free_port()
    manifest = _booster_manifest(models, CACHE / "ray-models.json")
    ready_file = CACHE / "ray-ready"
    ready_file.unlink(missing_ok=True)
    log_path = logs / f"ray-w{workers}.log"
    # No usage stats (no network), no generated auth token in ~/.ray: a local benchmark.
    env = {**os.environ, **PEER_ENV, "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled"}
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(bin_dir / "python"), "-m", "benchmarks.ray_app", "--models", str(manifest),
         "--port", str(port), "--replicas", str(workers), "--ready", str(ready_file)],
        cwd=REPO, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    running = Running("ray", proc, log_path, f"http://127.0.0.1:{port}", workers=workers,
                      started_at=t0)
    _wait(running, ready_file.is_file, timeout_s=300.0)  # Ray starts a whole cluster
    return running


def start_floor(protocol: str, workers: int, logs: Path) -> Running:
    """benchmarks/floor.py's empty handler: grpc.aio ("grpc") or uvicorn ("http") with
    `workers` processes, from riskserve's own venv (the same grpcio, uvicorn and uvloop)."""
    port = rs_server.free_port()
    log_path = logs / f"floor-{protocol}-w{workers}.log"
    if protocol == "grpc":
        cmd = [sys.executable, "-m", "benchmarks.floor", "grpc", str(port), str(workers)]
    else:  # benchmarks.seed_serve: uvicorn with TCP_NODELAY restored under --workers
        cmd = [sys.executable, "-m", "benchmarks.seed_serve", "benchmarks.floor:app",
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
               "--loop", "uvloop", "--http", "httptools", "--no-access-log",
               "--log-level", "warning"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **PEER_ENV},
                            stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    running = Running(f"floor-{protocol}", proc, log_path, f"http://127.0.0.1:{port}",
                      f"127.0.0.1:{port}" if protocol == "grpc" else None, workers=workers,
                      started_at=t0)

    def ready() -> bool:
        if protocol == "grpc":
            return log_path.read_text().count("listening on") >= workers
        return httpx.post(running.http_url, content=b"{}", timeout=2).status_code == 200

    _wait(running, ready)
    return running
