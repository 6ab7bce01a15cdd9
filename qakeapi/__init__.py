"""QakeAPI: an ASGI web framework for real-time WebSocket applications.

Everything an application uses is importable from here: the application and its WebSockets,
rooms and the send policy, clustering with history and presence, and the exceptions. Optional
parts stay in their own packages (:mod:`qakeapi.security` needs PyJWT, :mod:`qakeapi.testing`
is for tests).
"""

from qakeapi.core.application import Application
from qakeapi.core.cluster.history import HistoryPolicy, Position, Recovery
from qakeapi.core.clustering import ClusteredManager, create_clustered_manager
from qakeapi.core.limits import RateLimit
from qakeapi.core.middleware import Middleware
from qakeapi.core.origins import OriginPolicy
from qakeapi.core.presence import PresenceDiff, PresenceReason
from qakeapi.core.requests import Request
from qakeapi.core.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from qakeapi.core.rooms import Room, Rooms
from qakeapi.core.websockets import Overflow, SendPolicy, WebSocket, WebSocketHandler, WebSocketState
from qakeapi.exceptions import (
    AuthenticationError,
    BroadcastError,
    ClusterUnavailableError,
    HTTPException,
    NotAcceptedError,
    QakeAPIError,
    RoomLimitError,
    UnlinkedRoomsError,
    ValidationError,
    WebSocketClosedError,
    WebSocketDisconnect,
)
from qakeapi.status import CloseCode

__version__ = "0.1.0"

__all__ = [
    "Application",
    "AuthenticationError",
    "BroadcastError",
    "CloseCode",
    "ClusterUnavailableError",
    "ClusteredManager",
    "HTMLResponse",
    "HTTPException",
    "HistoryPolicy",
    "JSONResponse",
    "Middleware",
    "NotAcceptedError",
    "OriginPolicy",
    "Overflow",
    "PlainTextResponse",
    "Position",
    "PresenceDiff",
    "PresenceReason",
    "QakeAPIError",
    "RateLimit",
    "Recovery",
    "Request",
    "Response",
    "Room",
    "RoomLimitError",
    "Rooms",
    "SendPolicy",
    "UnlinkedRoomsError",
    "ValidationError",
    "WebSocket",
    "WebSocketClosedError",
    "WebSocketDisconnect",
    "WebSocketHandler",
    "WebSocketState",
    "__version__",
    "create_clustered_manager",
]
