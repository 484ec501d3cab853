"""Run the seed-style app under `uvicorn --workers N`, minus one known uvicorn bug.

With --workers, uvicorn 0.54 binds its listening socket with `proto` left at 0; accepted
connections inherit it, and asyncio only sets TCP_NODELAY when `proto == IPPROTO_TCP`. Nagle
then holds back each keep-alive response until the client's delayed ACK: every request of the
seed app took ~48 ms at one client, against 2.8 ms with --workers 1 (uvicorn issue #3149,
fixed upstream by passing the protocol). This wrapper passes it, so the peer is measured at
its best; everything else is plain `uvicorn <args>`. The KServe peer binds through the same
uvicorn call and gets the same fix (benchmarks/kserve_app.py).

Usage (in the FastAPI venv): python -m benchmarks.seed_serve benchmarks.seed_app:app --workers 2 ...
"""

from __future__ import annotations

import socket

import uvicorn.config
from uvicorn.main import main

_bind_socket = uvicorn.config.Config.bind_socket


def bind_socket(self: uvicorn.config.Config) -> socket.socket:
    sock = _bind_socket(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
        # Same file descriptor, now labelled as TCP so asyncio enables TCP_NODELAY.
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    return sock


def restore_tcp_nodelay() -> None:
    """Make every uvicorn.Config in this process bind a socket labelled as TCP."""
    uvicorn.config.Config.bind_socket = bind_socket  # type: ignore[method-assign]


if __name__ == "__main__":
    restore_tcp_nodelay()
    main()
