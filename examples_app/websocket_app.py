"""The app the guide's tests import: every section combined.

- Everyone gets ``welcome`` on connect (``Welcome, <user>!`` when authenticated).
- ``{"type": "message", ...}`` is echoed as ``{"type": "echo", "data": ...}`` to anonymous
  connections and answered as ``{"type": "message", "data": ..., "user": ...}`` to
  authenticated ones.
- ``join_room`` / ``leave_room`` / ``chat_message`` as in the chat section.
- Anything else gets ``{"type": "error", "message": "Unknown message type: ..."}``.
- ``{"type": "direct", "user": ..., "message": ...}`` from an authenticated connection reaches
  every connection of that user, on any node, as ``{"type": "direct", "from": ..., "message": ...}``.
- ``POST /api/generate-token`` with ``{"user_id": ...}`` returns ``{"token": ...}``.

Rooms and direct messages are cluster-wide when ``QAKEAPI_REDIS_URL`` is set (as in
:mod:`examples_app.chat_app`); without it the app serves one process (``memory://websocket_app``).

Run: ``uvicorn examples_app.websocket_app:app``
"""

from __future__ import annotations

from typing import Any

from examples_app.auth_app import issue_token
from examples_app.chat_app import ChatService
from examples_app.settings import auth_config, node_id, redis_url
from qakeapi import Application, Request, WebSocket, WebSocketHandler, create_clustered_manager
from qakeapi.security import JWTAuthenticator, WebSocketAuthMiddleware

__all__ = ["app", "authenticator", "chat", "manager", "ws_handler"]

app = Application()
app.expose_metrics()  # Prometheus metrics at GET /metrics (the metrics extra)
ws_handler = WebSocketHandler()
authenticator = JWTAuthenticator(auth_config())
auth_middleware = WebSocketAuthMiddleware(authenticator, handler=ws_handler)  # the explicit auth link
manager = create_clustered_manager(
    ws_handler,
    redis_url=redis_url("memory://websocket_app"),
    node_id=node_id("websocket-1"),
)
app.on_startup(manager.start)
app.on_shutdown(manager.close)
chat = ChatService(manager.rooms)
manager.on_presence(chat.node_down)


@ws_handler.on_connect
async def handle_connect(websocket: WebSocket) -> None:
    greeting = f"Welcome, {websocket.user_id}!" if websocket.authenticated else "Connected!"
    await websocket.send_json(
        {
            "type": "welcome",
            "message": greeting,
            "connection_id": manager.connection_id(websocket),
            "user": websocket.user_id,
        }
    )


@ws_handler.on_disconnect
async def handle_disconnect(websocket: WebSocket) -> None:
    await chat.disconnect(websocket)


@ws_handler.on_message
async def handle_message(websocket: WebSocket, message: Any) -> None:
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        await websocket.send_json({"type": "error", "message": "Invalid message: expected a JSON object with a 'type'"})
    elif message["type"] == "message":
        if websocket.authenticated:
            await websocket.send_json({"type": "message", "data": message, "user": websocket.user_id})
        else:
            await websocket.send_json({"type": "echo", "data": message})
    elif message["type"] in ChatService.MESSAGE_TYPES:
        await chat.handle(websocket, message)
    elif message["type"] == "direct":
        await send_direct(websocket, message)
    else:
        await websocket.send_json({"type": "error", "message": f"Unknown message type: {message['type']}"})


async def send_direct(websocket: WebSocket, message: dict[str, Any]) -> None:
    """Send ``message["message"]`` to every connection of user ``message["user"]``, on any node."""
    user, text = message.get("user"), message.get("message")
    if not websocket.authenticated:
        await websocket.send_json({"type": "error", "message": "Direct messages need an authenticated connection"})
    elif not isinstance(user, str) or not user or not isinstance(text, str):
        await websocket.send_json({"type": "error", "message": "Missing or invalid 'user' or 'message'"})
    else:
        await manager.send_to_user(user, {"type": "direct", "from": websocket.user_id, "message": text})


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await auth_middleware(websocket, manager.handle_connection)


@app.post("/api/generate-token")
async def generate_token(request: Request) -> dict[str, str]:
    return await issue_token(request, authenticator, field="user_id")
