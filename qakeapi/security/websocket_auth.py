"""JWT authentication for WebSocket connections.

**Where the token comes from**: the ``token`` query parameter, an ``Authorization: Bearer``
header, the subprotocol pair ``bearer, <token>`` or a Kubernetes-style token subprotocol, in
this order (:mod:`qakeapi.security.carriers`).

**Which subprotocol is selected.** With ``subprotocols=("chat", ...)`` the middleware accepts
the handshake selecting the first of them the client offered (``bearer, <token>, chat``
selects ``chat``). Otherwise, when the client offered the ``bearer`` pair, it selects
``bearer`` (a browser drops a connection that selects none of the subprotocols it offered);
otherwise the handler accepts. Token carriers are never selected.

**Refusal.** With ``required=True`` a handshake without a valid token is refused before the
upgrade: HTTP 401 with ``WWW-Authenticate: Bearer realm="<realm>"`` (plus
``error="invalid_token"`` and ``error_description`` when a token was rejected, RFC 6750) where
the server supports the ASGI WebSocket denial response, and a 403 elsewhere (the close before
accept). Rejections are logged at WARNING with the reason, never the token.

**Live connections** (:mod:`qakeapi.security.sessions`): expiry after a grace period (4001),
in-band refresh with ``{"type": "auth", "token": ...}``, :meth:`WebSocketAuthMiddleware.revoke`
(4003), and, when auth is optional, an ``auth_timeout`` after which a connection that never
authenticated is closed (4001).

**The link to the handler.** In-band auth messages are taken from the handler's message stream
before its ``on_message`` hooks, so the middleware must know the handler. It binds itself to
the :class:`~qakeapi.core.websockets.handler.WebSocketHandler` it is given with ``handler=`` or
:meth:`WebSocketAuthMiddleware.bind` (a :class:`~qakeapi.core.clustering.ClusteredManager`
gives its ``handler``), and to the handler whose ``handle_connection`` it is called with. Called
with anything else (a ``lambda``, a :func:`functools.partial`, a wrapping ``async def``) while
bound to nothing, it raises :class:`~qakeapi.exceptions.AuthLinkError`, which says what to
write. Each connection it runs also carries the link in its scope
(:data:`~qakeapi.core.websockets.handler.AUTH_LINK_SCOPE_KEY`), so a handler it is not bound
to hands it the auth messages too: an in-band token never reaches ``on_message``.

**Logs.** Constructing the middleware installs :func:`~qakeapi.core.redaction.install_log_redaction`
(covering ``query_param`` too), so the server's own log lines (uvicorn prints the request line
with its query string at INFO) carry ``token=[redacted]`` instead of the token.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from qakeapi.core.counters import counters
from qakeapi.core.moved import moved
from qakeapi.core.redaction import install_log_redaction
from qakeapi.core.websockets.connection import WebSocket, WebSocketState
from qakeapi.core.websockets.handler import AUTH_LINK_SCOPE_KEY, WebSocketHandler
from qakeapi.exceptions import AuthenticationError, AuthLinkError, WebSocketClosedError
from qakeapi.security.carriers import (
    BEARER_SUBPROTOCOL,
    extract_token,
    is_token_carrier,
    offers_bearer_token,
)
from qakeapi.security.sessions import AuthSessions, RevocationTransport
from qakeapi.security.tokens import JWTAuthenticator

__all__ = ["JWTAuthenticator", "WebSocketAuthMiddleware"]  # JWTAuthenticator: the guide imports it from here

# Names this module handed on before 0.2 and no longer uses; each has one home now (the ones
# it still imports stay reachable here, though only their home exports them).
__getattr__ = moved(
    __name__,
    {
        "AuthCloseCode": "qakeapi.security.sessions.AuthCloseCode",
        "AuthConfig": "qakeapi.security.tokens.AuthConfig",
        "InsecureKeyWarning": "qakeapi.security.tokens.InsecureKeyWarning",
        "K8S_SUBPROTOCOL_PREFIX": "qakeapi.security.carriers.K8S_SUBPROTOCOL_PREFIX",
    },
)

logger = logging.getLogger("qakeapi.security")

ConnectionHandler = Callable[[WebSocket], Awaitable[Any]]


def _handler_of(target: object) -> WebSocketHandler | None:
    """``target`` if it is a handler, else its ``handler`` attribute if that is one (a manager)."""
    if isinstance(target, WebSocketHandler):
        return target
    inner = getattr(target, "handler", None)
    return inner if isinstance(inner, WebSocketHandler) else None


_BIND_HINT = (
    "bind it once where both are created: auth_middleware.bind(ws_handler) "
    "(or WebSocketAuthMiddleware(authenticator, handler=ws_handler)); a ClusteredManager can be given "
    "in place of its handler"
)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class WebSocketAuthMiddleware:
    """Authenticates a connection, then hands it to a handler (see the module for the rules).

    On success the connection's ``user_id`` and ``claims`` of the
    :class:`~qakeapi.core.websockets.connection.WebSocket` are set. On failure the connection
    stays unauthenticated and ``auth_error`` says why (``"missing"`` when no token was given,
    ``"revoked"`` for a token issued before a revocation, ``"too_many_connections"`` past the
    per-user cap); with ``required=True`` the handshake is refused instead (HTTP 401 before the
    upgrade where the server supports it, else 403) and the handler is not called.

    Args:
        authenticator: Verifies tokens.
        required: Refuse connections that do not authenticate.
        query_param: The query parameter that carries the token.
        subprotocols: The application's own subprotocols, in order of preference; the first
            one the client offered is selected. Empty: see the module (``bearer`` or none).
        realm: The ``realm`` of the ``WWW-Authenticate`` challenge.
        expiry_grace: Seconds a connection may stay open after its token expired, to refresh.
        auth_timeout: When auth is optional, close a connection that has not authenticated
            (in band) after this many seconds with 4001; ``None`` keeps it open.
        max_connections_per_user: At most this many connections per user on this process
            (``None``: no cap); past it the handshake is refused (429) or, when optional, stays
            unauthenticated.
        transport: Carries revocations to the other nodes of a cluster.
        handler: The handler this middleware authenticates connections for (or an object with
            a ``handler`` attribute, such as a :class:`~qakeapi.core.clustering.ClusteredManager`);
            the same as calling :meth:`bind`.

    Raises:
        AuthLinkError: ``handler`` is neither.
    """

    def __init__(
        self,
        authenticator: JWTAuthenticator,
        *,
        required: bool = False,
        query_param: str = "token",
        subprotocols: Sequence[str] = (),
        realm: str = "qakeapi",
        expiry_grace: float = 10.0,
        auth_timeout: float | None = 60.0,
        max_connections_per_user: int | None = 16,
        transport: RevocationTransport | None = None,
        handler: object = None,
    ) -> None:
        self.authenticator = authenticator
        self.required = required
        self.query_param = query_param
        self.subprotocols = tuple(subprotocols)
        self.realm = realm
        self.auth_timeout = auth_timeout
        lifetime = (authenticator.config.token_expiry + authenticator.config.leeway).total_seconds()
        self.sessions = AuthSessions(
            expiry_grace=expiry_grace,
            max_connections_per_user=max_connections_per_user,
            revocation_ttl=lifetime + expiry_grace,
            transport=transport,
        )
        self._bound: weakref.WeakSet[WebSocketHandler] = weakref.WeakSet()
        install_log_redaction(query_params=(query_param,))
        if handler is not None:
            self.bind(handler)

    # -- the handshake ---------------------------------------------------------------------

    def authenticate(self, websocket: WebSocket) -> str | None:
        """Verify the handshake's token and record the outcome on ``websocket``.

        Args:
            websocket: The connection, not yet accepted.

        Returns:
            The source of a valid token (``"query"``, ``"header"``, ``"subprotocol"`` or
            ``"k8s_subprotocol"``), or ``None`` when the connection is not authenticated.
        """
        token, source = extract_token(
            websocket.query_params, websocket.headers, websocket.subprotocols, self.query_param
        )
        if token is None:
            websocket.auth_error = "missing"
            return None
        claims, reason = self.check_token(token, None)
        if claims is None:
            websocket.auth_error = reason
            self._log_rejection(websocket, source or "?", reason)
            return None
        websocket.user_id = claims["sub"]
        websocket.claims = claims
        websocket.auth_error = None
        return source

    def check_token(self, token: str, current_user: str | None) -> tuple[dict[str, Any] | None, str]:
        """Check ``token`` for a connection of ``current_user`` (``None``: not authenticated yet).

        Args:
            token: The token.
            current_user: The connection's user, when it has one: the token must be theirs.

        Returns:
            ``(claims, "")`` when the token is good, else ``(None, reason)``: a
            :class:`~qakeapi.exceptions.AuthenticationError` reason, ``"user_mismatch"``,
            ``"revoked"`` or ``"too_many_connections"``.
        """
        try:
            claims = self.authenticator.verify_token(token)
        except AuthenticationError as exc:
            return None, exc.reason
        user = claims["sub"]
        if current_user is not None and user != current_user:
            return None, "user_mismatch"
        if self.sessions.is_revoked(user, claims):
            return None, "revoked"
        if current_user is None and not self.sessions.has_room_for(user):
            return None, "too_many_connections"
        return claims, ""

    @staticmethod
    def _log_rejection(websocket: WebSocket, source: str, reason: str) -> None:
        counters.count(counters.auth_failures, reason)  # a reason from a fixed set: a bounded label
        logger.warning(
            "WebSocket %s on %s from %s: token from %s rejected (%s)",
            websocket.id,
            websocket.path,
            websocket.client,
            source,
            reason,
        )

    def challenge(self, reason: str) -> list[tuple[bytes, bytes]]:
        """The headers of a 401 for ``reason`` (``"missing"`` or a token rejection reason).

        Args:
            reason: Why authentication failed.

        Returns:
            ``WWW-Authenticate`` (RFC 6750) and ``Content-Type`` headers.
        """
        value = f"Bearer realm={_quoted(self.realm)}"
        if reason != "missing":
            value += f', error="invalid_token", error_description={_quoted(reason)}'
        return [(b"www-authenticate", value.encode("latin-1")), (b"content-type", b"application/json")]

    async def _refuse(self, websocket: WebSocket) -> None:
        reason = websocket.auth_error or "missing"
        if reason == "missing":
            counters.count(counters.auth_failures, reason)
            logger.warning(
                "WebSocket %s on %s from %s: refused, no token", websocket.id, websocket.path, websocket.client
            )
        status = 429 if reason == "too_many_connections" else 401
        headers = self.challenge(reason) if status == 401 else [(b"content-type", b"application/json")]
        body = b'{"detail":"' + reason.encode() + b'"}'
        await websocket.deny(status, headers, body)

    def select_subprotocol(self, offered: list[str]) -> str | None:
        """The subprotocol to accept for ``offered`` (see the module); never a token carrier.

        Args:
            offered: The client's subprotocols, in its order.

        Returns:
            The subprotocol, or ``None`` to leave the choice to the handler.
        """
        for wanted in self.subprotocols:
            if wanted in offered and not is_token_carrier(offered, offered.index(wanted)):
                return wanted
        if offers_bearer_token(offered):
            return BEARER_SUBPROTOCOL
        return None

    # -- running a connection --------------------------------------------------------------

    def bind(self, handler: object) -> None:
        """Take the in-band ``{"type": "auth", "token": ...}`` messages of ``handler``'s connections.

        They go to :meth:`handle_auth_message` before the ``on_message`` hooks, which never see
        them. Binding twice is harmless; a middleware may be bound to several handlers.

        Args:
            handler: A :class:`~qakeapi.core.websockets.handler.WebSocketHandler`, or an object
                that runs one as its ``handler`` attribute (a
                :class:`~qakeapi.core.clustering.ClusteredManager`).

        Raises:
            AuthLinkError: ``handler`` is neither.
        """
        bound = _handler_of(handler)
        if bound is None:
            raise AuthLinkError(
                f"WebSocketAuthMiddleware cannot bind {handler!r}: give it the WebSocketHandler that runs "
                "the connections (or a ClusteredManager, which has one): auth_middleware.bind(ws_handler)"
            )
        if bound not in self._bound:
            bound.intercept(self.handle_auth_message)
            self._bound.add(bound)

    attach = bind
    """The former name of :meth:`bind`."""

    async def __call__(self, websocket: WebSocket, handler: ConnectionHandler) -> None:
        """Authenticate ``websocket``, then ``await handler(websocket)``.

        Args:
            websocket: The connection, not yet accepted.
            handler: Runs the connection, for example ``ws_handler.handle_connection`` or
                ``cluster.handle_connection``; anything else (a wrapper) only once the middleware
                is bound to the handler it runs (:meth:`bind`).

        Raises:
            AuthLinkError: ``handler`` is not a handler's method and the middleware is bound to
                no handler: in-band tokens would reach application code. Raised before the
                connection is accepted; the message says what to write.
        """
        owner = _handler_of(getattr(handler, "__self__", None))
        if owner is not None:
            self.bind(owner)
        elif not self._bound:
            name = getattr(handler, "__qualname__", None) or repr(handler)
            raise AuthLinkError(
                f"WebSocketAuthMiddleware was called with {name}, which is not the handle_connection of a "
                "WebSocketHandler (or ClusteredManager), and it is bound to no handler: in-band "
                '{"type": "auth"} messages (token refresh, late authentication) would reach on_message. '
                f"Either call it as auth_middleware(websocket, ws_handler.handle_connection), or {_BIND_HINT}"
            )
        websocket.scope[AUTH_LINK_SCOPE_KEY] = self.handle_auth_message
        source = self.authenticate(websocket)
        if source is None and self.required:
            await self._refuse(websocket)
            return
        subprotocol = self.select_subprotocol(websocket.subprotocols)
        if subprotocol is not None and websocket.application_state is WebSocketState.CONNECTING:
            await websocket.accept(subprotocol=subprotocol)
        if websocket.user_id is not None:
            self.sessions.add(websocket)
        elif self.auth_timeout is not None:
            self.sessions.close_unless_authenticated(websocket, self.auth_timeout)
        try:
            await handler(websocket)
        finally:
            self.sessions.discard(websocket)

    async def handle_auth_message(self, websocket: WebSocket, message: Any) -> bool:
        """Handle an in-band ``{"type": "auth", "token": ...}`` message (refresh or late auth).

        A valid token for the connection's user (or, on an unauthenticated connection, for
        anyone) replaces its claims and expiry; the answer is ``{"type": "auth.ok", "user": ...,
        "expires_at": ...}``. Otherwise the answer is ``{"type": "auth.error", "reason": ...}``
        and nothing changes (``"user_mismatch"``: a token for another user).

        Args:
            websocket: The connection.
            message: A received message.

        Returns:
            ``True`` when ``message`` was an auth message (consumed), else ``False``.
        """
        if not (isinstance(message, dict) and message.get("type") == "auth"):
            return False
        token = message.get("token")
        if not isinstance(token, str) or not token:
            await self._answer(websocket, {"type": "auth.error", "reason": "missing"})
            return True
        claims, reason = self.check_token(token, websocket.user_id)
        if claims is None:
            self._log_rejection(websocket, "message", reason)
            if websocket.user_id is None:
                websocket.auth_error = reason
            await self._answer(websocket, {"type": "auth.error", "reason": reason})
            return True
        websocket.user_id = claims["sub"]
        websocket.claims = claims
        websocket.auth_error = None
        self.sessions.add(websocket)
        await self._answer(websocket, {"type": "auth.ok", "user": claims["sub"], "expires_at": claims.get("exp")})
        return True

    @staticmethod
    async def _answer(websocket: WebSocket, message: dict[str, Any]) -> None:
        with contextlib.suppress(WebSocketClosedError):  # it may have gone away meanwhile
            await websocket.send_json(message)

    async def revoke(self, user_id: str, reason: str = "revoked") -> int:
        """Close every connection of ``user_id`` (here, and on other nodes with a transport) with 4003.

        Tokens of the user issued up to now are refused from now on.

        Args:
            user_id: The user.
            reason: The close reason.

        Returns:
            How many connections of this process are being closed.
        """
        return await self.sessions.revoke(user_id, reason)
