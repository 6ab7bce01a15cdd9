"""The server side of one WebSocket connection: the only place ASGI WebSocket messages are touched."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from qakeapi.core.counters import counters, payload_size
from qakeapi.core.datastructures import State
from qakeapi.core.requests import HTTPConnection
from qakeapi.core.websockets.ending import TRANSPORT_ABORT, Ending
from qakeapi.core.websockets.fanout import message_for
from qakeapi.core.websockets.messages import Messages
from qakeapi.core.websockets.outbox import DEFAULT_SEND_POLICY, Outbox
from qakeapi.core.websockets.state import WebSocketState
from qakeapi.exceptions import WebSocketClosedError, WebSocketDisconnect
from qakeapi.status import CloseCode
from qakeapi.types import Message, Receive, Scope, Send

__all__ = ["TRANSPORT_ABORT", "WebSocket", "WebSocketState", "message_for"]

logger = logging.getLogger("qakeapi.websockets")

_ids = itertools.count(1)


_CONNECTING = WebSocketState.CONNECTING
_CONNECTED = WebSocketState.CONNECTED


class WebSocket(HTTPConnection, Messages, Ending):
    """One WebSocket connection, as seen by the application.

    ``client_state`` tracks what the peer did (connect, messages, disconnect);
    ``application_state`` tracks what the application did (accept, close). A call that does
    not fit the state raises :class:`RuntimeError` naming what was expected; sending after
    either side closed raises :class:`~qakeapi.exceptions.WebSocketClosedError`.

    Args:
        scope: The ASGI ``websocket`` scope.
        receive: The ASGI receive callable.
        send: The ASGI send callable.

    Attributes:
        id: A number unique to this connection within the process, stable for its lifetime.
        claims: The verified token claims of an authenticated connection (empty otherwise).
        auth_error: Why authentication failed (``"expired"``, ``"invalid_signature"`` ...),
            or ``None`` when it succeeded or was not attempted.
        accepted_subprotocol: The subprotocol chosen in :meth:`accept`, if any.
        close_code: The close code the peer sent, once it disconnected.
        closed_with: The close code this side closed with (or tried to), once it did; the HTTP
            status of a refused handshake (:meth:`deny`).
        outbox: The ordered, bounded way out of this connection: every frame it sends goes
            through it (fan-out writes through it too). Open exactly while the connection is.
    """

    __slots__ = (
        "_receive",
        "_send",
        "_state",
        "_user_id",
        "_user_watch",
        "accepted_subprotocol",
        "application_state",
        "auth_error",
        "claims",
        "client_state",
        "close_code",
        "closed_with",
        "id",
        "outbox",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            raise ValueError(f"expected a 'websocket' scope, got {scope['type']!r}")
        super().__init__(scope)
        self._receive = receive
        self._send = send
        self._state: State | None = None
        self.id = next(_ids)
        self.client_state = WebSocketState.CONNECTING
        self.application_state = WebSocketState.CONNECTING
        self._user_id: str | None = None
        self._user_watch: Callable[[WebSocket, str | None, str | None], None] | None = None
        self.claims: Mapping[str, Any] = {}
        self.auth_error: str | None = None
        self.accepted_subprotocol: str | None = None
        self.close_code: int | None = None
        self.closed_with: int | None = None
        self.outbox = Outbox(send, self._gave_up, DEFAULT_SEND_POLICY, self._unsendable)
        self.outbox.open = False  # opened by the accept

    def __repr__(self) -> str:
        return f"<WebSocket id={self.id} path={self.path!r} state={self.application_state.name}>"

    # -- request data -------------------------------------------------------------------

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in its order of preference."""
        return list(self.scope.get("subprotocols", ()))

    @property
    def user_id(self) -> str | None:
        """The authenticated user's id, set by an authentication middleware (``None``: not authenticated)."""
        return self._user_id

    @user_id.setter
    def user_id(self, user_id: str | None) -> None:
        old, self._user_id = self._user_id, user_id
        if self._user_watch is not None and old != user_id:
            self._user_watch(self, old, user_id)

    def _watch_user(self, watch: Callable[[WebSocket, str | None, str | None], None] | None) -> None:
        """Have ``watch(websocket, old, new)`` called when the user changes (the handler's index)."""
        self._user_watch = watch

    @property
    def state(self) -> State:
        """Free-form per-connection storage for the application."""
        if self._state is None:
            self._state = State()
        return self._state

    @property
    def authenticated(self) -> bool:
        """Whether an authentication middleware verified a user for this connection."""
        return self.user_id is not None

    @property
    def is_open(self) -> bool:
        """Whether the connection is accepted and neither side has closed it."""
        return self.application_state is WebSocketState.CONNECTED and self.client_state is WebSocketState.CONNECTED

    # -- the ASGI boundary --------------------------------------------------------------

    def _received(self, message: Message) -> Message:
        """The client direction's state machine: the one place its transitions are written."""
        kind = message["type"]
        state = self.client_state
        if state is _CONNECTED:
            if kind == "websocket.receive":
                return message
            if kind != "websocket.disconnect":
                raise RuntimeError(f"expected 'websocket.receive' or 'websocket.disconnect', got {kind!r}")
            self.client_state = WebSocketState.DISCONNECTED
            self.close_code = int(message.get("code", CloseCode.NORMAL_CLOSURE))
            if self.application_state is _CONNECTED:
                self.application_state = WebSocketState.DISCONNECTED
                self.outbox.open = False  # nothing more can reach the peer
        elif state is _CONNECTING:
            if kind != "websocket.connect":
                raise RuntimeError(f"expected 'websocket.connect', got {kind!r}")
            self.client_state = _CONNECTED
        else:
            raise RuntimeError("cannot receive: the peer has already disconnected")
        return message

    async def receive(self) -> Message:
        """Receive the next raw ASGI message. Prefer the typed helpers below.

        Returns:
            The ASGI message.

        Raises:
            RuntimeError: A disconnect was already received, or the server sent a message that
                does not fit the connection's state.
        """
        if self.client_state is WebSocketState.DISCONNECTED:
            raise RuntimeError("cannot receive: the peer has already disconnected")
        return self._received(await self._receive())

    async def send(self, message: Message) -> None:
        """Send a raw ASGI message. Prefer the typed helpers below.

        Args:
            message: The ASGI message.

        Raises:
            WebSocketClosedError: The connection is closed, or the server reports the peer gone.
            NotAcceptedError: A ``websocket.send`` before the accept (a ``RuntimeError``).
            RuntimeError: The message does not fit the connection's state.
        """
        state = self.application_state
        kind = message["type"]
        if state is _CONNECTED:
            if kind == "websocket.send":
                await self._send_data(message, message.get("text") or message.get("bytes") or b"")
                return
            if kind == "websocket.close":
                await self.close(int(message.get("code", CloseCode.NORMAL_CLOSURE)), message.get("reason") or "")
                return
            raise RuntimeError(f"expected 'websocket.send' or 'websocket.close', got {kind!r}")
        if state is WebSocketState.DISCONNECTED:
            raise WebSocketClosedError(f"cannot send on WebSocket {self.id}: it is closed")
        if kind == "websocket.accept":
            await self._handshake(message)
        elif kind == "websocket.close":
            await self.close(int(message.get("code", CloseCode.NORMAL_CLOSURE)), message.get("reason") or "")
        elif kind == "websocket.send":
            raise self._cannot_send(kind)
        else:
            raise RuntimeError(f"expected 'websocket.accept' or 'websocket.close', got {kind!r}")

    async def _handshake(self, message: Message) -> None:
        try:
            await self._send(message)
        except OSError as exc:
            self.application_state = WebSocketState.DISCONNECTED
            raise WebSocketClosedError(f"cannot accept WebSocket {self.id}: {exc}") from exc
        self.application_state = _CONNECTED
        self.outbox.open = self.client_state is _CONNECTED

    # -- handshake and closing ----------------------------------------------------------

    async def accept(
        self,
        subprotocol: str | None = None,
        headers: Iterable[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Accept the handshake.

        Args:
            subprotocol: One of :attr:`subprotocols` to select, or ``None``.
            headers: Extra response headers for the handshake.

        Raises:
            ValueError: ``subprotocol`` was not offered by the client.
            RuntimeError: The connection was already accepted or closed.
        """
        if self.application_state is not WebSocketState.CONNECTING:
            raise RuntimeError(f"cannot accept WebSocket {self.id}: it is {self.application_state.name}")
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
        if self.client_state is WebSocketState.CONNECTING:
            await self.receive()
        message: Message = {"type": "websocket.accept", "subprotocol": subprotocol}
        if headers is not None:
            message["headers"] = list(headers)
        await self._handshake(message)
        self.accepted_subprotocol = subprotocol

    async def deny(
        self,
        status: int = 403,
        headers: Iterable[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        *,
        reason: str = "",
    ) -> bool:
        """Refuse the handshake with an HTTP response, before the upgrade.

        Uses the ASGI ``websocket.http.response`` extension where the server offers it;
        elsewhere the handshake is refused with a close (servers answer it with a bare 403).

        Args:
            status: The HTTP status, 400 to 599.
            headers: Response headers (for instance ``WWW-Authenticate``).
            body: The response body.
            reason: The reason of the fallback close, used only where the server lacks the
                extension (daphne, which answers that close with a bare 403).

        Returns:
            Whether the HTTP response was sent (``False``: the server lacks the extension and
            the fallback close was used).

        Raises:
            ValueError: ``status`` is not an error status.
            RuntimeError: The connection was already accepted or closed.
        """
        if self.application_state is not WebSocketState.CONNECTING:
            raise RuntimeError(f"cannot deny WebSocket {self.id}: it is {self.application_state.name}")
        if not 400 <= status < 600:
            raise ValueError(f"a denial needs an error status (400-599), not {status}")
        if self.client_state is WebSocketState.CONNECTING:
            await self.receive()
        self.application_state = WebSocketState.DISCONNECTED
        self.outbox.open = False
        self.closed_with = status  # an HTTP status: the handshake was refused
        try:
            if "websocket.http.response" in (self.scope.get("extensions") or {}):
                start: Message = {"type": "websocket.http.response.start", "status": status}
                start["headers"] = list(headers or ())
                await self._send(start)
                await self._send({"type": "websocket.http.response.body", "body": body})
                return True
            await self._send({"type": "websocket.close", "code": int(CloseCode.POLICY_VIOLATION), "reason": reason})
        except OSError:
            pass  # the peer is already gone
        return False

    # -- receiving ----------------------------------------------------------------------

    async def receive_message(self) -> str | bytes:
        """Receive the next data message.

        Returns:
            The text (``str``) or binary (``bytes``) payload.

        Messages the peer sent before it saw a close from this side can still be received.

        Raises:
            WebSocketDisconnect: The peer closed the connection (again on every later call).
            RuntimeError: The connection was not accepted.
        """
        if self.client_state is _CONNECTED and self.application_state is not _CONNECTING:
            message = await self._receive()
            # A data message while connected changes no state: _received() is for the rest.
            if message["type"] == "websocket.receive" and self.client_state is _CONNECTED:
                text = message.get("text")
                data = text if text is not None else (message.get("bytes") or b"")
                counters.received += 1
                counters.received_bytes += len(data) if type(data) is bytes or data.isascii() else payload_size(data)
                return data
            self._received(message)  # a disconnect (or a message that does not fit: RuntimeError)
            raise WebSocketDisconnect(self.close_code or CloseCode.NORMAL_CLOSURE, message.get("reason") or "")
        if self.application_state is WebSocketState.CONNECTING:
            raise RuntimeError(f"cannot receive on WebSocket {self.id}: call accept() first")
        raise WebSocketDisconnect(self.close_code or CloseCode.NORMAL_CLOSURE)

    # -- sending ------------------------------------------------------------------------
