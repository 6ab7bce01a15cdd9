"""WebSocket connections and the hook-based :class:`WebSocketHandler`."""

from qakeapi.core.websockets.connection import WebSocket, WebSocketState
from qakeapi.core.websockets.handler import ConnectionHook, MessageHook, WebSocketHandler
from qakeapi.exceptions import WebSocketClosedError, WebSocketDisconnect

__all__ = [
    "ConnectionHook",
    "MessageHook",
    "WebSocket",
    "WebSocketClosedError",
    "WebSocketDisconnect",
    "WebSocketHandler",
    "WebSocketState",
]
