"""The exceptions QakeAPI raises, rooted at :class:`QakeAPIError`.

The tree::

    QakeAPIError
    ├── HTTPException                  an HTTP error response (status code + detail)
    │   └── ValidationError            bad input from a client; also a ValueError (400)
    ├── WebSocketError
    │   ├── WebSocketDisconnect        the peer went away (close code + reason)
    │   └── WebSocketClosedError       sending on a closed connection; also a ConnectionError
    ├── AuthenticationError            a token was missing, malformed, expired or forged
    ├── AuthLinkError                  an auth middleware not linked to its handler; also a TypeError
    ├── BroadcastError                 a broadcast backend could not publish; also a ConnectionError
    └── MissingDependencyError         an optional extra is not installed; also an ImportError
"""

from __future__ import annotations

from http import HTTPStatus

__all__ = [
    "AuthLinkError",
    "AuthenticationError",
    "BroadcastError",
    "HTTPException",
    "MissingDependencyError",
    "QakeAPIError",
    "UnlinkedRoomsError",
    "ValidationError",
    "WebSocketClosedError",
    "WebSocketDisconnect",
    "WebSocketError",
]


class QakeAPIError(Exception):
    """Base class of every exception QakeAPI raises on purpose."""


class HTTPException(QakeAPIError):
    """An error that becomes an HTTP response with ``status_code`` and a JSON ``detail``.

    Args:
        status_code: The HTTP status of the response.
        detail: What went wrong, shown to the client; defaults to the status phrase.
        headers: Extra response headers (``Allow`` on a 405, for example).
    """

    def __init__(
        self,
        status_code: int,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.detail = detail if detail is not None else HTTPStatus(status_code).phrase
        self.headers = dict(headers or {})
        super().__init__(f"{status_code}: {self.detail}")


class ValidationError(HTTPException, ValueError):
    """Input from a client that cannot be used; answered with 400 when it escapes a handler.

    Args:
        detail: What is wrong with the input.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(400, detail)


class WebSocketError(QakeAPIError):
    """Base class of WebSocket errors."""


class WebSocketDisconnect(WebSocketError):
    """The peer closed the connection (or the server closed it under us).

    Args:
        code: The close code; see :class:`qakeapi.status.CloseCode`.
        reason: The close reason the peer sent, if any.
    """

    def __init__(self, code: int = 1000, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"WebSocket closed with code {code}" + (f": {reason}" if reason else ""))


class WebSocketClosedError(WebSocketError, ConnectionError):
    """Raised when sending on a connection that is already closed, by either side."""


class AuthenticationError(QakeAPIError):
    """A credential was rejected.

    Args:
        reason: A short machine-readable reason such as ``"expired"`` or ``"invalid_signature"``.
        message: A human-readable explanation. Never contains the credential itself.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class BroadcastError(QakeAPIError, ConnectionError):
    """A broadcast backend could not deliver a message (its server is unreachable, say)."""


class UnlinkedRoomsError(QakeAPIError, RuntimeError):
    """A connection served by a cluster joined a :class:`~qakeapi.core.rooms.Rooms` that is not the cluster's.

    Its broadcasts would reach this node's members only, silently; the message says what to write.
    """


class MissingDependencyError(QakeAPIError, ImportError):
    """An optional dependency is not installed.

    Args:
        package: The distribution that is missing.
        extra: The QakeAPI extra that installs it.
    """

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(f"{package} is not installed; install it with: pip install 'qakeapi-realtime[{extra}]'")


class AuthLinkError(QakeAPIError, TypeError):
    """An authentication middleware cannot link itself to the handler that runs its connections.

    Unlinked, in-band ``{"type": "auth"}`` messages (token refresh, late authentication) would
    reach application code instead of the middleware; the message says what to write.
    """
