"""HTTP responses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qakeapi.core.codec import encode_json
from qakeapi.types import Receive, Scope, Send

__all__ = ["HTMLResponse", "JSONResponse", "PlainTextResponse", "Response"]


class Response:
    """An HTTP response with a complete body.

    Args:
        content: The body; ``str`` is encoded as UTF-8.
        status_code: The HTTP status.
        headers: Extra headers.
        media_type: The ``Content-Type`` (``charset=utf-8`` is added for text types).
    """

    media_type: str | None = None

    def __init__(
        self,
        content: bytes | str = b"",
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = content.encode() if isinstance(content, str) else content
        if media_type is not None:
            self.media_type = media_type
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}
        if self.media_type is not None and "content-type" not in self.headers:
            ctype = self.media_type
            if ctype.startswith("text/"):
                ctype += "; charset=utf-8"
            self.headers["content-type"] = ctype
        self.headers["content-length"] = str(len(self.body))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the response over ASGI."""
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status_code, "headers": raw})
        body = b"" if scope.get("method") == "HEAD" else self.body
        await send({"type": "http.response.body", "body": body})


class PlainTextResponse(Response):
    """A ``text/plain`` response."""

    media_type = "text/plain"


class HTMLResponse(Response):
    """A ``text/html`` response."""

    media_type = "text/html"


class JSONResponse(Response):
    """A response whose body is ``content`` encoded as JSON.

    Args:
        content: A JSON-serialisable value.
        status_code: The HTTP status.
        headers: Extra headers.
    """

    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(encode_json(content), status_code, headers)
