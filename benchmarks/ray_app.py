"""The Ray Serve peer: one deployment scoring the stored XGBoost / LightGBM boosters.

Runs in its own venv (benchmarks/requirements-ray.txt) and imports nothing from riskserve.
A local Ray instance with `num_cpus = N` (no dashboard, usage stats off, everything on
127.0.0.1), one deployment with `num_replicas = N` replicas of one CPU each, behind Ray
Serve's HTTP proxy on 127.0.0.1. The request is the same Open Inference Protocol JSON body
MLServer and KServe get (one FP32 tensor [rows, F], already encoded by the client) at
POST /v2/models/<name>/infer, and the answer is an OIP-shaped JSON `predict` output, so the
benchmark checks and drives every tensor peer the same way.

    python -m benchmarks.ray_app --models models.json --port P --replicas N --ready FILE

`models.json` maps each model name to {"framework": "xgboost"|"lightgbm", "path": file}. The
script writes FILE once every replica is up, then serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse


def load_booster(framework: str, path: str) -> Any:
    """The native booster, one thread per call (workers/replicas are the parallelism)."""
    if framework == "xgboost":
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(path)
        booster.set_param({"nthread": 1})
        return booster
    import lightgbm as lgb

    return lgb.Booster(model_file=path, params={"num_threads": 1})


def score(framework: str, booster: Any, x: np.ndarray) -> np.ndarray:
    if framework == "xgboost":
        return np.asarray(booster.inplace_predict(x))
    return np.asarray(booster.predict(x, num_threads=1))


@serve.deployment
class Scorer:
    """Every model in one replica, as MLServer and KServe host them in one worker."""

    def __init__(self, models: dict[str, dict[str, str]]) -> None:
        self.models = {name: (m["framework"], load_booster(m["framework"], m["path"]))
                       for name, m in models.items()}

    async def __call__(self, request: Request) -> JSONResponse:
        parts = request.url.path.strip("/").split("/")  # v2/models/<name>/infer
        if len(parts) != 4 or parts[0] != "v2" or parts[3] != "infer":
            return JSONResponse({"error": "POST /v2/models/<name>/infer"}, status_code=404)
        if parts[2] not in self.models:
            return JSONResponse({"error": f"unknown model {parts[2]}"}, status_code=404)
        framework, booster = self.models[parts[2]]
        tensor = (await request.json())["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        p = score(framework, booster, x)
        return JSONResponse({"model_name": parts[2], "outputs": [
            {"name": "predict", "datatype": "FP32", "shape": list(p.shape),
             "data": p.ravel().tolist()}]})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--replicas", type=int, required=True)
    ap.add_argument("--ready", type=Path, required=True)
    args = ap.parse_args()
    models = json.loads(args.models.read_text())
    # Ray's socket paths must stay short (AF_UNIX limit), so its session lives under /tmp.
    temp_dir = tempfile.mkdtemp(prefix="rsbench-ray-")
    ray.init(num_cpus=args.replicas, include_dashboard=False, _node_ip_address="127.0.0.1",
             _temp_dir=temp_dir, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    app = Scorer.options(num_replicas=args.replicas,
                         ray_actor_options={"num_cpus": 1}).bind(models)
    serve.run(app, name="bench", route_prefix="/")

    stop = {"now": False}

    def on_term(signum: int, frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_term)
    args.ready.write_text(f"{os.getpid()}\n")
    while not stop["now"]:
        signal.pause()  # woken by SIGTERM: stop the Ray processes this driver started
    # Not serve.shutdown(): the group-wide SIGTERM has usually stopped Serve's controller
    # already, and that call then waits for it forever.
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
