"""uvicorn's default WebSocket protocol, plus a way for QakeAPI to drop a peer that does not read.

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
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from qakeapi.core.websockets.connection import TRANSPORT_ABORT
from qakeapi.exceptions import MissingDependencyError

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # pragma: no cover - depends on the environment
    raise MissingDependencyError("uvicorn", "server") from None

__all__ = ["AbortableWebSocketProtocol"]


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
