"""Delivery of one already-encoded frame to many connections.

Every broadcast path (rooms, :class:`~qakeapi.core.websockets.WebSocketHandler.broadcast`,
clustering) encodes its message once and hands the frame here, so the policy for slow or dead
recipients lives in exactly one place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from qakeapi.exceptions import WebSocketClosedError

if TYPE_CHECKING:
    from qakeapi.core.websockets.connection import WebSocket

__all__ = ["deliver"]

logger = logging.getLogger("qakeapi.fanout")


async def deliver(frame: str | bytes, recipients: Iterable[WebSocket]) -> list[WebSocket]:
    """Send ``frame`` to every recipient that is still open.

    Args:
        frame: The encoded message: ``str`` for a text frame, ``bytes`` for a binary one.
        recipients: The connections to send to. A snapshot is taken first, so the collection
            may change while sending.

    Returns:
        The recipients that turned out to be closed; the caller should forget them.
    """
    dead: list[WebSocket] = []
    text = isinstance(frame, str)
    for websocket in tuple(recipients):
        try:
            if text:
                await websocket.send_text(frame)  # type: ignore[arg-type]
            else:
                await websocket.send_bytes(frame)  # type: ignore[arg-type]
        except WebSocketClosedError:
            logger.debug("dropping closed WebSocket %s from a broadcast", websocket.id)
            dead.append(websocket)
    return dead
