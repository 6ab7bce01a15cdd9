"""Delivery of one already-encoded frame to many connections.

Every broadcast path (rooms, :meth:`~qakeapi.core.websockets.handler.WebSocketHandler.broadcast`,
clustering) encodes its message once and hands the frame here, so the policy for slow or dead
recipients lives in exactly one place.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from qakeapi.core.codec import encode_json
from qakeapi.types import Message

if TYPE_CHECKING:
    from qakeapi.core.websockets.connection import WebSocket

__all__ = ["as_frame", "broadcast", "deliver"]

logger = logging.getLogger("qakeapi.fanout")


def deliver(frame: str | bytes, recipients: Iterable[WebSocket]) -> list[WebSocket]:
    """Hand ``frame`` to every recipient without waiting for any of them.

    Each recipient gets the same frame object through
    :meth:`~qakeapi.core.websockets.connection.WebSocket.send_nowait`: written at once when
    its transport takes it, queued (bounded by the recipient's send policy) when it is
    reading slowly, so one slow reader never holds up the others.

    Args:
        frame: The encoded message: ``str`` for a text frame, ``bytes`` for a binary one.
        recipients: The connections to send to. A snapshot is taken first, so the collection
            may change while sending.

    Returns:
        The recipients that turned out to be closed; the caller should forget them.
    """
    # One message object for everyone: servers only read it.
    message: Message = {"type": "websocket.send", "text" if isinstance(frame, str) else "bytes": frame}
    dead = [websocket for websocket in tuple(recipients) if not websocket._post(message)]
    if dead:
        logger.debug("broadcast skipped %d closed connection(s)", len(dead))
    return dead


def as_frame(message: Any) -> str | bytes:
    """Encode a message for sending: ``str`` and ``bytes`` as they are, anything else as JSON text.

    Args:
        message: The message.

    Returns:
        The frame.
    """
    return message if isinstance(message, (str, bytes)) else encode_json(message)


def broadcast(
    message: Any, members: Collection[WebSocket], *, exclude: WebSocket | None = None
) -> tuple[int, list[WebSocket]]:
    """Encode ``message`` once and :func:`deliver` it to ``members`` but ``exclude``.

    Args:
        message: The message (see :func:`as_frame`).
        members: The connections to send to.
        exclude: A member to leave out, typically the sender.

    Returns:
        How many members it was sent to, and the members that turned out to be closed.
    """
    recipients = members if exclude is None else [ws for ws in members if ws is not exclude]
    dead = deliver(as_frame(message), recipients)
    return len(recipients) - len(dead), dead
