"""The typed ways to send and receive over a WebSocket: text, bytes and JSON.

:class:`Messages` is the half of :class:`~qakeapi.core.websockets.connection.WebSocket` that
turns frames into values and back; the other half (the ASGI boundary, the state machines,
accept and close) is in :mod:`qakeapi.core.websockets.connection`. Each sender writes through
the connection's outbox itself rather than through a shared helper coroutine: one level less
costs ~0.1 µs a message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from qakeapi.core.codec import check_sendable, decode_json, encode_json
from qakeapi.core.counters import counters, payload_size
from qakeapi.core.websockets.fanout import fan_out, message_for
from qakeapi.core.websockets.outbox import Outbox, SendPolicy
from qakeapi.core.websockets.state import WebSocketState
from qakeapi.exceptions import NotAcceptedError, WebSocketClosedError, WebSocketDisconnect
from qakeapi.types import Message

__all__ = ["Messages"]

_CONNECTING = WebSocketState.CONNECTING
_CONNECTED = WebSocketState.CONNECTED


class Messages:
    """Text, bytes and JSON over one connection (mixed into :class:`~qakeapi.core.websockets.connection.WebSocket`).

    Attributes:
        id: The connection's id.
        outbox: The connection's outbox.
        application_state: What the application did (accept, close).
        client_state: What the peer did (connect, disconnect).
    """

    __slots__ = ()

    id: int
    outbox: Outbox
    application_state: WebSocketState
    client_state: WebSocketState

    @property
    def path(self) -> str:
        """The request path (the connection implements it)."""
        raise NotImplementedError

    async def receive_message(self) -> str | bytes:
        """Receive the next data message (the connection implements it)."""
        raise NotImplementedError

    # -- receiving ----------------------------------------------------------------------

    async def receive_text(self) -> str:
        """Receive a text message (:class:`TypeError` if the peer sent a binary one).

        Raises :class:`~qakeapi.exceptions.WebSocketDisconnect` when the peer closed, as every
        receive does.
        """
        data = await self.receive_message()
        if isinstance(data, str):
            return data
        raise TypeError("expected a text message, got a binary one")

    async def receive_bytes(self) -> bytes:
        """Receive a binary message (:class:`TypeError` if the peer sent a text one)."""
        data = await self.receive_message()
        if isinstance(data, bytes):
            return data
        raise TypeError("expected a binary message, got a text one")

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
        connections, use :func:`qakeapi.core.websockets.fanout.deliver`, which encodes once and starts
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
        counters.sent += 1
        counters.sent_bytes += payload_size(data)
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
        await self._send_data({"type": "websocket.send", "text": check_sendable(data)}, data)

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message.

        Args:
            data: The bytes.

        Raises:
            WebSocketClosedError: The connection is closed.
        """
        await self._send_data({"type": "websocket.send", "bytes": data}, data)

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
        text = encode_json(data)
        if mode == "text":
            message: Message = {"type": "websocket.send", "text": text}
        elif mode == "binary":
            message = {"type": "websocket.send", "bytes": text.encode()}
        else:
            raise ValueError(f"mode must be 'text' or 'binary', not {mode!r}")
        await self._send_data(message, text)

    async def _send_data(self, message: Message, payload: str | bytes) -> None:
        """Send a ``websocket.send`` message through the outbox, in order with everything else.

        ``payload`` is what it carries (counted in bytes). The one place the senders write: a
        level of its own costs ~0.1 µs a message, measured against the copies it replaced.
        """
        if self.application_state is _CONNECTED:
            try:
                if await self.outbox.send(message):
                    counters.sent += 1
                    counters.sent_bytes += (
                        len(payload) if not isinstance(payload, str) or payload.isascii() else payload_size(payload)
                    )
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
