"""Live authenticated connections: token expiry, in-band refresh, revocation, per-user caps.

A token is checked at the handshake, but a connection can outlive it. :class:`AuthSessions`
keeps, for every authenticated connection of this process, when its token expires, and:

* **Expiry.** When the token's ``exp`` passes, the connection gets ``{"type": "auth.expired",
  "grace": <seconds>}`` and, unless it refreshes within ``grace`` seconds, is closed with
  :attr:`AuthCloseCode.TOKEN_EXPIRED` (4001).
* **Refresh in band.** The client sends ``{"type": "auth", "token": "<new token>"}`` at any
  time (typically before ``exp``); a valid token for the same user moves the deadline and is
  answered ``{"type": "auth.ok", "user": <id>, "expires_at": <exp>}``; a bad one is answered
  ``{"type": "auth.error", "reason": <reason>}`` and changes nothing. (The middleware routes
  these messages: see :class:`~qakeapi.security.websocket_auth.WebSocketAuthMiddleware`.)
* **Revocation.** :meth:`AuthSessions.revoke` closes every connection of a user on this
  process at once with :attr:`AuthCloseCode.REVOKED` (4003), and refuses that user's tokens
  issued (``iat``) up to that moment, so a client cannot simply reconnect with the old token.
  With a :class:`RevocationTransport` the revocation also goes to every other node, which
  apply it with :meth:`AuthSessions.revoke_local`.
* **Caps.** ``max_connections_per_user`` connections of one user at a time on this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from qakeapi.core.counters import counters
from qakeapi.core.datastructures import discard_from
from qakeapi.core.limits import cap
from qakeapi.core.websockets.connection import WebSocket, WebSocketState
from qakeapi.exceptions import WebSocketClosedError

__all__ = ["AuthCloseCode", "AuthSessions", "RevocationTransport"]

logger = logging.getLogger("qakeapi.security")


class AuthCloseCode(enum.IntEnum):
    """Close codes of authentication outcomes on a live connection (the 4000-4999 private range)."""

    TOKEN_EXPIRED = 4001
    """The token expired and was not refreshed within the grace period, or the connection
    never authenticated within the auth timeout; the client gets a (new) token and reconnects."""
    REVOKED = 4003
    """The user's sessions were revoked; the client does not reconnect with the same token."""


class RevocationTransport(Protocol):
    """Carries revocations between the nodes of a cluster.

    :class:`AuthSessions` registers its :meth:`~AuthSessions.revoke_local` with
    :meth:`subscribe_revocations` when it is created, and hands each of its own revocations to
    :meth:`publish_revocation`. The transport calls every subscriber with each revocation it
    receives from another node (applying one twice is harmless).
    :class:`~qakeapi.core.clustering.ClusteredManager` is one.
    """

    async def publish_revocation(self, user_id: str, reason: str, revoked_at: float) -> None:
        """Send a revocation to the other nodes.

        Args:
            user_id: The user whose connections close.
            reason: The close reason.
            revoked_at: The revocation time (Unix seconds): tokens issued up to it are refused.
        """

    def subscribe_revocations(self, apply: Callable[[str, str, float], object]) -> None:
        """Call ``apply(user_id, reason, revoked_at)`` for every revocation from another node.

        Args:
            apply: What applies a revocation on this node (:meth:`AuthSessions.revoke_local`).
        """


class _Session:
    __slots__ = ("expires_at", "timer")

    def __init__(self) -> None:
        self.expires_at: float | None = None
        self.timer: asyncio.TimerHandle | None = None


