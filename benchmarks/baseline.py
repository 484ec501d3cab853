"""riskserve as of an older commit (`--baseline GIT_REF`), served next to the current checkout.

The ref is checked out once as a detached `git worktree` under .cache/bench/baseline-<sha> and
served by the same venv, from the same model store, with cwd = that worktree: `bentoml serve
service:RiskServe` then imports the worktree's service.py and its `riskserve` package (the
working directory comes first on sys.path; the editable install's finder is consulted after
it). Older refs kept their server helper under tests/, so the launch is done here rather than
through that ref's own code; everything else (env, ports, private BentoML home) matches
riskserve/devtools/server.py, so both sides run the same way.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from riskserve.devtools import server as rs_server

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "bench"


def resolve(ref: str) -> str:
    """The full commit id of `ref` (a clear error if it names no commit)."""
    out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                         cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"--baseline {ref!r}: not a commit in this repository")
    return out.stdout.strip()


def checkout(ref: str) -> tuple[Path, str]:
    """A worktree of `ref` (created once, reused), and the short commit id it holds."""
    sha = resolve(ref)
    path = CACHE / f"baseline-{sha[:12]}"
    if not (path / "service.py").is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "prune"], cwd=REPO, check=True)
        subprocess.run(["git", "worktree", "add", "--force", "--detach", str(path), sha],
                       cwd=REPO, check=True, capture_output=True)
    return path, sha[:12]


def start(root: Path, log: Path, env: dict[str, str], key: str, workers: int
          ) -> rs_server.Served:
    """`bentoml serve service:RiskServe` from `root` on free loopback ports (not waited for).

    TODO(lead): once riskserve/devtools/server.start takes a `cwd`, this is one call to it.
    """
    port, grpc_port = rs_server.free_port(), rs_server.free_port()
    shared = Path(env.get("BENTOML_HOME", os.environ["BENTOML_HOME"]))
    home = rs_server.private_home(log.parent / f"{log.stem}-home", shared)
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "RISKSERVE_API_KEYS": key,
                "RISKSERVE_GRPC_PORT": str(grpc_port), "RISKSERVE_GRPC_HOST": "127.0.0.1",
                "RISKSERVE_WORKERS": str(workers), **env, "BENTOML_HOME": str(home)}
    proc = subprocess.Popen(
        [str(rs_server.BENTOML), "serve", "service:RiskServe", "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=root, env=full_env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    return rs_server.Served(proc, port, grpc_port, key, log)
