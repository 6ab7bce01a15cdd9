"""QakeAPI: an ASGI web framework for real-time WebSocket applications."""

from qakeapi.core.application import Application
from qakeapi.core.limits import RateLimit
from qakeapi.core.middleware import Middleware
from qakeapi.core.origins import OriginPolicy
from qakeapi.core.requests import Request
from qakeapi.core.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from qakeapi.core.websockets import WebSocket, WebSocketHandler, WebSocketState
from qakeapi.exceptions import (
    AuthenticationError,
    BroadcastError,
    HTTPException,
    QakeAPIError,
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
    "HTMLResponse",
    "HTTPException",
    "JSONResponse",
    "Middleware",
    "OriginPolicy",
    "PlainTextResponse",
    "QakeAPIError",
    "RateLimit",
    "Request",
    "Response",
    "ValidationError",
    "WebSocket",
    "WebSocketClosedError",
    "WebSocketDisconnect",
    "WebSocketHandler",
    "WebSocketState",
    "__version__",
]
