"""The server side of one WebSocket connection: the only place ASGI WebSocket messages are touched."""

from __future__ import annotations

import enum
import itertools
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from types import CoroutineType
from typing import Any

from qakeapi.core.codec import decode_json, encode_json
from qakeapi.core.datastructures import Headers, QueryParams, State
from qakeapi.core.websockets.outbox import DEFAULT_SEND_POLICY, Outbox, SendPolicy, finish_send, start_send
from qakeapi.exceptions import WebSocketClosedError, WebSocketDisconnect
from qakeapi.status import CloseCode
from qakeapi.types import Message, Receive, Scope, Send

__all__ = ["WebSocket", "WebSocketState"]

logger = logging.getLogger("qakeapi.websockets")

_ids = itertools.count(1)


class WebSocketState(enum.Enum):
    """The state of one direction of a connection."""

    CONNECTING = 0
    CONNECTED = 1
    DISCONNECTED = 2


_DONE = object()
_UNSENDABLE_CODES = frozenset({CloseCode.NO_STATUS_RECEIVED, CloseCode.ABNORMAL_CLOSURE, 1015})
_CONNECTING = WebSocketState.CONNECTING
_CONNECTED = WebSocketState.CONNECTED


class WebSocket:
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
        user_id: The authenticated user's id, set by an authentication middleware.
        claims: The verified token claims of an authenticated connection (empty otherwise).
        auth_error: Why authentication failed (``"expired"``, ``"invalid_signature"`` ...),
            or ``None`` when it succeeded or was not attempted.
        accepted_subprotocol: The subprotocol chosen in :meth:`accept`, if any.
        close_code: The close code the peer sent, once it disconnected.
        send_policy: How many frames :meth:`send_nowait` may queue for this connection while
            it reads slowly, and what happens beyond (see
            :class:`~qakeapi.core.websockets.outbox.SendPolicy`).
        dropped: How many frames the send policy dropped for this connection.
    """

    __slots__ = (
        "_outbox",
        "_receive",
        "_send",
        "_state",
        "accepted_subprotocol",
        "application_state",
        "auth_error",
        "claims",
        "client_state",
        "close_code",
        "dropped",
        "id",
        "scope",
        "send_policy",
        "user_id",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            raise ValueError(f"expected a 'websocket' scope, got {scope['type']!r}")
        self.scope = scope
        self._receive = receive
        self._send = send
        self._state: State | None = None
        self.id = next(_ids)
        self.client_state = WebSocketState.CONNECTING
        self.application_state = WebSocketState.CONNECTING
        self.user_id: str | None = None
        self.claims: Mapping[str, Any] = {}
        self.auth_error: str | None = None
        self.accepted_subprotocol: str | None = None
        self.close_code: int | None = None
        self.send_policy: SendPolicy = DEFAULT_SEND_POLICY
        self.dropped = 0
        self._outbox: Outbox | None = None

    def __repr__(self) -> str:
        return f"<WebSocket id={self.id} path={self.path!r} state={self.application_state.name}>"

    # -- request data -------------------------------------------------------------------

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
        """The handshake request's headers."""
        return Headers(self.scope.get("headers", ()))

    @property
    def query_params(self) -> QueryParams:
        """The handshake URL's query parameters."""
        return QueryParams(self.scope.get("query_string", b""))

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in its order of preference."""
        return list(self.scope.get("subprotocols", ()))

    @property
    def client(self) -> tuple[str, int] | None:
        """The peer's ``(host, port)``, when the server knows it."""
        client = self.scope.get("client")
        return (str(client[0]), int(client[1])) if client else None

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

    async def receive(self) -> Message:
        """Receive the next raw ASGI message. Prefer the typed helpers below.

        Returns:
            The ASGI message.

        Raises:
            RuntimeError: A disconnect was already received.
        """
        if self.client_state is WebSocketState.CONNECTING:
            message = await self._receive()
            if message["type"] != "websocket.connect":
                raise RuntimeError(f"expected 'websocket.connect', got {message['type']!r}")
            self.client_state = WebSocketState.CONNECTED
            return message
        if self.client_state is WebSocketState.CONNECTED:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self.client_state = WebSocketState.DISCONNECTED
            elif kind != "websocket.receive":
                raise RuntimeError(f"expected 'websocket.receive' or 'websocket.disconnect', got {kind!r}")
            return message
        raise RuntimeError("cannot receive: the peer has already disconnected")

    async def send(self, message: Message) -> None:
        """Send a raw ASGI message. Prefer the typed helpers below.

        Args:
            message: The ASGI message.

        Raises:
            WebSocketClosedError: The connection is closed, or the server reports the peer gone.
            RuntimeError: The message does not fit the connection's state.
        """
        state = self.application_state
        kind = message["type"]
        if state is WebSocketState.CONNECTED:
            if self.client_state is WebSocketState.DISCONNECTED:
                self.application_state = WebSocketState.DISCONNECTED
                raise WebSocketClosedError(f"cannot send on WebSocket {self.id}: the peer has disconnected")
            if kind not in ("websocket.send", "websocket.close"):
                raise RuntimeError(f"expected 'websocket.send' or 'websocket.close', got {kind!r}")
        elif state is WebSocketState.CONNECTING:
            if kind not in ("websocket.accept", "websocket.close"):
                raise RuntimeError(f"expected 'websocket.accept' or 'websocket.close', got {kind!r}")
        else:
            raise WebSocketClosedError(f"cannot send on WebSocket {self.id}: it is closed")
        while self._outbox is not None:  # keep order behind frames queued for a slow reader
            await self._outbox.wait_drained()
            if self.application_state is WebSocketState.DISCONNECTED:
                raise WebSocketClosedError(f"cannot send on WebSocket {self.id}: it was closed")
        try:
            await self._send(message)
        except OSError as exc:
            self.application_state = WebSocketState.DISCONNECTED
            raise WebSocketClosedError(f"cannot send on WebSocket {self.id}: {exc}") from exc
        if kind == "websocket.accept":
            self.application_state = WebSocketState.CONNECTED
        elif kind == "websocket.close":
            self.application_state = WebSocketState.DISCONNECTED

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
        await self.send(message)
        self.accepted_subprotocol = subprotocol

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection, or refuse the handshake if it was not accepted yet.

        Idempotent, also when called concurrently: the first call closes, the others return.
        Frames still queued for a slow reader are dropped (and counted in :attr:`dropped`).

        Args:
            code: The close code; see :class:`~qakeapi.status.CloseCode`.
            reason: A short reason sent to the peer (at most 123 bytes of UTF-8).

        Raises:
            ValueError: ``reason`` is longer than 123 bytes, or ``code`` cannot be sent.
        """
        if self.application_state is WebSocketState.DISCONNECTED:
            return
        if len(reason.encode()) > 123:
            raise ValueError("a close reason is at most 123 bytes of UTF-8")
        if code in _UNSENDABLE_CODES or not 1000 <= code < 5000:
            raise ValueError(f"close code {code} cannot be sent")
        self.application_state = WebSocketState.DISCONNECTED  # before any await: one close only
        if self.client_state is WebSocketState.DISCONNECTED:
            return
        if self._outbox is not None:
            self._outbox.discard()
        try:
            await self._send({"type": "websocket.close", "code": int(code), "reason": reason})
        except OSError:
            pass  # the peer is already gone
        except RuntimeError as exc:  # the server closed it itself (e.g. keepalive timeout)
            logger.debug("WebSocket %s: the server refused the close: %s", self.id, exc)

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
            # The hot path: one await on the server's receive, no intermediate frames.
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                return text if text is not None else (message.get("bytes") or b"")
            if kind != "websocket.disconnect":
                raise RuntimeError(f"expected 'websocket.receive' or 'websocket.disconnect', got {kind!r}")
            self.client_state = WebSocketState.DISCONNECTED
        elif self.application_state is WebSocketState.CONNECTING:
            raise RuntimeError(f"cannot receive on WebSocket {self.id}: call accept() first")
        elif self.client_state is WebSocketState.DISCONNECTED:
            raise WebSocketDisconnect(self.close_code or CloseCode.NORMAL_CLOSURE)
        else:
            message = await self.receive()
        if message["type"] == "websocket.disconnect":
            self.application_state = WebSocketState.DISCONNECTED
            self.close_code = int(message.get("code", CloseCode.NORMAL_CLOSURE))
            raise WebSocketDisconnect(self.close_code, message.get("reason") or "")
        text = message.get("text")
        if text is not None:
            return str(text)
        return bytes(message.get("bytes") or b"")

    async def receive_text(self) -> str:
        """Receive a text message.

        Returns:
            The text.

        Raises:
            WebSocketDisconnect: The peer closed the connection.
            TypeError: The peer sent a binary message.
        """
        data = await self.receive_message()
        if not isinstance(data, str):
            raise TypeError("expected a text message, got a binary one")
        return data

    async def receive_bytes(self) -> bytes:
        """Receive a binary message.

        Returns:
            The bytes.

        Raises:
            WebSocketDisconnect: The peer closed the connection.
            TypeError: The peer sent a text message.
        """
        data = await self.receive_message()
        if not isinstance(data, bytes):
            raise TypeError("expected a binary message, got a text one")
        return data

    async def receive_json(self) -> Any:
        """Receive a message and decode it as JSON (text or UTF-8 bytes).

        Returns:
            The decoded value.

        Raises:
            WebSocketDisconnect: The peer closed the connection.
            ValueError: The message is not valid JSON.
        """
        return decode_json(await self.receive_message())

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str | bytes]:
        try:
            while True:
                yield await self.receive_message()
        except WebSocketDisconnect:
            return

    # -- sending ------------------------------------------------------------------------

    def send_nowait(self, data: str | bytes) -> bool:
        """Start sending a frame without waiting for it: the fan-out primitive.

        The frame is handed to the server at once when it can take it; otherwise it waits in
        this connection's bounded outbox, and :attr:`send_policy` decides what happens when
        that is full. Frames are written in the order given.

        Args:
            data: ``str`` for a text frame, ``bytes`` for a binary one.

        Returns:
            ``False`` when the connection is closed (or was just closed by the policy), so the
            caller can forget it; ``True`` otherwise.
        """
        if isinstance(data, str):
            return self._post({"type": "websocket.send", "text": data})
        return self._post({"type": "websocket.send", "bytes": data})

    def _post(self, message: Message) -> bool:
        """:meth:`send_nowait` for a ready-made message (fan-out shares one among recipients)."""
        if self.application_state is not _CONNECTED or self.client_state is not _CONNECTED:
            return False
        outbox = self._outbox
        if outbox is not None:
            return outbox.put(message)
        sending = self._send(message)
        try:
            if type(sending) is CoroutineType:  # step it here: most sends complete at once
                steps = sending.__await__()
                waiter = next(steps, _DONE)  # a default instead of StopIteration: cheaper
                if waiter is _DONE:
                    return True
                blocked = finish_send(steps, waiter)
            else:
                started = start_send(sending)
                if started is None:
                    return True
                blocked = started
        except OSError as exc:  # the server reports the peer gone
            logger.debug("WebSocket %s: send failed, treating it as closed: %r", self.id, exc)
            self.application_state = WebSocketState.DISCONNECTED
            return False
        except Exception as exc:  # the server refused the message (e.g. it closed the connection itself)
            logger.warning("WebSocket %s: the server refused a frame, treating it as closed: %r", self.id, exc)
            self.application_state = WebSocketState.DISCONNECTED
            return False
        self._outbox = Outbox(self, blocked, self._send)
        return True

    def _abandon(self) -> None:
        """Mark the connection closed from the application's side (used by the outbox)."""
        self.application_state = WebSocketState.DISCONNECTED

    def _outbox_done(self, outbox: Outbox) -> None:
        if self._outbox is outbox:
            self._outbox = None

    async def send_text(self, data: str) -> None:
        """Send a text message.

        Args:
            data: The text.

        Raises:
            WebSocketClosedError: The connection is closed.
        """
        await self._send_data({"type": "websocket.send", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message.

        Args:
            data: The bytes.

        Raises:
            WebSocketClosedError: The connection is closed.
        """
        await self._send_data({"type": "websocket.send", "bytes": data})

    async def send_json(self, data: Any, mode: str = "text") -> None:
        """Send ``data`` encoded as compact JSON.

        Args:
            data: A JSON-serialisable value.
            mode: ``"text"`` for a text frame, ``"binary"`` for UTF-8 bytes.

        Raises:
            WebSocketClosedError: The connection is closed.
            TypeError: ``data`` is not JSON-serialisable.
            ValueError: ``mode`` is neither ``"text"`` nor ``"binary"``.
        """
        if mode == "text":
            message: Message = {"type": "websocket.send", "text": encode_json(data)}
        elif mode == "binary":
            message = {"type": "websocket.send", "bytes": encode_json(data).encode()}
        else:
            raise ValueError(f"mode must be 'text' or 'binary', not {mode!r}")
        # The fast path of _send_data, inlined: send_json is the most used call of all.
        if self.application_state is _CONNECTED and self.client_state is _CONNECTED and self._outbox is None:
            try:
                await self._send(message)
            except OSError as exc:
                raise self._closed_by(exc) from exc
        else:
            await self.send(message)

    async def _send_data(self, message: Message) -> None:
        """Send a ``websocket.send`` message: the hot path of every send helper."""
        if self.application_state is _CONNECTED and self.client_state is _CONNECTED and self._outbox is None:
            try:
                await self._send(message)
            except OSError as exc:
                raise self._closed_by(exc) from exc
        else:
            await self.send(message)

    def _closed_by(self, exc: OSError) -> WebSocketClosedError:
        """Record that the server reported the peer gone; return the error to raise."""
        self.application_state = WebSocketState.DISCONNECTED
        return WebSocketClosedError(f"cannot send on WebSocket {self.id}: {exc}")
