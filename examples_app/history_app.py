"""Beyond the guide: rooms with history, and a client that comes back gets what it missed.

Every room keeps its last ``QAKEAPI_HISTORY_SIZE`` publications (default 1,000) for
``QAKEAPI_HISTORY_TTL`` seconds after the latest one (default 300). The protocol:

- ``{"type": "join", "room": "lobby"}`` joins; with ``"since": {"epoch": "...", "offset": 17}``
  (the last publication it saw) the client first gets every publication after it, then
  ``{"type": "recovery", "recovered": true, ...}``; or, when that is not possible, nothing but
  ``{"type": "recovery", "recovered": false, "reason": ...}`` (reload the room's state then).
  Without ``since`` the answer is ``{"type": "joined", "room": ...}``.
- ``{"type": "publish", "room": "lobby", "data": ...}`` publishes ``data`` to the room: every
  member, on every node, gets ``{"type": "publication", "room", "epoch", "offset", "data"}``,
  in the same order everywhere.
- ``{"type": "leave", "room": "lobby"}`` leaves.

Several nodes: ``QAKEAPI_REDIS_URL`` (a Redis of 6.2 or later) and ``QAKEAPI_NODE_ID``; one node
without it (``memory://``).

Run: ``uvicorn examples_app.history_app:app``
"""

from __future__ import annotations

import os
from typing import Any

from examples_app.settings import node_id, redis_url
from qakeapi import (
    Application,
    ClusterUnavailableError,
    HistoryPolicy,
    Position,
    RoomLimitError,
    WebSocket,
    WebSocketHandler,
    create_clustered_manager,
)

__all__ = ["app", "manager", "ws_handler"]

app = Application()
app.expose_metrics()  # Prometheus metrics at GET /metrics (the metrics extra)
ws_handler = WebSocketHandler()
manager = create_clustered_manager(
    ws_handler,
    redis_url=redis_url("memory://history_app"),
    node_id=node_id(),
    history=HistoryPolicy(
        size=int(os.environ.get("QAKEAPI_HISTORY_SIZE", "1000")),
        ttl=float(os.environ.get("QAKEAPI_HISTORY_TTL", "300")),
    ),
)
app.on_startup(manager.start)
app.on_shutdown(manager.close)


async def error(websocket: WebSocket, message: str) -> None:
    await websocket.send_json({"type": "error", "message": message})


@ws_handler.on_message
async def handle_message(websocket: WebSocket, message: Any) -> None:
    if not isinstance(message, dict) or not isinstance(message.get("room"), str):
        await error(websocket, 'expected {"type": ..., "room": "<name>", ...}')
        return
    kind, room = message.get("type"), message["room"]
    if kind == "join":
        try:
            since = Position.parse(message["since"]) if "since" in message else None
            recovery = await manager.join(room, websocket, since=since)
        except (ValueError, RoomLimitError) as exc:  # RoomLimitError is a ValueError too
            await error(websocket, str(exc))
            return
        await websocket.send_json(recovery.as_message(room) if recovery else {"type": "joined", "room": room})
    elif kind == "publish":
        joined = manager.rooms.get(room)
        if joined is None or websocket not in joined:
            await error(websocket, f"join {room!r} first")
            return
        try:
            await joined.broadcast(message.get("data"))
        except ClusterUnavailableError as exc:  # numbered nowhere and not buffered: the other nodes miss it
            await error(websocket, f"not delivered to the other nodes: {exc}")
    elif kind == "leave":
        manager.rooms.leave(room, websocket)
        await websocket.send_json({"type": "left", "room": room})
    else:
        await error(websocket, f"unknown message type {kind!r}")


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await manager.handle_connection(websocket)
