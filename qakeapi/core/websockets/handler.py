"""Event-driven WebSocket handling: connect, message and disconnect hooks registered by decorator."""

from __future__ import annotations

import logging
import time
from collections.abc import Set as AbstractSet
from typing import Any

from qakeapi.core.codec import strict_decoder
from qakeapi.core.counters import MESSAGE_SAMPLE, TIMING_SCOPE_KEY
from qakeapi.core.limits import (
    DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_RATE_LIMIT,
    ConnectionCounter,
    PenaltyBox,
    RateLimit,
    RejectionLog,
    cap,
    connection_counter,
)
from qakeapi.core.redaction import install_log_redaction
from qakeapi.core.websockets.connection import WebSocket, WebSocketState
from qakeapi.core.websockets.fanout import as_frame, deliver_in_order
from qakeapi.core.websockets.hooks import ConnectionHook, Hooks, MessageHook, MessageInterceptor
from qakeapi.core.websockets.outbox import DEFAULT_SEND_POLICY, SendPolicy, end_pressure, feel_pressure, relieve
from qakeapi.core.websockets.refusals import Refusals
from qakeapi.core.websockets.registry import Connections
from qakeapi.exceptions import UnencodableJSONError, WebSocketDisconnect
from qakeapi.status import CloseCode

__all__ = ["AUTH_LINK_SCOPE_KEY", "ConnectionHook", "MessageHook", "MessageInterceptor", "WebSocketHandler"]

logger = logging.getLogger("qakeapi.websockets")

AUTH_LINK_SCOPE_KEY = "qakeapi.auth_link"
"""The scope key under which an authentication middleware leaves, for the connection it
authenticated, the :data:`MessageInterceptor` of its in-band ``{"type": "auth"}`` messages. A
handler hands such a message that none of its own interceptors consumed to it: whatever wraps
the handler, an in-band token never reaches ``on_message``."""

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20

_decode = strict_decoder().decode  # json.loads without its per-call argument checks; no NaN
_CONNECTED = WebSocketState.CONNECTED  # an enum member read from its class costs ~60 ns on 3.11, per message


