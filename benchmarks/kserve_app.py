"""The KServe peer: KServe's Python model server around the stored XGBoost / LightGBM boosters.

Runs in its own venv (benchmarks/requirements-kserve.txt) and imports nothing from riskserve.
One `kserve.Model` per booster, loaded from the same native files riskserve stores (model.ubj,
model.txt), one thread per call; `kserve.ModelServer` serves the Open Inference Protocol REST
v2 (`POST /v2/models/<name>/infer`, one FP32 tensor [rows, F] encoded by the client, as
MLServer gets it) with `--workers N` uvicorn processes. Every other flag is KServe's own
(`--http_port`, `--enable_grpc`, ...).

Two changes to the stock server, both about the machine rather than KServe's speed: it binds
127.0.0.1 instead of the 0.0.0.0 KServe 0.21 hard-codes (kserve/protocol/rest/server.py), and
its multi-worker socket gets TCP_NODELAY back (the uvicorn bug benchmarks/seed_serve.py
describes; without it every keep-alive answer waits ~45 ms for a delayed ACK).

    python -m benchmarks.kserve_app --models models.json --http_port P --workers N

`models.json` maps each model name to {"framework": "xgboost"|"lightgbm", "path": file}.
"""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve import model_server as kserve_model_server

from benchmarks.seed_serve import restore_tcp_nodelay

_config_init = uvicorn.Config.__init__


def _loopback_config_init(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
    kwargs["host"] = "127.0.0.1"
    _config_init(self, *args, **kwargs)


class BoosterModel(Model):
    """One stored booster behind KServe's v2 predict handler."""

    def __init__(self, name: str, framework: str, path: str) -> None:
        super().__init__(name)
        self.framework = framework
        self.path = path
        self.booster: Any = None
        self.load()

    def load(self) -> bool:
        if self.framework == "xgboost":
            import xgboost as xgb

            self.booster = xgb.Booster()
            self.booster.load_model(self.path)
            self.booster.set_param({"nthread": 1})
        else:
            import lightgbm as lgb

            self.booster = lgb.Booster(model_file=self.path, params={"num_threads": 1})
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None,
                response_headers: dict[str, str] | None = None) -> InferResponse:
        x = np.asarray(payload.inputs[0].as_numpy(), dtype=np.float32)
        if self.framework == "xgboost":
            p = np.asarray(self.booster.inplace_predict(x))
        else:
            p = np.asarray(self.booster.predict(x, num_threads=1))
        out = InferOutput(name="predict", shape=list(p.shape), datatype="FP32")
        out.set_data_from_numpy(p.astype(np.float32), binary_data=False)
        # The response id is required; KServe's own runtimes make one when the request has none.
        return InferResponse(model_name=self.name, infer_outputs=[out],
                             response_id=payload.id or str(uuid.uuid4()))


def main() -> None:
    uvicorn.Config.__init__ = _loopback_config_init  # type: ignore[method-assign]
    restore_tcp_nodelay()
    parser = argparse.ArgumentParser(parents=[kserve_model_server.parser])
    parser.add_argument("--models", type=Path, required=True)
    args, _ = parser.parse_known_args()
    models = [BoosterModel(name, m["framework"], m["path"])
              for name, m in json.loads(args.models.read_text()).items()]
    ModelServer(http_port=args.http_port, workers=args.workers,
                enable_grpc=args.enable_grpc).start(models)


if __name__ == "__main__":
    main()
