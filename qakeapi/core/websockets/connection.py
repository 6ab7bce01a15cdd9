"""The server side of one WebSocket connection: the only place ASGI WebSocket messages are touched."""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import sys
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from typing import Any

from qakeapi.core.codec import check_sendable, decode_json, encode_json
from qakeapi.core.datastructures import Headers, QueryParams, State
from qakeapi.core.limits import RejectionLog
from qakeapi.core.websockets.outbox import DEFAULT_SEND_POLICY, GiveUp, Outbox, SendPolicy, _keep, fan_out, stats
from qakeapi.exceptions import NotAcceptedError, WebSocketClosedError, WebSocketDisconnect
from qakeapi.status import CloseCode
from qakeapi.types import Message, Receive, Scope, Send

__all__ = ["TRANSPORT_ABORT", "WebSocket", "WebSocketState", "message_for"]

logger = logging.getLogger("qakeapi.websockets")

_ids = itertools.count(1)
_unsendable_log = RejectionLog(logger)  # frames the server could not encode: logged once per path


class WebSocketState(enum.Enum):
    """The state of one direction of a connection."""

    CONNECTING = 0
    CONNECTED = 1
    DISCONNECTED = 2


TRANSPORT_ABORT = "qakeapi.transport.abort"
"""The ASGI extension of a server that lets the application abort a connection's transport, and
the ``type`` of the send event that does it (see
:mod:`qakeapi.core.websockets.uvicorn_protocol`)."""

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
        outbox: The ordered, bounded way out of this connection: every frame it sends goes
            through it (fan-out writes through it too). Open exactly while the connection is.
    """

    __slots__ = (
        "_receive",
        "_send",
        "_state",
        "accepted_subprotocol",
        "application_state",
        "auth_error",
        "claims",
        "client_state",
        "close_code",
        "id",
        "outbox",
        "scope",
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
        self.outbox = Outbox(send, self._gave_up, DEFAULT_SEND_POLICY, self._unsendable)
        self.outbox.open = False  # opened by the accept

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
                await self._send_data(message)
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
            reason: The reason of the fallback close (a client of the test client sees it; a
                server answers that close with a bare 403).

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

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection, or refuse the handshake if it was not accepted yet.

        Idempotent, also when called concurrently: the first call closes, the others return.
        Frames still queued for a slow reader are dropped (and counted in :attr:`dropped`).
        The wait for the server to take the close frame is bounded by the send policy's
        ``close_timeout``; past it the close is given up (logged and counted in
        :data:`~qakeapi.core.websockets.outbox.stats`) and the peer is left to the server.

        Args:
            code: The close code; see :class:`~qakeapi.status.CloseCode`.
            reason: A short reason sent to the peer (at most 123 bytes of UTF-8).

        Raises:
            ValueError: ``reason`` is longer than 123 bytes, or ``code`` cannot be sent.
        """
        state = self.application_state
        if state is WebSocketState.DISCONNECTED:
            return
        if len(reason.encode()) > 123:
            raise ValueError("a close reason is at most 123 bytes of UTF-8")
        if code in _UNSENDABLE_CODES or not 1000 <= code < 5000:
            raise ValueError(f"close code {code} cannot be sent")
        self.application_state = WebSocketState.DISCONNECTED  # before any await: one close only
        message: Message = {"type": "websocket.close", "code": int(code), "reason": reason}
        outbox = self.outbox
        if self.client_state is WebSocketState.DISCONNECTED:
            outbox.open = False
            return
        try:
            if state is _CONNECTING:
                outbox.open = False
                await self._send(message)
            else:
                await _within(outbox.policy.close_timeout, outbox.send_last(message))
        except asyncio.TimeoutError:  # before OSError: TimeoutError is one
            stats.close_timeouts += 1
            logger.warning(
                "WebSocket %s (path=%s): the close frame (code %d) was not taken within %.1fs "
                "(the peer is not reading); left to the server",
                self.id,
                self.path,
                code,
                outbox.policy.close_timeout,
            )
        except OSError:
            pass  # the peer is already gone
        except RuntimeError as exc:  # the server closed it itself (e.g. keepalive timeout)
            logger.debug("WebSocket %s: the server refused the close: %s", self.id, exc)

    def _gave_up(self, why: GiveUp, error: BaseException | None) -> Message | None:
        """The outbox stopped taking frames: the connection is over for the application."""
        was_open = self.application_state is _CONNECTED
        self.application_state = WebSocketState.DISCONNECTED
        outbox = self.outbox
        if why is GiveUp.SLOW_CONSUMER:
            policy = outbox.policy
            logger.warning(
                "WebSocket %s (path=%s) closed as a slow consumer: more than %d frames waiting; "
                "%d frame(s) dropped; closing with code %d",
                self.id,
                self.path,
                policy.max_queue,
                outbox.dropped,
                policy.close_code,
            )
            if TRANSPORT_ABORT in (self.scope.get("extensions") or {}):
                asyncio.get_running_loop().call_later(policy.close_timeout, self._abort_if_unread)
            return {"type": "websocket.close", "code": int(policy.close_code), "reason": "slow consumer"}
        if was_open and self.client_state is _CONNECTED:
            logger.warning(
                "WebSocket %s (path=%s): sending failed, treating the connection as closed (%d frame(s) dropped): %s",
                self.id,
                self.path,
                outbox.dropped,
                "its sends were cancelled" if isinstance(error, asyncio.CancelledError) else repr(error),
            )
        return None

    def _unsendable(self, error: UnicodeEncodeError) -> None:
        """The server could not encode a frame for this connection: it was dropped, the connection kept."""
        culprit = error.object[error.start : error.start + 1]
        _unsendable_log.reject(
            "unsendable",
            self.path,
            "WebSocket %s (path=%s client=%s user=%s): a text frame could not be sent (%s %s at position %d); "
            "the frame was dropped for this connection, which is kept",
            self.id,
            self.path,
            self.client,
            self.user_id,
            error.reason,
            culprit.encode("unicode_escape").decode("ascii"),
            error.start,
        )

    def _abort_if_unread(self) -> None:
        """A slow consumer's close frame is still not taken by the server: abort its transport."""
        if not self.outbox.busy or self.client_state is WebSocketState.DISCONNECTED:
            return  # the close went out (the peer read again), or the peer is gone
        stats.aborted += 1
        logger.warning(
            "WebSocket %s (path=%s): the slow consumer read nothing for %.1fs after it was closed; "
            "aborting its transport",
            self.id,
            self.path,
            self.outbox.policy.close_timeout,
        )
        _keep(asyncio.get_running_loop().create_task(self._abort()))

    async def _abort(self) -> None:
        try:
            await self._send({"type": TRANSPORT_ABORT})
        except Exception as exc:  # the server refused it: nothing more this side can do
            logger.warning("WebSocket %s: the server did not abort the transport: %r", self.id, exc)

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
            message = self._received(await self._receive())
            if message["type"] == "websocket.receive":
                text = message.get("text")
                return text if text is not None else (message.get("bytes") or b"")
            raise WebSocketDisconnect(self.close_code or CloseCode.NORMAL_CLOSURE, message.get("reason") or "")
        if self.application_state is WebSocketState.CONNECTING:
            raise RuntimeError(f"cannot receive on WebSocket {self.id}: call accept() first")
        raise WebSocketDisconnect(self.close_code or CloseCode.NORMAL_CLOSURE)

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
            ValueError: The message is not valid JSON, or is JSON that could not be encoded
                back and sent (see :func:`~qakeapi.core.codec.decode_json`).
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

    @property
    def send_policy(self) -> SendPolicy:
        """How many frames may wait for this connection while it reads slowly, and what happens beyond.

        See :class:`~qakeapi.core.websockets.outbox.SendPolicy`.
        """
        return self.outbox.policy

    @send_policy.setter
    def send_policy(self, policy: SendPolicy) -> None:
        self.outbox.policy = policy

    @property
    def dropped(self) -> int:
        """How many frames were dropped for this connection (slow reader, close, failed sends)."""
        return self.outbox.dropped

    def send_nowait(self, data: str | bytes) -> bool:
        """Start sending a frame without waiting for it.

        The frame is written by a task that owns this connection's outbox, after every frame
        given before it; when the peer reads slowly it waits in the outbox, and
        :attr:`send_policy` decides what happens when that is full. To send one frame to many
        connections, use :func:`qakeapi.core.fanout.deliver`, which encodes once and starts
        one task for all of them.

        Args:
            data: ``str`` for a text frame, ``bytes`` for a binary one.

        Returns:
            ``False`` when the connection is closed (or was just closed by the policy), so the
            caller can forget it; ``True`` otherwise.
        """
        outbox = self.outbox
        if not outbox.open or self.application_state is not _CONNECTED:
            return False
        fan_out(message_for(data), (outbox,))
        return outbox.open

    async def send_text(self, data: str) -> None:
        """Send a text message.

        Args:
            data: The text.

        Raises:
            WebSocketClosedError: The connection is closed.
            ValueError: ``data`` holds a lone surrogate, which cannot be sent as UTF-8
                (:class:`~qakeapi.exceptions.LoneSurrogateError`); nothing was sent.
        """
        # Each sender writes through the outbox itself rather than through a shared helper
        # coroutine: one level less costs ~0.1 µs a message. _cannot_send() holds the errors.
        if self.application_state is _CONNECTED:
            try:
                if await self.outbox.send({"type": "websocket.send", "text": check_sendable(data)}):
                    return
            except OSError as exc:
                raise self._send_failed(exc) from exc
        raise self._cannot_send("websocket.send")

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message.

        Args:
            data: The bytes.

        Raises:
            WebSocketClosedError: The connection is closed.
        """
        if self.application_state is _CONNECTED:
            try:
                if await self.outbox.send({"type": "websocket.send", "bytes": data}):
                    return
            except OSError as exc:
                raise self._send_failed(exc) from exc
        raise self._cannot_send("websocket.send")

    async def send_json(self, data: Any, mode: str = "text") -> None:
        """Send ``data`` encoded as compact JSON.

        Args:
            data: A JSON-serialisable value.
            mode: ``"text"`` for a text frame, ``"binary"`` for UTF-8 bytes.

        Raises:
            WebSocketClosedError: The connection is closed.
            TypeError: ``data`` is not JSON-serialisable.
            ValueError: ``mode`` is neither ``"text"`` nor ``"binary"``, or ``data`` holds what
                :func:`~qakeapi.core.codec.encode_json` refuses (``NaN``, a lone surrogate).
        """
        if mode == "text":
            message: Message = {"type": "websocket.send", "text": encode_json(data)}
        elif mode == "binary":
            message = {"type": "websocket.send", "bytes": encode_json(data).encode()}
        else:
            raise ValueError(f"mode must be 'text' or 'binary', not {mode!r}")
        if self.application_state is _CONNECTED:
            try:
                if await self.outbox.send(message):
                    return
            except OSError as exc:
                raise self._send_failed(exc) from exc
        raise self._cannot_send("websocket.send")

    async def _send_data(self, message: Message) -> None:
        """Send a ``websocket.send`` message through the outbox, in order with everything else."""
        if self.application_state is _CONNECTED:
            try:
                if await self.outbox.send(message):
                    return
            except OSError as exc:
                raise self._send_failed(exc) from exc
        raise self._cannot_send(message["type"])

    def _send_failed(self, exc: OSError) -> WebSocketClosedError:
        return WebSocketClosedError(f"cannot send on WebSocket {self.id}: {exc}")

    def _cannot_send(self, kind: str) -> Exception:
        """Why a data frame of type ``kind`` was not sent: the connection is not open, or closed while it waited."""
        state = self.application_state
        if state is _CONNECTING:
            return NotAcceptedError(
                f"cannot send on WebSocket {self.id} at {self.path}: it was not accepted; write "
                "'await websocket.accept()' before the first send (WebSocketHandler.handle_connection accepts for you)"
            )
        if state is _CONNECTED:  # the outbox stopped taking frames while this one waited its turn
            return WebSocketClosedError(f"cannot send on WebSocket {self.id}: it was closed")
        if self.client_state is WebSocketState.DISCONNECTED:
            return WebSocketClosedError(f"cannot send on WebSocket {self.id}: the peer has disconnected")
        return WebSocketClosedError(f"cannot send on WebSocket {self.id}: it is closed")


if sys.version_info >= (3, 11):

    async def _within(seconds: float, awaitable: Coroutine[Any, Any, Any]) -> None:
        """Await ``awaitable`` in this task, raising :class:`TimeoutError` after ``seconds``."""
        async with asyncio.timeout(seconds):
            await awaitable

else:  # pragma: no cover - Python 3.10 has no asyncio.timeout

    async def _within(seconds: float, awaitable: Coroutine[Any, Any, Any]) -> None:
        """Await ``awaitable`` in this task, raising :class:`TimeoutError` after ``seconds``."""
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(seconds, expire)
        try:
            await awaitable
        except asyncio.CancelledError:
            if expired:
                raise asyncio.TimeoutError from None
            raise
        finally:
            timer.cancel()


def message_for(data: str | bytes) -> Message:
    """The ASGI message that sends ``data`` as one frame (shared by every recipient of a fan-out).

    Args:
        data: ``str`` for a text frame, ``bytes`` for a binary one.

    Returns:
        The ``websocket.send`` message.
    """
    if isinstance(data, str):
        return {"type": "websocket.send", "text": data}
    return {"type": "websocket.send", "bytes": data}
