"""Guide section "WebSocket with Authentication": JWT-authenticated WebSocket connections.

Run: ``QAKEAPI_SECRET_KEY=... uvicorn examples_app.auth_app:app``
"""

from __future__ import annotations

from typing import Any

from examples_app.settings import auth_config
from qakeapi import Application, Request, ValidationError, WebSocket
from qakeapi.core.websockets import WebSocketHandler
from qakeapi.security.websocket_auth import JWTAuthenticator, WebSocketAuthMiddleware

__all__ = ["app", "authenticator", "issue_token", "ws_handler"]

app = Application()
ws_handler = WebSocketHandler()
authenticator = JWTAuthenticator(auth_config())
auth_middleware = WebSocketAuthMiddleware(authenticator)


@ws_handler.on_connect
async def handle_connect(websocket: WebSocket) -> None:
    if websocket.authenticated:
        await websocket.send_json({"type": "welcome", "message": f"Welcome, {websocket.user_id}!"})
    else:
        await websocket.send_json(
            {"type": "auth_required", "message": "Please authenticate", "reason": websocket.auth_error}
        )


@ws_handler.on_message
async def handle_message(websocket: WebSocket, message: Any) -> None:
    if not websocket.authenticated:
        await websocket.send_json({"type": "error", "message": "Authentication required"})
        return
    await websocket.send_json({"type": "message", "data": message, "user": websocket.user_id})


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await auth_middleware(websocket, ws_handler.handle_connection)


async def issue_token(request: Request, authenticator: JWTAuthenticator) -> dict[str, str]:
    """Answer ``{"user_id": ...}`` with ``{"token": ...}``; anything else is a 400.

    A demo, as in the guide: it issues a token for any user id without asking for a password.
    A real application checks credentials first.
    """
    data = await request.json()
    if not isinstance(data, dict):
        raise ValidationError("expected a JSON object with 'user_id'")
    return {"token": authenticator.create_token(data.get("user_id"))}


@app.post("/api/generate-token")
async def generate_token(request: Request) -> dict[str, str]:
    return await issue_token(request, authenticator)
