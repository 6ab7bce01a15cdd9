"""JWT authentication for WebSocket connections.

The token may come, in this order of precedence, from the ``token`` query parameter, an
``Authorization: Bearer <token>`` header, or the ``Sec-WebSocket-Protocol`` header as the
pair of subprotocols ``bearer, <token>`` (what a browser can send:
``new WebSocket(url, ["bearer", token])``); in the last case the server selects ``bearer``.
QakeAPI never writes a token to a log line; note that a server's access log (uvicorn's, for
one) prints the request path with its query string, so prefer the header or the subprotocol in
production, or turn the access log off (``uvicorn --no-access-log``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from qakeapi.core.redaction import install_log_redaction
from qakeapi.core.websockets.connection import WebSocket, WebSocketState
from qakeapi.exceptions import AuthenticationError
from qakeapi.security.tokens import AuthConfig, InsecureKeyWarning, JWTAuthenticator
from qakeapi.status import CloseCode

__all__ = [
    "BEARER_SUBPROTOCOL",
    "AuthConfig",
    "InsecureKeyWarning",
    "JWTAuthenticator",
    "WebSocketAuthMiddleware",
    "extract_token",
]

logger = logging.getLogger("qakeapi.security")

BEARER_SUBPROTOCOL = "bearer"
"""The subprotocol that announces a token as the next offered subprotocol."""

ConnectionHandler = Callable[[WebSocket], Awaitable[Any]]


def extract_token(
    query: dict[str, str] | Any, headers: Any, subprotocols: list[str], query_param: str = "token"
) -> tuple[str | None, str | None]:
    """Find the token of a handshake.

    Args:
        query: The query parameters (a mapping).
        headers: The request headers (a case-insensitive mapping).
        subprotocols: The offered subprotocols.
        query_param: The query parameter that carries the token.

    Returns:
        ``(token, source)`` where ``source`` is ``"query"``, ``"header"`` or ``"subprotocol"``;
        ``(None, None)`` when there is no token.
    """
    token = query.get(query_param)
    if token:
        return token, "query"
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip(), "header"
    if BEARER_SUBPROTOCOL in subprotocols:
        index = subprotocols.index(BEARER_SUBPROTOCOL)
        if index + 1 < len(subprotocols) and subprotocols[index + 1]:
            return subprotocols[index + 1], "subprotocol"
    return None, None


def _offers_bearer_token(subprotocols: list[str]) -> bool:
    if BEARER_SUBPROTOCOL not in subprotocols:
        return False
    index = subprotocols.index(BEARER_SUBPROTOCOL)
    return index + 1 < len(subprotocols) and bool(subprotocols[index + 1])


class WebSocketAuthMiddleware:
    """Authenticates a connection, then hands it to a handler.

    On success the connection's ``user_id`` and ``claims`` of the
    :class:`~qakeapi.core.websockets.connection.WebSocket` are set. On failure the connection stays unauthenticated and
    ``auth_error`` says why (``"missing"`` when no token was given); with ``required=True``
    the handshake is refused instead (HTTP 403) and the handler is not called.

    Args:
        authenticator: Verifies tokens.
        required: Refuse connections that do not authenticate.
        query_param: The query parameter that carries the token.
    """

    def __init__(self, authenticator: JWTAuthenticator, *, required: bool = False, query_param: str = "token") -> None:
        self.authenticator = authenticator
        self.required = required
        self.query_param = query_param
        install_log_redaction(query_params=(query_param,))

    def authenticate(self, websocket: WebSocket) -> str | None:
        """Verify the handshake's token and record the outcome on ``websocket``.

        Args:
            websocket: The connection, not yet accepted.

        Returns:
            The source of a valid token (``"query"``, ``"header"`` or ``"subprotocol"``), or
            ``None`` when the connection is not authenticated.
        """
        token, source = extract_token(
            websocket.query_params, websocket.headers, websocket.subprotocols, self.query_param
        )
        if token is None:
            websocket.auth_error = "missing"
            return None
        try:
            claims = self.authenticator.verify_token(token)
        except AuthenticationError as exc:
            websocket.auth_error = exc.reason
            logger.info(
                "WebSocket %s on %s from %s: token from %s rejected (%s)",
                websocket.id,
                websocket.path,
                websocket.client,
                source,
                exc.reason,
            )
            return None
        websocket.user_id = claims["sub"]
        websocket.claims = claims
        websocket.auth_error = None
        return source

    async def __call__(self, websocket: WebSocket, handler: ConnectionHandler) -> None:
        """Authenticate ``websocket``, then ``await handler(websocket)``.

        Args:
            websocket: The connection, not yet accepted.
            handler: Runs the connection, for example ``WebSocketHandler.handle_connection``.
        """
        source = self.authenticate(websocket)
        if source is None and self.required:
            await websocket.close(CloseCode.POLICY_VIOLATION, "authentication required")
            return
        offered_bearer = _offers_bearer_token(websocket.subprotocols)
        if (source == "subprotocol" or offered_bearer) and websocket.application_state is WebSocketState.CONNECTING:
            # A browser that offered ["bearer", token] drops a connection that selects nothing,
            # valid token or not: select it, so the client can be told what went wrong.
            await websocket.accept(subprotocol=BEARER_SUBPROTOCOL)
        await handler(websocket)
