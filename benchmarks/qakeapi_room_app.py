"""The room contract on QakeAPI with every security limit at its default: one node, and a cluster node.

``app`` is a plain :class:`~qakeapi.WebSocketHandler` with its defaults (the token bucket of
:data:`~qakeapi.core.limits.DEFAULT_RATE_LIMIT`, the per-address cap, the 1 MiB message limit,
the strict JSON decoder, the default send policy) and a :class:`~qakeapi.core.rooms.Rooms`
registry: every connection on ``/room`` joins the room ``room``, is welcomed, and every JSON
text message it sends is broadcast to the room as ``{"type": "chat_message", "message": ...}``.

``cluster_app`` is the same contract on a clustered node
(:func:`~qakeapi.core.clustering.create_clustered_manager` on ``memory://``): the join and every
broadcast also go to the cluster's backend, as they would to Redis.

Used by :mod:`benchmarks.inproc` (the ``secure`` and ``cluster`` workloads).
"""

from __future__ import annotations

from typing import Any

from qakeapi import Application, WebSocket, WebSocketHandler
from qakeapi.core.clustering import create_clustered_manager
from qakeapi.core.rooms import Rooms

__all__ = ["ROOM", "app", "cluster_app"]

ROOM = "room"
WELCOME = {"type": "welcome", "message": "Connected!"}

# -- one node -----------------------------------------------------------------------------

app = Application()
handler = WebSocketHandler()  # every limit at its default
rooms = Rooms()


@handler.on_connect
async def join(websocket: WebSocket) -> None:
    rooms.join(ROOM, websocket)
    await websocket.send_json(WELCOME)


@handler.on_message
async def publish(websocket: WebSocket, message: Any) -> None:
    room = rooms.get(ROOM)
    if room is not None:
        await room.broadcast({"type": "chat_message", "message": message})


@handler.on_disconnect
async def leave(websocket: WebSocket) -> None:
    rooms.leave_all(websocket)


@app.websocket("/room")
async def room_endpoint(websocket: WebSocket) -> None:
    await handler.handle_connection(websocket)


# -- a cluster node on memory:// ----------------------------------------------------------

cluster_app = Application()
cluster_handler = WebSocketHandler()
manager = create_clustered_manager(cluster_handler, "memory://inproc-bench", "bench-node")
cluster_app.on_startup(manager.start)
cluster_app.on_shutdown(manager.close)


@cluster_handler.on_connect
async def cluster_join(websocket: WebSocket) -> None:
    await manager.join(ROOM, websocket)
    await websocket.send_json(WELCOME)


@cluster_handler.on_message
async def cluster_publish(websocket: WebSocket, message: Any) -> None:
    room = manager.rooms.get(ROOM)
    if room is not None:
        await room.broadcast({"type": "chat_message", "message": message})


@cluster_app.websocket("/room")
async def cluster_endpoint(websocket: WebSocket) -> None:
    await manager.handle_connection(websocket)
