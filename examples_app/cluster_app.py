"""Guide section "WebSocket Clustering": broadcast to every node's connections through Redis.

Settings: ``QAKEAPI_REDIS_URL`` (default ``redis://localhost:6379``) and ``QAKEAPI_NODE_ID``
(default ``node-1``).

Run two nodes: ``QAKEAPI_NODE_ID=node-1 uvicorn examples_app.cluster_app:app --port 8001`` and
``QAKEAPI_NODE_ID=node-2 uvicorn examples_app.cluster_app:app --port 8002`` (or one
``uvicorn examples_app.cluster_app:app --workers 2``: the workers share the label ``node-1`` but
each has its own instance id).

A node's own clients get a broadcast at once, whatever Redis does; the other nodes get it
through Redis, buffered across an outage of up to 5 s. Past that the sender gets
``{"type": "error", ...}`` and the other nodes' clients get ``cluster_lost`` when Redis is back.
"""

from __future__ import annotations

from typing import Any

from examples_app.settings import node_id, redis_url
from qakeapi import Application, ClusterUnavailableError, WebSocket, WebSocketHandler, create_clustered_manager

__all__ = ["NODE", "app", "clustered_manager", "ws_handler"]

NODE = node_id()

app = Application()
app.expose_metrics()  # Prometheus metrics at GET /metrics (the metrics extra)
ws_handler = WebSocketHandler()
clustered_manager = create_clustered_manager(ws_handler, redis_url=redis_url(), node_id=NODE)
app.on_startup(clustered_manager.start)
app.on_shutdown(clustered_manager.close)


@ws_handler.on_connect
async def handle_connect(websocket: WebSocket) -> None:
    await websocket.send_json({"type": "welcome", "node": NODE})


@ws_handler.on_message
async def handle_message(websocket: WebSocket, message: Any) -> None:
    try:
        await clustered_manager.broadcast({"type": "message", "data": message, "node": NODE})
    except ClusterUnavailableError as exc:  # this node's clients got it; the others will hear of the loss
        await websocket.send_json({"type": "error", "message": f"not delivered to the other nodes: {exc}"})


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await clustered_manager.handle_connection(websocket)
