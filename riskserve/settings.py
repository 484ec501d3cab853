"""Every runtime setting of riskserve, read once from `RISKSERVE_*` environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from riskserve.errors import ConfigurationError


class Settings(BaseSettings):
    """Service settings. Each is documented here and in the README's settings table."""

    model_config = SettingsConfigDict(env_prefix="RISKSERVE_", extra="ignore")

    api_keys: str = Field("", repr=False)
    """Comma-separated API keys, each plain or `sha256:<hex>` of the key. Never logged."""

    api_keys_file: str | None = None
    """Keys file (a mounted Kubernetes Secret), read in addition to api_keys: one key per line,
    `<key or sha256:hex> [name=<id>] [models=<m1>,<m2>|*] [rate=<req/s>]`, `#` comments; re-read
    every keys_reload_s when it changed (rotation without restart)."""

    auth_disabled: bool = False
    """Serve without keys. Only for local experiments: a warning is logged on every start."""

    http_port: int = 3000
    """Port of the HTTP API (passed to `bentoml serve --port` by the Makefile and the image)."""

    grpc_port: int = 3001
    """Port of the Open Inference Protocol gRPC server, shared by all workers."""

    grpc_host: str = "0.0.0.0"
    """Address the gRPC server binds (`127.0.0.1` to accept local clients only)."""

    grpc_intake_depth: int = Field(default=8, ge=1, le=256)
    """Requests for the next gRPC call kept armed per method in each worker, so that calls
    waiting together reach the data plane together and share a model call (with 8, risk-flag's
    gRPC batches held 7-9 rows at 32 clients instead of 3-6). 1: grpc.aio's own intake, one
    call at a time (also what other grpcio releases get; riskserve.oip.grpc_intake)."""

    workers: int = 1
    """BentoML worker processes for the service. More workers use more cores and memory."""

    max_payload_bytes: int = 10 * 1024 * 1024
    """Largest JSON request body accepted on /v1 and /v2 (413 above it)."""

    max_rows: int = 10_000
    """Largest number of rows in one JSON or gRPC request (413 above it)."""

    csv_max_bytes: int = 512 * 1024 * 1024
    """Largest CSV upload accepted by /v1/predict_csv (413 above it)."""

    csv_max_rows: int = 5_000_000
    """Largest number of data rows in one CSV upload (413 above it)."""

    csv_chunk_rows: int = 10_000
    """CSV rows scored per chunk: bounds memory while streaming large files. A chunk scores
    while the one before is written and the next parsed, so smaller chunks overlap more of a
    file: 10,000 against 50,000, side by side, 5-10 % faster on 100k-row fraud files (five
    comparisons), within the noise on 400k (-7, -4, +2 %); 5,000 was slower again, and risk-flag
    did not change (README, "Targets missed")."""

    max_batch_size: int = 512
    """Most rows one model call may combine from concurrent requests (adaptive batching)."""

    max_batch_wait_ms: float = 0.0
    """Extra time a batch waits for more requests. 0 (default): never wait; requests that queue
    while the model is busy still share the next call, so batches grow with load anyway."""

    heavy_row_ms: float = 0.15
    """A model whose calls cost more CPU than this per row (the model call alone, the cheapest
    row once it has made 16 calls of several rows; a lone row is mostly the call's fixed part,
    see batching.RowCost) is heavy: its calls always run on its own thread, at heavy_nice."""

    heavy_nice: int = Field(default=19, ge=0, le=19)
    """Linux nice value of a heavy model's thread; 0 keeps it at the worker's priority. When the
    cores are short, cheap models' requests then go first and heavy ones get what is left."""

    max_concurrency: int = 256
    """Requests in flight per worker before new ones are shed at once: HTTP 429 (BentoML's
    traffic control), gRPC RESOURCE_EXHAUSTED. Bounds queueing, so overload answers fast."""

    drain_delay_s: float = 2.0
    """On SIGTERM, how long a worker keeps serving (with readiness already failing, so load
    balancers stop sending) before it closes its listener and drains what is in flight."""

    request_timeout_s: float = 60.0
    """Longest a request may wait for its answer to start before BentoML answers 504 (a CSV
    upload's validation counts; its streamed scoring, once started, does not)."""

    extra_versions_cache: int = 4
    """Non-production model versions kept loaded per worker when requested by version."""

    log_level: str = "INFO"
    """Log level of riskserve's own loggers (`riskserve.*`): DEBUG, INFO, WARNING or ERROR."""

    keys_reload_s: float = 2.0
    """How often each worker checks RISKSERVE_API_KEYS_FILE for changes (a rotated Secret is
    picked up within this interval plus kubelet's sync delay)."""

    model_max_concurrency: int = 64
    """Requests in flight per model per worker before that model's excess is shed (HTTP 429,
    gRPC RESOURCE_EXHAUSTED); neighbours keep their own budget."""

    model_max_concurrency_overrides: str = ""
    """Per-model exceptions to model_max_concurrency, `name=n` comma-separated, for example
    `keystroke-rf=8,fraud=256`."""

    shadow_rate: float = 1.0
    """Share of production rows (0..1) also scored by the model's shadow candidate, after the
    answer went out; dropped when the model is busy."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, parsed once (tests call `get_settings.cache_clear()`).

    A value that does not parse is a ConfigurationError naming the variable (the service prints
    it as one line), not pydantic's traceback."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "RISKSERVE_" + "_".join(str(p) for p in first["loc"]).upper()
        raise ConfigurationError(
            f"{name}={first.get('input')!r}: {first['msg'].lower()}; see the settings table "
            f"in the README") from None
