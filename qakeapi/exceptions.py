"""The exceptions QakeAPI raises, rooted at :class:`QakeAPIError`.

The tree::

    QakeAPIError
    ├── HTTPException                  an HTTP error response (status code + detail)
    │   └── ValidationError            bad input from a client; also a ValueError (400)
    ├── WebSocketError
    │   ├── WebSocketDisconnect        the peer went away (close code + reason)
    │   │   └── WebSocketDenied        the handshake was refused with an HTTP response (status + body)
    │   ├── WebSocketClosedError       sending on a closed connection; also a ConnectionError
    │   └── NotAcceptedError           sending before the handshake was accepted; also a RuntimeError
    ├── AuthenticationError            a token was missing, malformed, expired or forged
    ├── AuthLinkError                  an auth middleware not linked to its handler; also a TypeError
    ├── BroadcastError                 a broadcast backend could not publish; also a ConnectionError
    │   └── ClusterUnavailableError    a message could not be buffered for the other nodes
    ├── UnencodableJSONError           JSON refused when decoding: it could not be sent back; a ValueError
    │   ├── NonStandardJSONError       NaN, Infinity
    │   ├── LoneSurrogateError         "\\ud800": not text
    │   ├── NumberOutOfRangeError      1e400, or an integer past Python's digit limit
    │   └── NestingTooDeepError        deeper than the codec's MAX_DEPTH
    ├── RoomLimitError                 a join was refused (name, or too many rooms); also a ValueError
    ├── UnlinkedRoomsError             a cluster's connection joined a Rooms() of its own; a RuntimeError
    └── MissingDependencyError         an optional extra is not installed; also an ImportError
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from qakeapi.status import CloseCode

if TYPE_CHECKING:
    from qakeapi.core.datastructures import Headers

__all__ = [
    "AuthLinkError",
    "AuthenticationError",
    "BroadcastError",
    "ClusterUnavailableError",
    "HTTPException",
    "LoneSurrogateError",
    "MissingDependencyError",
    "NestingTooDeepError",
    "NonStandardJSONError",
    "NotAcceptedError",
    "NumberOutOfRangeError",
    "QakeAPIError",
    "RoomLimitError",
    "UnencodableJSONError",
    "UnlinkedRoomsError",
    "ValidationError",
    "WebSocketClosedError",
    "WebSocketDenied",
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


class WebSocketDenied(WebSocketDisconnect):
    """The server refused the WebSocket handshake with an HTTP response, before the upgrade.

    What :meth:`TestClient.websocket_connect <qakeapi.testing.client.TestClient.websocket_connect>`
    raises when the application answers the handshake with a status (the ASGI
    ``websocket.http.response`` extension): a wrong path's 404, a refused origin's 403, a failed
    authentication's 401, a failure before the accept's 500. A real client gets the same response
    (``websockets`` raises ``InvalidStatus``). The message says the status and the detail::

        the WebSocket handshake was refused with HTTP 403 Forbidden: origin not allowed

    It is a :class:`WebSocketDisconnect`, so code that catches the close a refusal used to be
    keeps working: its ``code`` is 1006 (``ABNORMAL_CLOSURE``, what a browser's ``onclose``
    reports for a refused handshake), its ``reason`` the detail. Import it from
    ``qakeapi.testing``, next to the client.

    Args:
        status_code: The HTTP status of the response.
        headers: The response headers, as ASGI ``(name, value)`` byte pairs.
        body: The response body.
        decode: What :meth:`json` reads the body with. The TestClient passes QakeAPI's strict
            decoder (:func:`qakeapi.core.codec.decode_json`), the one its HTTP responses use;
            without it :meth:`json` raises :class:`TypeError`.

    Attributes:
        status_code: The HTTP status.
        headers: The response headers (case-insensitive).
        body: The response body.
        detail: The body's ``"detail"`` when it is a JSON object that has one, else the body's
            text (its first 200 characters), else the status phrase.
    """

    def __init__(
        self,
        status_code: int,
        headers: Iterable[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        *,
        decode: Callable[[bytes], Any] | None = None,
    ) -> None:
        from qakeapi.core.datastructures import Headers  # qakeapi.core imports this module

        self.status_code = status_code
        self.headers: Headers = Headers(headers)
        self.body = body
        self._decode = decode
        said = _said(body)
        status = _status_line(status_code)
        self.detail = said or status.partition(" ")[2] or status
        super().__init__(CloseCode.ABNORMAL_CLOSURE, self.detail)
        self.args = (f"the WebSocket handshake was refused with HTTP {status}" + (f": {said}" if said else ""),)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode()

    def json(self) -> Any:
        """The body decoded as JSON.

        Returns:
            The decoded value.

        Raises:
            ValueError: The body is not JSON.
            TypeError: The denial was built without a ``decode``.
        """
        if self._decode is None:
            raise TypeError("this WebSocketDenied was built without decode=; pass the decoder that json() should use")
        return self._decode(self.body)


_MAX_DETAIL = 200
"""The most characters of a denial's body its message shows."""


