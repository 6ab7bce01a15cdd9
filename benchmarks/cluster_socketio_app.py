"""Cluster fan-out benchmark app, python-socketio with ``AsyncRedisManager``: every ``msg`` event is
emitted to every client of every node (the same work as :mod:`benchmarks.cluster_qakeapi_app`).

Setting: ``QAKEAPI_REDIS_URL``. Needs ``pip install python-socketio`` (benchmark only).
"""

from __future__ import annotations

import os
from typing import Any

import socketio  # type: ignore[import-untyped]

__all__ = ["app"]

manager = socketio.AsyncRedisManager(os.environ["QAKEAPI_REDIS_URL"])
sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, cors_allowed_origins=[])
app = socketio.ASGIApp(sio)


@sio.on("msg")  # type: ignore[misc]
async def relay(sid: str, data: Any) -> None:
    await sio.emit("msg", data)