class AuthSessions:
    """The authenticated connections of this process and the rules that end them.

    Args:
        expiry_grace: Seconds a connection may stay after its token's ``exp`` (to refresh).
        max_connections_per_user: At most this many connections of one user on this process;
            ``None``: no cap.
        revocation_ttl: How long a revocation refuses old tokens, in seconds; it should be at
            least the longest token lifetime (the middleware sets it from the token expiry).
        transport: Carries revocations to other nodes; ``None`` on a single node.
    """

    def __init__(
        self,
        *,
        expiry_grace: float = 10.0,
        max_connections_per_user: int | None = 16,
        revocation_ttl: float = 24 * 3600.0,
        transport: RevocationTransport | None = None,
    ) -> None:
        if expiry_grace < 0:
            raise ValueError("expiry_grace must not be negative")
        self.expiry_grace = expiry_grace
        self.max_connections_per_user = cap("max_connections_per_user", max_connections_per_user)
        self.revocation_ttl = revocation_ttl
        self.transport = transport
        if transport is not None:
            transport.subscribe_revocations(self.revoke_local)
        self._sessions: dict[WebSocket, _Session] = {}
        self._by_user: dict[str, set[WebSocket]] = {}
        self._revoked: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._auth_timers: dict[WebSocket, asyncio.TimerHandle] = {}
        self.expired = 0
        """How many connections were closed because their token expired."""
        self.revoked = 0
        """How many connections were closed by a revocation."""
        self.auth_timeouts = 0
        """How many connections were closed for not authenticating in time."""

    # -- membership ------------------------------------------------------------------------

    def connections_of(self, user_id: str) -> frozenset[WebSocket]:
        """The live authenticated connections of ``user_id`` on this process.

        Args:
            user_id: The user.

        Returns:
            A snapshot of them.
        """
        return frozenset(self._by_user.get(user_id, ()))

    def has_room_for(self, user_id: str) -> bool:
        """Whether ``user_id`` may open one more connection here (``max_connections_per_user``).

        Args:
            user_id: The user.

        Returns:
            ``True`` when under the cap.
        """
        cap = self.max_connections_per_user
        return cap is None or len(self._by_user.get(user_id, ())) < cap

    def is_revoked(self, user_id: str, claims: Mapping[str, Any]) -> bool:
        """Whether a token with ``claims`` was issued before a revocation of ``user_id``.

        Args:
            user_id: The token's user.
            claims: The verified claims (``iat`` is compared; a token without it counts as old).

        Returns:
            ``True`` when the token must be refused.
        """
        revoked_at = self._revoked.get(user_id)
        if revoked_at is None:
            return False
        if time.time() > revoked_at + self.revocation_ttl:
            del self._revoked[user_id]
            return False
        issued = claims.get("iat")
        return not isinstance(issued, (int, float)) or issued <= revoked_at

    def add(self, websocket: WebSocket) -> None:
        """Track an authenticated ``websocket`` and arm its expiry from ``websocket.claims``.

        Args:
            websocket: A connection whose ``user_id`` and ``claims`` are set.
        """
        if websocket.user_id is None:
            raise ValueError(f"WebSocket {websocket.id} is not authenticated")
        self._cancel_auth_timer(websocket)
        session = self._sessions.get(websocket)
        if session is None:
            session = self._sessions[websocket] = _Session()
            self._by_user.setdefault(websocket.user_id, set()).add(websocket)
        self._arm(websocket, session)

    def discard(self, websocket: WebSocket) -> None:
        """Forget ``websocket`` (it ended); cancels its timer. Unknown connections are ignored.

        Args:
            websocket: The connection.
        """
        self._cancel_auth_timer(websocket)
        session = self._sessions.pop(websocket, None)
        if session is None:
            return
        if session.timer is not None:
            session.timer.cancel()
        discard_from(self._by_user, websocket.user_id or "", websocket)

    def __len__(self) -> int:
        return len(self._sessions)

    # -- expiry ----------------------------------------------------------------------------

    def _arm(self, websocket: WebSocket, session: _Session) -> None:
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        exp = websocket.claims.get("exp")
        session.expires_at = float(exp) if isinstance(exp, (int, float)) else None
        if session.expires_at is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, session.expires_at - time.time())
        session.timer = loop.call_later(delay, self._expired, websocket)

    def _expired(self, websocket: WebSocket) -> None:
        session = self._sessions.get(websocket)
        if session is None:
            return
        grace = self.expiry_grace
        session.timer = asyncio.get_running_loop().call_later(grace, self._close_expired, websocket)
        self._spawn(self._notify_expired(websocket, grace))

    async def _notify_expired(self, websocket: WebSocket, grace: float) -> None:
        with contextlib.suppress(WebSocketClosedError):  # it may be gone already
            await websocket.send_json({"type": "auth.expired", "grace": grace})

    def _close_expired(self, websocket: WebSocket) -> None:
        if websocket not in self._sessions:
            return
        self.expired += 1
        logger.info(
            "closing WebSocket %s (path=%s user=%s): token expired %.0fs ago and was not refreshed",
            websocket.id,
            websocket.path,
            websocket.user_id,
            self.expiry_grace,
        )
        self.discard(websocket)
        self._spawn(websocket.close(AuthCloseCode.TOKEN_EXPIRED, "token expired"))

    def close_unless_authenticated(self, websocket: WebSocket, timeout: float) -> None:
        """Close ``websocket`` with 4001 after ``timeout`` seconds unless it authenticated by then.

        The timer is cancelled by :meth:`add` (it authenticated) and by :meth:`discard` (it ended).

        Args:
            websocket: A connection that is not authenticated (yet).
            timeout: Seconds.
        """
        self._cancel_auth_timer(websocket)
        loop = asyncio.get_running_loop()
        self._auth_timers[websocket] = loop.call_later(timeout, self._auth_timed_out, websocket, timeout)

    def _cancel_auth_timer(self, websocket: WebSocket) -> None:
        timer = self._auth_timers.pop(websocket, None)
        if timer is not None:
            timer.cancel()

    def _auth_timed_out(self, websocket: WebSocket, timeout: float) -> None:
        self._auth_timers.pop(websocket, None)
        if websocket.user_id is not None or websocket.application_state is WebSocketState.DISCONNECTED:
            return
        self.auth_timeouts += 1
        logger.info(
            "closing WebSocket %s (path=%s client=%s): not authenticated within %ss",
            websocket.id,
            websocket.path,
            websocket.client,
            timeout,
        )
        self._spawn(websocket.close(AuthCloseCode.TOKEN_EXPIRED, "authentication timeout"))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- revocation ------------------------------------------------------------------------

    def revoke_local(self, user_id: str, reason: str = "revoked", revoked_at: float | None = None) -> int:
        """Close every connection of ``user_id`` on this process and refuse its older tokens.

        What a :class:`RevocationTransport` calls when a revocation arrives. The closes start
        at once (each in its own task); this returns without waiting for them.

        Args:
            user_id: The user.
            reason: The close reason (at most 123 bytes).
            revoked_at: The revocation time (Unix seconds); now when ``None``.

        Returns:
            How many connections are being closed.
        """
        when = time.time() if revoked_at is None else revoked_at
        self._revoked[user_id] = max(when, self._revoked.get(user_id, 0.0))
        victims = list(self._by_user.get(user_id, ()))
        for websocket in victims:
            self.discard(websocket)
            self._spawn(websocket.close(AuthCloseCode.REVOKED, reason))
        self.revoked += len(victims)
        counters.revocations += len(victims)
        if victims:
            logger.warning("revoked user %s: closing %d connection(s) on this node", user_id, len(victims))
        return len(victims)

    async def revoke(self, user_id: str, reason: str = "revoked") -> int:
        """Revoke ``user_id`` here and, through the transport, on every other node.

        Args:
            user_id: The user.
            reason: The close reason (at most 123 bytes).

        Returns:
            How many connections of this process are being closed.

        Raises:
            ValueError: ``reason`` is longer than a close frame allows.
            qakeapi.exceptions.BroadcastError: The transport could not take the revocation
                (for a cluster, :class:`~qakeapi.exceptions.ClusterUnavailableError`);
                this node's connections are closed all the same.
        """
        if len(reason.encode()) > 123:
            raise ValueError("a close reason is at most 123 bytes of UTF-8")
        revoked_at = time.time()
        closed = self.revoke_local(user_id, reason, revoked_at)
        if self.transport is not None:
            await self.transport.publish_revocation(user_id, reason, revoked_at)
        return closed
