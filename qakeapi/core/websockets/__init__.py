"""WebSocket connections and the hook-based :class:`WebSocketHandler`."""

from qakeapi.core.websockets.connection import WebSocket, WebSocketState
from qakeapi.core.websockets.handler import ConnectionHook, MessageHook, WebSocketHandler
from qakeapi.core.websockets.outbox import DEFAULT_SEND_POLICY, Overflow, SendPolicy
from qakeapi.exceptions import WebSocketClosedError, WebSocketDisconnect

__all__ = [
    "DEFAULT_SEND_POLICY",
    "ConnectionHook",
    "MessageHook",
    "Overflow",
    "SendPolicy",
    "WebSocket",
    "WebSocketClosedError",
    "WebSocketDisconnect",
    "WebSocketHandler",
    "WebSocketState",
]
