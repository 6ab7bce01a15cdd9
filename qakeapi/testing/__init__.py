"""Testing helpers: an in-process async client for any ASGI application.

:class:`~qakeapi.exceptions.WebSocketDenied`, what connecting raises when the application refuses
the handshake with an HTTP status, is exported here too: tests are where it is caught.
"""

from qakeapi.exceptions import WebSocketDenied
from qakeapi.testing.client import PendingResponse, TestClient, TestResponse
from qakeapi.testing.websocket_session import ClientDisconnectedError, WebSocketTestSession

__all__ = [
    "ClientDisconnectedError",
    "PendingResponse",
    "TestClient",
    "TestResponse",
    "WebSocketDenied",
    "WebSocketTestSession",
]
