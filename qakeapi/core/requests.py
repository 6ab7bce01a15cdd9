"""The incoming HTTP request, and what it shares with a WebSocket's handshake."""

from __future__ import annotations

from typing import Any

from qakeapi.core.codec import decode_json
from qakeapi.core.datastructures import Headers, QueryParams, State
from qakeapi.exceptions import HTTPException, ValidationError
from qakeapi.types import Receive, Scope

__all__ = ["DEFAULT_MAX_BODY_SIZE", "HTTPConnection", "Request"]

DEFAULT_MAX_BODY_SIZE = 1 << 20


class HTTPConnection:
    """What an HTTP request and a WebSocket's handshake share: the URL's parts, headers and peer.

    Args:
        scope: The ASGI ``http`` or ``websocket`` scope.
    """

    __slots__ = ("scope",)

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    @property
    def path(self) -> str:
        """The request path."""
        path: str = self.scope.get("path", "/")
        return path

    @property
    def path_params(self) -> dict[str, Any]:
        """Parameters captured from the route's path."""
        params: dict[str, Any] = self.scope.setdefault("path_params", {})
        return params

    @property
    def headers(self) -> Headers:
        """The request headers (for a WebSocket, those of its handshake)."""
        return Headers(self.scope.get("headers", ()))

    @property
    def query_params(self) -> QueryParams:
        """The URL's query parameters (for a WebSocket, those of its handshake)."""
        return QueryParams(self.scope.get("query_string", b""))

    @property
    def client(self) -> tuple[str, int] | None:
        """The peer's ``(host, port)``, when the server knows it."""
        client = self.scope.get("client")
        return (str(client[0]), int(client[1])) if client else None


class Request(HTTPConnection):
    """An HTTP request: method, URL parts, headers and a body read on demand.

    Args:
        scope: The ASGI ``http`` scope.
        receive: The ASGI receive callable.
        max_body_size: Larger bodies are refused with 413.
    """

    def __init__(self, scope: Scope, receive: Receive, max_body_size: int = DEFAULT_MAX_BODY_SIZE) -> None:
        super().__init__(scope)
        self._receive = receive
        self._body: bytes | None = None
        self._max_body_size = max_body_size
        self.state = State()

    @property
    def method(self) -> str:
        """The HTTP method, upper case."""
        method: str = self.scope["method"]
        return method

    async def body(self) -> bytes:
        """Read the whole body (once; later calls return the same bytes).

        Returns:
            The body.

        Raises:
            HTTPException: 413 when the body exceeds the size limit.
        """
        if self._body is None:
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    break
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self._max_body_size:
                    raise HTTPException(413, f"request body exceeds {self._max_body_size} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            self._body = b"".join(chunks)
        return self._body

    async def text(self) -> str:
        """Read the body as UTF-8 text.

        Raises:
            ValidationError: The body is not valid UTF-8 (answered with 400).
        """
        try:
            return (await self.body()).decode()
        except UnicodeDecodeError as exc:
            raise ValidationError(f"request body is not valid UTF-8: {exc.reason}") from None

    async def json(self) -> Any:
        """Read the body as JSON.

        Returns:
            The decoded value.

        Raises:
            ValidationError: The body is empty or not valid JSON (answered with 400).
        """
        body = await self.body()
        if not body:
            raise ValidationError("request body is empty; expected JSON")
        try:
            return decode_json(body)
        except ValueError as exc:
            raise ValidationError(f"malformed JSON body: {exc}") from None
