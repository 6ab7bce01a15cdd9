"""Cluster fan-out benchmark app, QakeAPI: every text message is broadcast to every client of every node.

Settings: ``QAKEAPI_REDIS_URL`` and ``QAKEAPI_NODE_ID``. Each client gets ``w`` on connect (it is
registered), then every broadcast as the text that was sent. With ``QAKEAPI_BENCH_HISTORY=1``
every client joins the room ``bench``, which keeps a history, and each message is published to
it instead (numbered by Redis, delivered as a ``publication``).
"""

from __future__ import annotations

import os
from typing import Any

from qakeapi import Application, WebSocket
from qakeapi.core.cluster.history import HistoryPolicy
from qakeapi.core.clustering import create_clustered_manager
from qakeapi.core.limits import RateLimit
from qakeapi.core.websockets import WebSocketHandler

__all__ = ["app"]

app = Application()
# One load generator on one IP sends as fast as the window allows: lift the per-IP cap and keep
# the rate limit far above the load (its per-message cost stays in the figure).
handler = WebSocketHandler(rate_limit=RateLimit(rate=1e9, burst=1_000_000_000), max_connections_per_ip=None)
HISTORY = os.environ.get("QAKEAPI_BENCH_HISTORY") == "1"
manager = create_clustered_manager(
    handler,
    redis_url=os.environ["QAKEAPI_REDIS_URL"],
    node_id=os.environ.get("QAKEAPI_NODE_ID", "node-1"),
    history=HistoryPolicy() if HISTORY else None,
)
app.on_startup(manager.start)
app.on_shutdown(manager.close)


@handler.on_connect
async def welcome(websocket: WebSocket) -> None:
    if HISTORY:
        await manager.join("bench", websocket)
    await websocket.send_text("w")


@handler.on_message
async def relay(websocket: WebSocket, message: Any) -> None:
    room = manager.rooms.get("bench") if HISTORY else None
    if room is not None:
        await room.broadcast(message)
    else:
        await manager.broadcast(message)


@app.websocket("/ws")
async def endpoint(websocket: WebSocket) -> None:
    await manager.handle_connection(websocket)
