"""The caller's key name on BentoML's HTTP access-log lines (`... 1.234ms key=<name>`).

BentoML's AccessLogMiddleware (`bentoml.access` logger) is the outermost middleware and logs
from inside the `send` the app calls, so it runs in the request's own task: a context variable
set by `auth.authenticate` (called by the auth middleware) is visible there without touching
BentoML. The name (never the key) is appended by a logging filter; requests auth never saw
(probes, shed by BentoML before auth) show `key=-`, rejected keys `key=unknown`. The gRPC lines
(riskserve.oip.grpc_access) go to the same logger and get the name the same way: the gRPC auth
interceptor calls `auth.authenticate` in the call's own task.
"""

from __future__ import annotations

import contextvars
import logging

ACCESS_LOGGER = "bentoml.access"
NO_KEY = "-"
UNKNOWN_KEY = "unknown"

key_name: contextvars.ContextVar[str] = contextvars.ContextVar("riskserve_key_name",
                                                               default=NO_KEY)


class KeyNameFilter(logging.Filter):
    """Appends ` key=<name>` to each access-log record of the current request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.msg = f"{record.msg} key=%s"
            record.args = (*record.args, key_name.get())
        return True


_FILTER = KeyNameFilter()


def install() -> None:
    """Add the filter to `bentoml.access` once per process (idempotent)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
