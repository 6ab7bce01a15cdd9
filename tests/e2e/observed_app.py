"""An app for the observability end-to-end tests: JSON logs, metrics, a dashboard, authenticated rooms.

Settings: ``QAKEAPI_NODE_ID``, ``QAKEAPI_REDIS_URL`` (default ``memory://observed``),
``OBSERVED_SECRET`` (the JWT secret), ``OBSERVED_DASHBOARD_TOKEN`` (the dashboard's token).

``/rooms/{room}``: a connection authenticates with ``?token=<JWT>`` (or stays anonymous), joins
``room`` on the cluster, and every message it sends is broadcast to the room. ``"fail"`` makes
the message hook raise (a hook error, logged with the connection's fields).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from examples_app.settings import node_id, redis_url
from qakeapi import Application, WebSocket, WebSocketHandler
from qakeapi.core.clustering import create_clustered_manager
from qakeapi.core.logfields import configure_logging
from qakeapi.security import AuthConfig, JWTAuthenticator, WebSocketAuthMiddleware

__all__ = ["NODE_ID", "app", "cluster", "handler"]

NODE_ID = node_id()
configure_logging(json=True, level=logging.INFO)

app = Application()
handler = WebSocketHandler()
cluster = create_clustered_manager(handler, redis_url=redis_url("memory://observed"), node_id=NODE_ID)
app.on_startup(cluster.start)
app.on_shutdown(cluster.close)
auth = WebSocketAuthMiddleware(JWTAuthenticator(AuthConfig(os.environ["OBSERVED_SECRET"])), handler=cluster)
app.expose_metrics()
app.expose_dashboard(token=os.environ["OBSERVED_DASHBOARD_TOKEN"])
log = logging.getLogger("observed")


@handler.on_connect
async def welcome(websocket: WebSocket) -> None:
    room = websocket.path_params["room"]
    await cluster.join(room, websocket)
    log.info("joined a room")
    await websocket.send_json({"type": "welcome", "node": NODE_ID, "user": websocket.user_id})


@handler.on_message
async def relay(websocket: WebSocket, message: Any) -> None:
    if message == "fail":
        raise RuntimeError("the hook failed on purpose")
    log.info("relaying a message")
    room = cluster.rooms.get(websocket.path_params["room"])
    if room is not None:
        await room.broadcast({"type": "message", "data": message, "user": websocket.user_id})


@app.websocket("/rooms/{room}")
async def endpoint(websocket: WebSocket, room: str) -> None:
    await auth(websocket, cluster.handle_connection)
