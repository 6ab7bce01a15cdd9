"""An app with one endpoint per way a handshake can go wrong, for ``test_refusals``.

``/ws`` accepts and says hello; ``/auth`` needs a token (``required=True``); ``/fails`` raises
before accepting; ``/forgot-accept`` sends without accepting; ``/crash`` accepts, then raises.
The origin policy is the default one (same host).
"""

from __future__ import annotations

from qakeapi import Application, WebSocket, WebSocketHandler
from qakeapi.security import AuthConfig, JWTAuthenticator, WebSocketAuthMiddleware

__all__ = ["SECRET", "app", "authenticator"]

SECRET = "refusal-app-secret-key-of-32-bytes!"
"""The key the test signs its tokens with."""

app = Application()
authenticator = JWTAuthenticator(AuthConfig(secret_key=SECRET))
handler = WebSocketHandler()
auth = WebSocketAuthMiddleware(authenticator, required=True, handler=handler)


@handler.on_connect
async def hello(websocket: WebSocket) -> None:
    await websocket.send_json({"type": "hello", "user": websocket.user_id})


@app.websocket("/ws")
async def plain(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"type": "hello", "user": None})
    await websocket.receive_text()


@app.websocket("/auth")
async def authenticated(websocket: WebSocket) -> None:
    await auth(websocket, handler.handle_connection)


@app.websocket("/fails")
async def fails(websocket: WebSocket) -> None:
    raise LookupError("the endpoint failed before accepting")


@app.websocket("/forgot-accept")
async def forgot_accept(websocket: WebSocket) -> None:
    await websocket.send_text("hello")


@app.websocket("/crash")
async def crash(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    raise LookupError("the endpoint failed after accepting")
