"""Request limits: the body size (413, rendered by riskserve.http like every other error).

Content-Length is checked up front; chunked uploads without it are counted as they stream and
cut off at the limit, so an oversized body never reaches the JSON or multipart parser.
"""

from __future__ import annotations

from typing import Any

from riskserve.errors import PayloadTooLarge
from riskserve.http import send_error

CSV_PATH = "/v1/predict_csv"


class BodyLimitMiddleware:
    """413 for bodies over `max_bytes` (`csv_max_bytes` on the CSV upload route)."""

    def __init__(self, app: Any, max_bytes: int, csv_max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.csv_max_bytes = csv_max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        limit = self.csv_max_bytes if scope["path"] == CSV_PATH else self.max_bytes
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await _reject(send, limit)
                    return
        seen = 0
        started = rejected = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit and not started:
                    # Answer now and tell the app the client went away, so it stops parsing;
                    # anything the app still tries to send is dropped below.
                    rejected = True
                    await _reject(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)


async def _reject(send: Any, limit: int) -> None:
    exc = PayloadTooLarge(f"request body too large: the limit is {limit} bytes",
                          {"limit_bytes": limit})
    await send_error(send, exc, close=True)
