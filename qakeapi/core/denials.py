"""How an application answers a WebSocket its endpoint does not take, or fails.

A client can tell the answers apart: a path without a WebSocket route gets HTTP 404, a refused
origin or ``Host`` 403 (``{"detail": "origin not allowed"}`` or ``"host not allowed"``), an
endpoint that fails before accepting 500, one that fails after it the close 1011. The statuses
need the ASGI ``websocket.http.response`` extension; without it (daphne) a denial is a close
before the accept (1008, with the reason), which servers answer with a bare 403.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from qakeapi.core.codec import encode_json
from qakeapi.core.counters import counters
from qakeapi.core.origins import OriginDecision, OriginReason
from qakeapi.core.websockets.connection import WebSocket, WebSocketState
from qakeapi.status import CloseCode

__all__ = ["deny_missing_route", "deny_origin", "fail"]

logger = logging.getLogger("qakeapi.application")

_MAX_REASON = 123  # bytes of UTF-8 in a close reason
_JSON = [(b"content-type", b"application/json")]
_DENIAL = "websocket.http.response"  # the ASGI extension that lets a refusal carry a status and a body


async def deny_origin(websocket: WebSocket, decision: OriginDecision) -> None:
    """Answer 403 to a handshake the origin policy refused; count it and log one WARNING line."""
    counters.count(counters.origin_refusals, decision.reason.value)
    advice = decision.reason.advice
    logger.warning(
        "WebSocket %s at %s from %s: origin %r refused (%s); answering 403%s",
        websocket.id,
        websocket.path,
        websocket.client,
        decision.origin,
        decision.reason.value,
        f" ({advice})" if advice else "",
    )
    detail = "host not allowed" if decision.reason is OriginReason.HOST_NOT_ALLOWED else "origin not allowed"
    await websocket.deny(403, _JSON, encode_json({"detail": detail}).encode(), reason=detail)


async def deny_missing_route(websocket: WebSocket, paths: Iterable[str]) -> None:
    """Answer 404 to a handshake for a path without a WebSocket route, naming the routes there are."""
    path = websocket.path
    logger.warning(
        "WebSocket %s: no WebSocket route for %r; answering 404 (WebSocket routes: %s)",
        websocket.id,
        path,
        ", ".join(paths) or "none",
    )
    detail = f"no WebSocket route for {path}"
    reason = detail
    if len(reason.encode()) > _MAX_REASON:
        reason = reason.encode()[: _MAX_REASON - 3].decode(errors="ignore") + "..."
    await websocket.deny(404, _JSON, encode_json({"detail": detail}).encode(), reason=reason)


async def fail(websocket: WebSocket) -> None:
    """Tell the client that the application failed: HTTP 500 before the accept, close 1011 after it.

    Before the accept, a server without the ``websocket.http.response`` extension answers the
    exception that follows with its own 500, so nothing is sent here.
    """
    if websocket.application_state is WebSocketState.CONNECTING:
        if _DENIAL in (websocket.scope.get("extensions") or {}):
            with contextlib.suppress(RuntimeError):  # the failure left a state that cannot be denied
                await websocket.deny(500, _JSON, b'{"detail":"Internal Server Error"}')
        return
    await websocket.close(CloseCode.INTERNAL_ERROR, "internal error")
