"""Delivery of one already-encoded frame to many connections.

Every broadcast path (rooms, :meth:`~qakeapi.core.websockets.handler.WebSocketHandler.broadcast`,
clustering) encodes its message once and hands the frame here, so the policy for slow or dead
recipients lives in exactly one place.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from qakeapi.core.codec import check_sendable, encode_json
from qakeapi.core.websockets.messages import message_for
from qakeapi.core.websockets.outbox import Outbox, fan_out

if TYPE_CHECKING:
    from qakeapi.core.websockets.connection import WebSocket

__all__ = ["as_frame", "broadcast", "broadcast_in_order", "deliver", "deliver_in_order", "recipients"]

logger = logging.getLogger("qakeapi.fanout")


def deliver(frame: str | bytes, recipients: Iterable[WebSocket]) -> list[WebSocket]:
    """Hand ``frame`` to every recipient without waiting for any of them.

    Every recipient gets the same frame object, written through its
    :attr:`~qakeapi.core.websockets.connection.WebSocket.outbox` by one task started for the
    whole delivery (see :func:`~qakeapi.core.websockets.outbox.fan_out`): at once when its
    transport takes it, queued (bounded by the recipient's send policy) when it is reading
    slowly, so one slow reader never holds up the others.

    Args:
        frame: The encoded message: ``str`` for a text frame, ``bytes`` for a binary one.
        recipients: The connections to send to. A snapshot is taken first, so the collection
            may change while sending.

    Returns:
        The recipients that turned out to be closed (known so far); the caller should forget them.
    """
    members = tuple(recipients)
    if members:
        fan_out(message_for(frame), [websocket.outbox for websocket in members])
    return _closed(members)


async def deliver_in_order(
    frame: str | bytes,
    recipients: Iterable[WebSocket],
    *,
    outboxes: list[Outbox] | None = None,
) -> list[WebSocket]:
    """:func:`deliver`, returning once every recipient has the frame written or queued.

    What the caller sends to any recipient afterwards comes after ``frame``. It never waits
    for a slow reader: a blocked write is handed on at the next turn of the event loop.

    Args:
        frame: The encoded message.
        recipients: The connections to send to.
        outboxes: The recipients' :attr:`~qakeapi.core.websockets.connection.WebSocket.outbox`,
            in the same order, from a caller that keeps them (saves reading each one per
            broadcast); ``None``: read here.

    Returns:
        The recipients that turned out to be closed, before or during the delivery.
    """
    members = tuple(recipients)
    if not members:
        return []
    closed: list[Outbox] = []  # filled by the walk, so no second pass over the recipients
    if outboxes is None:
        outboxes = [websocket.outbox for websocket in members]
    passed = fan_out(message_for(frame), outboxes, closed)
    if passed is not None:
        await passed
    if not closed:
        return []
    found = set(closed)
    dead = [websocket for websocket in members if websocket.outbox in found]
    logger.debug("broadcast found %d closed connection(s)", len(dead))
    return dead


def _closed(members: tuple[WebSocket, ...]) -> list[WebSocket]:
    dead = [websocket for websocket in members if not websocket.outbox.open]
    if dead:
        logger.debug("broadcast found %d closed connection(s)", len(dead))
    return dead


def recipients(members: Collection[WebSocket], exclude: WebSocket | None = None) -> tuple[WebSocket, ...]:
    """A snapshot of ``members`` without ``exclude``: who a broadcast goes to.

    Copied in C (a comprehension costs ~15 ns a member, per broadcast); :func:`deliver` and
    :func:`deliver_in_order` take the tuple as it is, without copying it again.

    Args:
        members: The connections.
        exclude: A member to leave out, typically the sender; ``None``: nobody.

    Returns:
        The recipients, in the order ``members`` iterates.
    """
    if exclude is None or exclude not in members:
        return tuple(members)
    rest = list(members)
    rest.remove(exclude)
    return tuple(rest)


def as_frame(message: Any) -> str | bytes:
    """Encode a message for sending: ``str`` and ``bytes`` as they are, anything else as JSON text.

    Args:
        message: The message.

    Returns:
        The frame.

    Raises:
        TypeError: ``message`` holds a value JSON cannot represent.
        ValueError: ``message`` holds what :func:`~qakeapi.core.codec.encode_json` refuses, or is
            text holding a lone surrogate (:class:`~qakeapi.exceptions.LoneSurrogateError`): a
            frame no recipient could be sent, refused before any of them (or another node) sees it.
    """
    if isinstance(message, str):
        return check_sendable(message)
    return message if isinstance(message, bytes) else encode_json(message)


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
    to = recipients(members, exclude)
    dead = deliver(as_frame(message), to)
    return len(to) - len(dead), dead


async def broadcast_in_order(
    message: Any, members: Collection[WebSocket], *, exclude: WebSocket | None = None
) -> tuple[int, list[WebSocket]]:
    """:func:`broadcast` for ``async`` callers: returns once every member has the frame written or queued.

    What the caller sends afterwards reaches each member after this message. It never waits
    for a slow reader.

    Args:
        message: The message (see :func:`as_frame`).
        members: The connections to send to.
        exclude: A member to leave out, typically the sender.

    Returns:
        How many members it was sent to, and the members that turned out to be closed.
    """
    to = recipients(members, exclude)
    dead = await deliver_in_order(as_frame(message), to)
    return len(to) - len(dead), dead
