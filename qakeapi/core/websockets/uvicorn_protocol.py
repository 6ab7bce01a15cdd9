"""uvicorn's protocols, plus a way to drop a peer that does not read and a deadline for the handshake.

An ASGI application cannot close a transport whose write buffer is full: uvicorn's ``send``
waits for the peer to read before it writes anything, the close frame included, and a returning
application only gets ``transport.close()``, which waits for that buffer to drain too (see
:doc:`/servers`). A client that stops reading keeps its socket, and the megabytes queued for
it, until the kernel gives up.

:class:`AbortableWebSocketProtocol` is uvicorn's ``websockets-sansio`` protocol with one ASGI
extension, :data:`~qakeapi.core.websockets.ending.TRANSPORT_ABORT`: the application may
send ``{"type": "qakeapi.transport.abort"}`` at any time, and the transport is aborted at once: its buffer
is discarded and the socket is closed with a reset (``SO_LINGER`` 0), so the kernel does not
keep the unsent data either. QakeAPI sends it for a connection it closed as a slow consumer
whose close frame the server has not taken within the send policy's ``close_timeout``. Use it
with::

    uvicorn myapp:app --ws qakeapi.core.websockets.uvicorn_protocol:AbortableWebSocketProtocol

(uvicorn takes an import string for ``--ws``). Everything else is uvicorn's.

**The handshake deadline.** uvicorn's HTTP protocols start no timer before a request's head is
complete: a client that connects and sends nothing, or half a request line, is held until the
kernel gives up (more than 130 s in our test, and 3,000 such connections from one address were
all held). :class:`DeadlineH11Protocol` and :class:`DeadlineHttpToolsProtocol` are uvicorn's
``h11`` and ``httptools`` protocols with one addition: a connection whose first request (the
WebSocket upgrade, or any HTTP request) is not complete within ``--timeout-keep-alive`` seconds
(uvicorn's option, 5 by default: the time uvicorn already gives an idle connection between
requests) is closed. Once a request is complete, uvicorn's own timers apply. The run command
QakeAPI documents::

    uvicorn myapp:app --http qakeapi.core.websockets.uvicorn_protocol:DeadlineH11Protocol \\
        --ws qakeapi.core.websockets.uvicorn_protocol:AbortableWebSocketProtocol \\
        --ws-max-size 1048576 --timeout-keep-alive 5
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any

from qakeapi.core.websockets.connection import TRANSPORT_ABORT
from qakeapi.exceptions import MissingDependencyError

try:
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # pragma: no cover - depends on the environment
    raise MissingDependencyError("uvicorn", "server") from None

__all__ = [
    "AbortableWebSocketProtocol",
    "DeadlineH11Protocol",
    "DeadlineHttpToolsProtocol",
    "ReleasingWSProtocol",
    "handshake_deadlines",
]

logger = logging.getLogger("qakeapi.websockets")


class _Counts:
    """How many connections the deadline closed in this process (see :func:`handshake_deadlines`)."""

    expired = 0


def handshake_deadlines() -> int:
    """How many connections the handshake deadline has closed in this process.

    Returns:
        The count since the process started.
    """
    return _Counts.expired


class _HandshakeDeadline:
    """Close a connection whose first request is not complete within ``config.timeout_keep_alive`` seconds."""

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        proto: Any = self
        self._deadline = proto.loop.call_later(proto.config.timeout_keep_alive, self._expired)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)  # type: ignore[misc]

    def _expired(self) -> None:
        self._deadline = None
        proto: Any = self
        transport = proto.transport
        if proto.cycle is not None or transport.is_closing() or transport.get_protocol() is not self:
            return  # a request came (uvicorn's timers apply now), or the connection became a WebSocket
        _Counts.expired += 1
        if _Counts.expired == 1 or _Counts.expired % 1000 == 0:  # a line, not one per connection
            logger.warning(
                "closed %d connection(s) that sent no complete request within %ss (--timeout-keep-alive); "
                "the first from %s",
                _Counts.expired,
                proto.config.timeout_keep_alive,
                proto.client,
            )
        transport.abort()


class DeadlineH11Protocol(_HandshakeDeadline, H11Protocol):
    """uvicorn's ``h11`` protocol with the handshake deadline (see the module)."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is optional (uvicorn[standard] has it)
    DeadlineHttpToolsProtocol: Any = None
else:

    class DeadlineHttpToolsProtocol(_HandshakeDeadline, HttpToolsProtocol):  # type: ignore[no-redef]
        """uvicorn's ``httptools`` protocol with the handshake deadline (see the module)."""


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol; the application may abort the transport."""

    def handle_connect(self, event: Any) -> None:
        """Answer the handshake as uvicorn does, and offer the abort extension in the scope."""
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:  # a refused handshake has no scope (and no application)
            scope["extensions"][TRANSPORT_ABORT] = {}

    async def send(self, message: Any) -> None:
        """Send as uvicorn does; ``{"type": "qakeapi.transport.abort"}`` aborts the transport at once."""
        if message.get("type") == TRANSPORT_ABORT:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:  # linger 0: the kernel drops what it holds for the peer and resets
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
            return
        await super().send(message)


try:
    from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
except ImportError:  # pragma: no cover - wsproto is optional
    ReleasingWSProtocol: Any = None
else:

    class ReleasingWSProtocol(WSProtocol):  # type: ignore[no-redef]
        """uvicorn's ``wsproto`` protocol, without its memory retention after an oversized message.

        uvicorn writes each decompressed frame into its message buffer before it checks
        ``--ws-max-size``, and keeps the buffer when it refuses the message (1009). The protocol
        object sits in a reference cycle, so CPython frees it, and the buffer, only at its next
        cyclic garbage collection, which an idle server may not run for a long time: 10
        concurrent 16 MiB deflate bombs (twice) left the server 209-257 MiB larger, and a
        ``gc.collect()`` gave all of it back. This class empties the buffer as soon as the
        message is refused and when the connection is lost: the same bombs then leave +3 MiB,
        and the peak falls from 290 to 84 MiB. wsproto still decompresses a whole frame before
        the check; prefer ``websockets-sansio``, which stops at the limit. Use it with
        ``--ws qakeapi.core.websockets.uvicorn_protocol:ReleasingWSProtocol``.
        """

        def handle_message(self, event: Any) -> None:
            """Handle a message part as uvicorn does; drop the buffer of a refused one at once."""
            super().handle_message(event)
            if self.buffer.length > self.buffer.max_length:
                self.buffer.clear()

        def connection_lost(self, exc: Exception | None) -> None:
            """Close as uvicorn does, then let go of any partial message."""
            super().connection_lost(exc)
            self.buffer.clear()
