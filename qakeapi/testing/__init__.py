"""Testing helpers: an in-process async client for any ASGI application."""

from qakeapi.testing.client import PendingResponse, TestClient, TestResponse
from qakeapi.testing.websocket_session import ClientDisconnectedError, WebSocketTestSession

__all__ = ["ClientDisconnectedError", "PendingResponse", "TestClient", "TestResponse", "WebSocketTestSession"]
