"""KServe's own Python client (PyPI `kserve`) against a running riskserve, from its own venv.

kserve pins what the service cannot share (protobuf 6, pandas 2), so `ensure_venv()` builds a
venv of its own in .cache/kserve-client from the lock tests/kserve-client-requirements.txt
(once; rebuilt when the lock changes) and `run()` executes this file with that venv's python.
As a script it imports only the standard library, numpy and kserve: for every model named in
the rows file it asks `is_model_ready` and infers over REST (JSON tensors, then binary tensors
both ways) and gRPC, after `is_server_live` / `is_server_ready` on both, and prints one JSON
document of what the client decoded, for the caller to compare with /v1's answers.

    <venv>/bin/python riskserve/devtools/kserve_client.py --http URL --grpc HOST:PORT \\
        --key KEY --rows rows.json      # rows.json: {"model": [{feature: value}, ...]}
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "tests" / "kserve-client-requirements.txt"
VENV = REPO / ".cache" / "kserve-client"
BUILD_TIMEOUT_S = 1800  # a cold pip cache on a shared 2-core machine took ~8 minutes


def ensure_venv(lock: Path = LOCK, venv: Path = VENV) -> Path:
    """The client venv's python, built from `lock` unless the stamp says it already was."""
    stamp = venv / ".lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    python = venv / "bin" / "python"
    if stamp.is_file() and stamp.read_text() == digest and python.exists():
        return python
    started = time.monotonic()
    print(f"building the kserve client venv {venv} from {lock.name} (once)", file=sys.stderr)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    # --no-deps: the lock is the whole environment, so nothing is resolved at install time.
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-deps", "-r", str(lock)], check=True, timeout=BUILD_TIMEOUT_S)
    stamp.write_text(digest)
    print(f"kserve client venv built in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return python


def run(python: Path, http_url: str, grpc_target: str, key: str, rows: Path,
        timeout_s: float = 300) -> dict[str, Any]:
    """Run this file as the client with `python` and return its JSON report."""
    proc = subprocess.run([str(python), __file__, "--http", http_url, "--grpc", grpc_target,
                           "--key", key, "--rows", str(rows)],
                          capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"kserve client failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)


# ---- the client (runs inside the kserve venv) ------------------------------------------------

def _column(values: list[Any], datatype: str) -> Any:
    import numpy as np

    if datatype == "BYTES":
        return np.array([str(v) for v in values], dtype=object)
    return np.asarray(values, dtype={"INT64": np.int64, "FP64": np.float64}[datatype])


def _request(name: str, inputs: list[dict[str, Any]], rows: list[dict[str, Any]],
             binary: bool) -> Any:
    """One input tensor per feature (from the model's metadata), shape [rows]."""
    from kserve import InferInput, InferRequest

    tensors = []
    for meta in inputs:
        column = _column([r[meta["name"]] for r in rows], meta["datatype"])
        tensor = InferInput(meta["name"], [len(rows)], meta["datatype"])
        tensor.set_data_from_numpy(column, binary_data=binary)
        tensors.append(tensor)
    params = {"binary_data_output": True} if binary else None
    return InferRequest(model_name=name, infer_inputs=tensors, parameters=params)


def _outputs(response: Any) -> dict[str, Any]:
    return {o.name: {"datatype": o.datatype, "shape": list(o.shape),
                     "data": o.as_numpy().reshape(-1).tolist()} for o in response.outputs}


async def _client(args: argparse.Namespace) -> dict[str, Any]:
    import httpx
    from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig

    rows: dict[str, list[dict[str, Any]]] = json.loads(Path(args.rows).read_text())
    headers = {"x-api-key": args.key}
    metadata = (("x-api-key", args.key),)
    report: dict[str, Any] = {"rest": {"models": {}}, "grpc": {"models": {}}}
    rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    grpc_client = InferenceGRPCClient(args.grpc, timeout=60)
    try:
        report["rest"]["live"] = await rest.is_server_live(args.http, headers=headers)
        report["rest"]["ready"] = await rest.is_server_ready(args.http, headers=headers)
        report["rest"]["unknown_model_ready"] = await rest.is_model_ready(
            args.http, "no-such-model", headers=headers)
        report["grpc"]["live"] = await grpc_client.is_server_live(headers=metadata)
        report["grpc"]["ready"] = await grpc_client.is_server_ready(headers=metadata)
        async with httpx.AsyncClient(timeout=60) as http:
            for name, model_rows in rows.items():
                meta = (await http.get(f"{args.http}/v2/models/{name}", headers=headers)).json()
                inputs = meta["inputs"]
                answered: dict[str, str] = {}  # the binary answer's headers
                report["rest"]["models"][name] = {
                    "ready": await rest.is_model_ready(args.http, name, headers=headers),
                    "json": _outputs(await rest.infer(
                        args.http, _request(name, inputs, model_rows, False), name,
                        headers=dict(headers))),
                    "binary": _outputs(await rest.infer(
                        args.http, _request(name, inputs, model_rows, True), name,
                        headers=dict(headers), response_headers=answered)),
                    "binary_content_type": answered.get("content-type"),
                }
                report["grpc"]["models"][name] = {
                    "ready": await grpc_client.is_model_ready(name, headers=metadata),
                    "raw": _outputs(await grpc_client.infer(
                        _request(name, inputs, model_rows, True), headers=metadata)),
                }
    finally:
        await rest.close()
        await grpc_client.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", required=True, help="base URL, e.g. http://127.0.0.1:3000")
    parser.add_argument("--grpc", required=True, help="host:port of the gRPC server")
    parser.add_argument("--key", required=True, help="API key")
    parser.add_argument("--rows", required=True, help='JSON file {"model": [{feature: value}]}')
    args = parser.parse_args()
    # Importing kserve parses sys.argv with its model server's flags (`--grpc` is ambiguous
    # there): leave it nothing to parse.
    sys.argv = sys.argv[:1]
    print(json.dumps(asyncio.run(_client(args))))


if __name__ == "__main__":
    main()