class WebSocketHandler(Hooks, Refusals):
    """Runs a connection through hooks registered with decorators.

    ``on_connect`` hooks run once the connection is accepted; ``on_message`` hooks run for each
    message, in order; ``on_disconnect`` hooks run exactly once when the connection ends, however
    it ends. A text message that is valid JSON reaches ``on_message`` decoded; other text arrives
    as ``str`` and binary messages as ``bytes``. Valid means strict JSON (RFC 8259) that can be
    encoded back and sent as UTF-8 (:func:`~qakeapi.core.codec.decode_json`): text whose value
    could not be (``NaN`` or ``Infinity``, a lone surrogate such as ``"\\ud800"``, a number out
    of range such as ``1e400``, nesting deeper than :data:`~qakeapi.core.codec.MAX_DEPTH`) is
    refused as JSON and arrives as the ``str`` itself, like any other text that is not JSON, so
    the application answers it as it answers bad JSON and the connection keeps working. The
    first such message of each kind on a connection is logged at WARNING, in one line, never
    with a traceback; the rest are counted and summed up in one line when the connection ends.

    An exception escaping a hook is logged with the connection's context; after ``on_message``
    the connection keeps going, after ``on_connect`` it is closed with
    :attr:`~qakeapi.status.CloseCode.INTERNAL_ERROR`.

    Limits (:mod:`qakeapi.core.limits`), each rejection counted in :attr:`rejections` and
    logged once per kind and client, not per message: a message over ``max_message_size``
    closes with 1009; messages faster than ``rate_limit`` close with 1008, and the flooder is
    then refused new handshakes for the limit's ``penalty``
    (:class:`~qakeapi.core.limits.RateLimit`; HTTP 429 with ``Retry-After``): its user at
    once, its address at the second such close within a minute
    (:class:`~qakeapi.core.limits.PenaltyBox`), so that other clients behind the same NAT keep
    connecting after one flood; a handshake from an address that has
    ``max_connections_per_ip`` connections open is refused. Refusals are HTTP 429 before the
    upgrade where the server supports it, else 403; 1013 when already accepted (by a
    middleware that chose a subprotocol).

    Constructing a handler installs :func:`~qakeapi.core.redaction.install_log_redaction`, so
    the server's log lines never carry a token from a query string.

    Args:
        max_message_size: Messages larger than this many bytes close the connection with
            :attr:`~qakeapi.status.CloseCode.MESSAGE_TOO_BIG`. ``None`` disables the check.
            Also give the server the limit (``uvicorn --ws-max-size``, 16 MiB by default), so
            it refuses a large message before assembling it in memory.
        send_policy: The slow-reader policy for this handler's connections (how many
            broadcast frames may wait for one connection, and what happens beyond); the
            default is :data:`~qakeapi.core.websockets.outbox.DEFAULT_SEND_POLICY`.
        rate_limit: The per-connection message rate limit; ``None`` disables it.
        max_connections_per_ip: Connections one client address may have open at once (counted
            in ``connections``); ``None`` disables the cap.
        connections: The per-address counter; by default one shared by the whole process.
        penalties: The users and addresses refused after rate-limit closes; by default one
            for this handler. Give several handlers the same :class:`~qakeapi.core.limits.PenaltyBox`
            to refuse a flooder on all of their paths.
    """

    def __init__(
        self,
        *,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        send_policy: SendPolicy = DEFAULT_SEND_POLICY,
        rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
        max_connections_per_ip: int | None = DEFAULT_MAX_CONNECTIONS_PER_IP,
        connections: ConnectionCounter = connection_counter,
        penalties: PenaltyBox | None = None,
    ) -> None:
        self.max_message_size = max_message_size
        self.send_policy = send_policy
        self.rate_limit = rate_limit
        self.max_connections_per_ip = cap("max_connections_per_ip", max_connections_per_ip)
        self.per_ip = connections
        self.penalties = penalties if penalties is not None else PenaltyBox()
        self.rejections = RejectionLog(logger)
        """Rejections by kind (``rejections.counts``): ``"size"``, ``"rate"``, ``"rate_penalty"``
        (handshakes refused during a penalty), ``"connections_per_ip"``, ``"auth_unbound"`` (in-band
        auth messages that only the connection's middleware, not a bound one, took)."""
        super().__init__()
        self._index = Connections()
        self._connections = self._index.outboxes  # what a broadcast walks
        install_log_redaction()

    # -- connections --------------------------------------------------------------------

    @property
    def connections(self) -> AbstractSet[WebSocket]:
        """The connections this handler is running now (a live, read-only view)."""
        return self._index.view()

    def connection(self, connection_id: int) -> WebSocket | None:
        """The connection with :attr:`WebSocket.id <qakeapi.core.websockets.connection.WebSocket.id>`
        ``connection_id`` that this handler is running, if any (a lookup, not a scan)."""
        return self._index.get(connection_id)

    def connections_of(self, user_id: str) -> list[WebSocket]:
        """The connections this handler runs that are authenticated as ``user_id`` now (a lookup, not a scan)."""
        return self._index.of_user(user_id)

    async def broadcast(self, message: Any, *, exclude: WebSocket | None = None) -> int:
        """Send ``message`` to every connection of this handler on this process.

        The message is encoded once (``str`` and ``bytes`` are sent as they are, anything else
        as JSON text) and the same frame is written to every recipient.

        Args:
            message: The message.
            exclude: A connection to leave out (typically the sender).

        Returns:
            How many connections it was sent to.
        """
        frame = as_frame(message)
        connections = self._connections
        if exclude is not None and exclude in connections:
            connections = connections.copy()
            del connections[exclude]
            members, outboxes = tuple(connections), tuple(connections.values())
        else:
            members, outboxes = self._index.snapshot()
        dead = await deliver_in_order(frame, members, outboxes=outboxes)
        return len(members) - len(dead)

    # -- running a connection -----------------------------------------------------------

    async def handle_connection(self, websocket: WebSocket) -> None:
        """Accept ``websocket`` (unless already accepted) and run it until it closes.

        Args:
            websocket: The connection, typically the argument of an ``@app.websocket`` endpoint.
        """
        websocket.send_policy = self.send_policy
        client = websocket.client
        address = client[0] if client is not None else None
        if self.penalties:  # an empty box is false: no lookup then
            now = time.monotonic()
            for key in (address, None if websocket.user_id is None else "user:" + websocket.user_id):
                wait = 0.0 if key is None else self.penalties.retry_after(key, now)
                if wait > 0.0:
                    await self._refuse_penalized(websocket, str(key), wait)
                    return
        if address is not None and not self.per_ip.acquire(address, self.max_connections_per_ip):
            await self._refuse_address(websocket, address)
            return
        refused: dict[str, int] | None = None  # messages refused as JSON, by kind
        pressure = None
        try:
            if websocket.application_state is WebSocketState.CONNECTING:
                await websocket.accept()
            self._index.add(websocket)
            try:
                if await self._run_connect_hooks(websocket):
                    # The receive loop, inline: this frame is suspended in every receive, and each
                    # level of nesting between the task and the server's receive costs twice a message.
                    limit = self.max_message_size
                    hooks = self._message_hooks
                    interceptors = self._interceptors  # the list itself: one registered later is seen
                    receive = websocket.receive_message
                    clock = time.monotonic
                    bucket = self.rate_limit.bucket(clock()) if self.rate_limit is not None else None
                    auth_link = websocket.scope.get(AUTH_LINK_SCOPE_KEY)
                    if auth_link in self._interceptors:  # bound to this handler: its interceptor takes them
                        auth_link = None
                    pressed, pressure = feel_pressure()
                    timed, tick = TIMING_SCOPE_KEY in websocket.scope, 0  # metrics on: hooks timed, sampled
                    while websocket.application_state is _CONNECTED:
                        if pressed:  # a message of ours filled a reader's queue past half: let it drain
                            await relieve(pressed)
                        data = await receive()
                        if bucket is not None and not bucket.take(clock()):
                            await self._too_fast(websocket)
                            break
                        message: Any = data
                        if isinstance(data, str):
                            # UTF-8 takes at most 4 bytes a character: only long text needs encoding to measure.
                            if limit is not None and len(data) * 4 > limit and len(data.encode()) > limit:
                                await self._too_big(websocket, len(data.encode()))
                                break
                            try:
                                message = _decode(data)
                            except UnencodableJSONError as exc:  # NaN, "\ud800", 1e400 ...: the text itself
                                if refused is None:
                                    refused = {}
                                seen = refused.get(exc.kind, 0)
                                refused[exc.kind] = seen + 1
                                if not seen:
                                    _log_refused(websocket, exc)
                            except ValueError:  # not JSON: the text itself
                                pass
                        elif limit is not None and len(data) > limit:
                            await self._too_big(websocket, len(data))
                            break
                        if interceptors and await self._intercepted(websocket, message):
                            continue
                        if auth_link is not None and type(message) is dict and message.get("type") == "auth":
                            await self._stray_auth(auth_link, websocket, message)
                            continue
                        if timed:
                            tick += 1
                            if tick >= MESSAGE_SAMPLE:
                                tick = 0
                                await self._run_timed(websocket, message)
                                continue
                        for hook in hooks:
                            try:
                                await hook(websocket, message)
                            except Exception as exc:
                                self._hook_failed(hook, websocket, exc)
            except WebSocketDisconnect as exc:
                logger.debug("WebSocket %s disconnected with code %s", websocket.id, exc.code)
            except Exception:
                # Not a peer's doing: tell the peer it was an internal error, let the app log it.
                await websocket.close(CloseCode.INTERNAL_ERROR, "internal error")
                raise
            finally:
                if pressure is not None:
                    end_pressure(pressure)
                if refused is not None:
                    _log_refused_counts(websocket, refused)
                self._index.discard(websocket)
                for disconnect_hook in self._disconnect_hooks:
                    await self._call(disconnect_hook, websocket, "on_disconnect")
                await websocket.close()
        finally:
            if address is not None:
                self.per_ip.release(address)

    async def _stray_auth(self, auth_link: MessageInterceptor, websocket: WebSocket, message: Any) -> None:
        """An in-band auth message that no interceptor of this handler took: the middleware of the
        connection handles it (never ``on_message``), and the missing link is logged once."""
        self.rejections.reject(
            "auth_unbound",
            "",
            "WebSocket %s (path=%s): an in-band auth message reached a handler that is not bound to the "
            "authentication middleware that ran the connection; it went to the middleware, not on_message. "
            "Bind them where both are created: auth_middleware.bind(ws_handler)",
            websocket.id,
            websocket.path,
        )
        try:
            await auth_link(websocket, message)
        except Exception as exc:
            self._hook_failed(auth_link, websocket, exc)


def _log_refused(websocket: WebSocket, exc: UnencodableJSONError) -> None:
    logger.warning(
        "WebSocket %s (path=%s client=%s user=%s): a message was refused as JSON (%s): %s; it is delivered "
        "as text (further ones of this kind on this connection are counted, not logged)",
        websocket.id,
        websocket.path,
        websocket.client,
        websocket.user_id,
        exc.kind,
        exc,
    )


def _log_refused_counts(websocket: WebSocket, refused: dict[str, int]) -> None:
    for kind, count in sorted(refused.items()):
        if count > 1:
            logger.info(
                "WebSocket %s (path=%s): %d messages were refused as JSON (%s) and delivered as text",
                websocket.id,
                websocket.path,
                count,
                kind,
            )