def _status_line(status_code: int) -> str:
    try:
        return f"{status_code} {HTTPStatus(status_code).phrase}"
    except ValueError:  # a status Python does not name
        return str(status_code)


def _said(body: bytes) -> str:
    """What a denial's body says: its JSON ``"detail"``, else its text (shortened); ``""`` if empty."""
    try:
        value = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8
        value = None
    detail = value.get("detail") if isinstance(value, dict) else None
    text = detail if isinstance(detail, str) else body.decode(errors="replace").strip()
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


class WebSocketClosedError(WebSocketError, ConnectionError):
    """Raised when sending on a connection that is already closed, by either side."""


class NotAcceptedError(WebSocketError, RuntimeError):
    """Raised when an endpoint sends on a connection it has not accepted yet.

    The message says what to write: ``await websocket.accept()`` before the first send (or let
    :meth:`~qakeapi.core.websockets.handler.WebSocketHandler.handle_connection` accept). Before
    the accept nothing can reach the client, so the application fails and the client gets HTTP
    500 (see the troubleshooting page's table).
    """


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


# -- what the JSON codec refuses (qakeapi.core.codec) ----------------------------------------


class UnencodableJSONError(QakeAPIError, ValueError):
    """Well-formed JSON text whose value could not be encoded back and sent: refused when decoding.

    Attributes:
        kind: What was refused, the same for every error of a class (a log names it).
    """

    kind = "unencodable JSON"


class NonStandardJSONError(UnencodableJSONError):
    """The text used ``NaN``, ``Infinity`` or ``-Infinity``, which are not JSON (RFC 8259).

    Args:
        constant: The constant found.
    """

    kind = "NaN/Infinity"

    def __init__(self, constant: str) -> None:
        self.constant = constant
        super().__init__(f"{constant} is not valid JSON (RFC 8259 has no NaN or infinities)")


class LoneSurrogateError(UnencodableJSONError):
    """A string holds a lone surrogate (``"\\ud800"``), which is not text and cannot be sent as UTF-8.

    Args:
        code_point: The surrogate's code point (``0xD800`` to ``0xDFFF``).
    """

    kind = "lone surrogate"

    def __init__(self, code_point: int) -> None:
        self.code_point = code_point
        super().__init__(f"a string holds the lone surrogate \\u{code_point:04x}, which cannot be sent as UTF-8")


class NumberOutOfRangeError(UnencodableJSONError):
    """A number is out of range: a float beyond the largest double (``1e400``), or an integer longer
    than Python converts.

    Args:
        number: The number's text (or a description of it), shortened.
        limit: The most digits an integer may have.
    """

    kind = "number out of range"

    def __init__(self, number: str, limit: int) -> None:
        self.number = number
        super().__init__(f"a number is out of range: {number} (finite doubles and integers of at most {limit} digits)")


class NestingTooDeepError(UnencodableJSONError):
    """Arrays and objects are nested more than :data:`~qakeapi.core.codec.MAX_DEPTH` levels deep.

    Args:
        limit: The deepest nesting accepted.
    """

    kind = "nesting too deep"

    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nests too deeply (more than {limit} levels)")


# -- rooms and clusters -----------------------------------------------------------------------


class RoomLimitError(QakeAPIError, ValueError):
    """A join was refused: the room name is too long (or empty), or the connection is in too many rooms."""


class ClusterUnavailableError(BroadcastError):
    """A message could not be buffered for the other nodes (the backend has been down too long,
    or the buffer is full). Local connections already got it; the other nodes' did not, and they
    will be told when the backend is back."""


# -- authentication -------------------------------------------------------------------------


class AuthLinkError(QakeAPIError, TypeError):
    """An authentication middleware cannot link itself to the handler that runs its connections.

    Unlinked, in-band ``{"type": "auth"}`` messages (token refresh, late authentication) would
    reach application code instead of the middleware; the message says what to write.
    """
