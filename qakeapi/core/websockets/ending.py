"""How a WebSocket connection ends: a bounded close, a slow consumer closed, a transport aborted.

:class:`Ending` is the half of :class:`~qakeapi.core.websockets.connection.WebSocket` that ends
a connection: :meth:`~Ending.close` (idempotent, bounded by the send policy's
``close_timeout``), and what happens when the connection's outbox gives up (a slow consumer is
closed with the policy's code; failed sends end the connection for the application; a frame the
server cannot encode is dropped for this connection only).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from qakeapi.core.limits import RejectionLog
from qakeapi.core.logfields import fields
from qakeapi.core.tasks import keep, within
from qakeapi.core.websockets.outbox import GiveUp, Outbox, stats
from qakeapi.core.websockets.state import WebSocketState
from qakeapi.status import CloseCode
from qakeapi.types import Message, Scope, Send

__all__ = ["TRANSPORT_ABORT", "Ending"]

logger = logging.getLogger("qakeapi.websockets")

TRANSPORT_ABORT = "qakeapi.transport.abort"
"""The ASGI extension of a server that lets the application abort a connection's transport, and
the ``type`` of the send event that does it (see
:mod:`qakeapi.core.websockets.uvicorn_protocol`)."""

_UNSENDABLE_CODES = frozenset({CloseCode.NO_STATUS_RECEIVED, CloseCode.ABNORMAL_CLOSURE, 1015})
_unsendable_log = RejectionLog(logger)  # frames the server could not encode: logged once per path
_CONNECTING = WebSocketState.CONNECTING
_CONNECTED = WebSocketState.CONNECTED


class _Connection(Protocol):
    """What :class:`Ending` needs of the connection it is mixed into."""

    id: int
    scope: Scope
    outbox: Outbox
    application_state: WebSocketState
    client_state: WebSocketState
    closed_with: int | None
    _send: Send

    @property
    def path(self) -> str: ...

    @property
    def client(self) -> tuple[str, int] | None: ...

    @property
    def user_id(self) -> str | None: ...

    def _abort_if_unread(self) -> None: ...

    async def _abort(self) -> None: ...


class Ending:
    """Closing a connection, and the outbox's reports of giving up (mixed into ``WebSocket``)."""

    __slots__ = ()

    closed_with: int | None  # the connection's slot (see WebSocket)

    async def close(self: _Connection, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
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
        self.closed_with = int(code)
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
                await within(outbox.policy.close_timeout, outbox.send_last(message))
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

    def _gave_up(self: _Connection, why: GiveUp, error: BaseException | None) -> Message | None:
        """The outbox stopped taking frames: the connection is over for the application."""
        was_open = self.application_state is _CONNECTED
        self.application_state = WebSocketState.DISCONNECTED
        outbox = self.outbox
        if why is GiveUp.SLOW_CONSUMER:
            policy = outbox.policy
            self.closed_with = int(policy.close_code)
            logger.warning(
                "WebSocket %s (path=%s) closed as a slow consumer: more than %d frames waiting; "
                "%d frame(s) dropped; closing with code %d",
                self.id,
                self.path,
                policy.max_queue,
                outbox.dropped,
                policy.close_code,
                extra=fields(self),  # logged from the task of a broadcast: name this connection
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
                extra=fields(self),
            )
        return None

    def _unsendable(self: _Connection, error: UnicodeEncodeError) -> None:
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

    def _abort_if_unread(self: _Connection) -> None:
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
            extra=fields(self),
        )
        keep(asyncio.get_running_loop().create_task(self._abort()))

    async def _abort(self: _Connection) -> None:
        try:
            await self._send({"type": TRANSPORT_ABORT})
        except Exception as exc:  # the server refused it: nothing more this side can do
            logger.warning("WebSocket %s: the server did not abort the transport: %r", self.id, exc)
