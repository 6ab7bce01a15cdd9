"""Fan-out: one already-encoded frame to many connections, by one walker.

Every broadcast path (rooms, :meth:`~qakeapi.core.websockets.handler.WebSocketHandler.broadcast`,
clustering, :meth:`~qakeapi.core.websockets.connection.WebSocket.send_nowait`) encodes its message
once and hands the frame here. :func:`fan_out` walks the recipients' outboxes from a task of its
own: where a write blocks (a peer reads slowly) the rest of the walk is handed to a new task at
the next turn of the event loop, so one slow reader never holds up the others, and the blocked
task stays the owner of that one outbox (see :mod:`qakeapi.core.websockets.outbox`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import deque
from collections.abc import Awaitable, Collection, Coroutine, Iterable, Iterator, Sequence
from time import perf_counter
from typing import Any, Protocol, TypeVar

from qakeapi.core.codec import check_sendable, encode_json
from qakeapi.core.counters import counters, payload_size
from qakeapi.core.tasks import keep
from qakeapi.core.websockets.outbox import Outbox
from qakeapi.types import Message


class Recipient(Protocol):
    """What the walker needs of a recipient: its outbox (a
    :class:`~qakeapi.core.websockets.connection.WebSocket` is one)."""

    @property
    def outbox(self) -> Outbox:
        """The recipient's send queue."""
        ...


_R = TypeVar("_R", bound=Recipient)

__all__ = ["Recipient", "as_frame", "deliver", "deliver_in_order", "fan_out", "message_for", "recipients"]

logger = logging.getLogger("qakeapi.fanout")


def deliver(frame: str | bytes, recipients: Iterable[_R]) -> list[_R]:
    """Hand ``frame`` to every recipient without waiting for any of them.

    Every recipient gets the same frame object, written through its
    :attr:`~qakeapi.core.websockets.connection.WebSocket.outbox` by one task started for the
    whole delivery (see :func:`fan_out`): at once when its
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
    if not members:
        return []
    started = perf_counter()
    passed = fan_out(message_for(frame), [websocket.outbox for websocket in members])
    dead = _closed(members)
    _counted(frame, len(members) - len(dead), started, passed)
    return dead


async def deliver_in_order(
    frame: str | bytes,
    recipients: Iterable[_R],
    *,
    outboxes: Sequence[Outbox] | None = None,
) -> list[_R]:
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
    started = perf_counter()
    if _EAGER:
        passed = fan_out(message_for(frame), outboxes, closed)
        if passed is not None:
            await passed
    else:
        await _fan_out_waiting(message_for(frame), outboxes, closed)
    _counted(frame, len(members) - len(closed), started, None)
    if not closed:
        return []
    found = set(closed)
    dead = [websocket for websocket in members if websocket.outbox in found]
    logger.debug("broadcast found %d closed connection(s)", len(dead))
    return dead


def _counted(frame: str | bytes, sent: int, started: float, passed: Awaitable[None] | None) -> None:
    """Count one broadcast (once, not per recipient): its frames, bytes, size and delivery time."""
    counters.sent += sent
    counters.sent_bytes += payload_size(frame) * sent
    counters.broadcast_recipients.observe(sent)
    if passed is None:  # every recipient has it written or queued already
        counters.delivery_seconds.observe(perf_counter() - started)
    else:
        asyncio.ensure_future(passed).add_done_callback(
            lambda _: counters.delivery_seconds.observe(perf_counter() - started)
        )


def _closed(members: tuple[_R, ...]) -> list[_R]:
    dead = [websocket for websocket in members if not websocket.outbox.open]
    if dead:
        logger.debug("broadcast found %d closed connection(s)", len(dead))
    return dead


def recipients(members: Collection[_R], exclude: _R | None = None) -> tuple[_R, ...]:
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


# -- the walker --------------------------------------------------------------------------------


_EAGER = sys.version_info >= (3, 12)

if sys.version_info >= (3, 12):

    def _start(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        # Public eager tasks: the task runs synchronously until its first suspension.
        return asyncio.eager_task_factory(loop, coro)

else:  # pragma: no cover - exercised on Python 3.10/3.11 runs

    def _start(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return loop.create_task(coro)


class _Pass:
    """One task walking outboxes; hands the rest on if it gets stuck.

    The walk and :meth:`hand_off` share one iterator (:attr:`rest`): where the walk is, is where
    the iterator is, so handing on consumes what the walk has not reached and the walk ends
    after the write it is blocked in, with no index kept per recipient.
    """

    __slots__ = ("closed", "done", "handed_off", "item", "loop", "rest", "waiter")

    def __init__(
        self, item: Any, outboxes: Iterable[Outbox], loop: asyncio.AbstractEventLoop, closed: list[Outbox] | None
    ) -> None:
        self.item = item
        self.rest: Iterator[Outbox] = iter(outboxes)
        self.loop = loop
        self.closed = closed
        self.done = False
        self.handed_off = False
        self.waiter: asyncio.Future[None] | None = None

    def finish(self) -> None:
        self.done = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def check(self) -> None:
        """At the next turn of the loop: still walking means a write blocked; hand on the rest."""
        if not self.done:
            self.hand_off()

    def skip(self, outbox: Outbox) -> None:
        """``outbox`` is busy (queue the item behind its owner) or closed (note it)."""
        if outbox.open and outbox._enqueue(self.item):
            return
        if self.closed is not None:
            self.closed.append(outbox)

    def hand_off(self) -> None:
        self.handed_off = True
        item = self.item
        owned: list[Outbox] = []
        for outbox in self.rest:  # the walk's own iterator: it stops after its blocked write
            if outbox._owned or not outbox.open:
                self.skip(outbox)
            else:
                outbox._owned = True
                if outbox._queue is None:
                    outbox._queue = deque()
                outbox._queue.append(item)
                owned.append(outbox)
        if owned:
            keep(_start(self.loop, _drain_all(owned, self.loop)))
        self.finish()

    async def run(self) -> None:
        item = self.item
        try:
            for outbox in self.rest:
                if outbox._owned or not outbox.open:
                    self.skip(outbox)
                    continue
                outbox._owned = True
                try:
                    await outbox._send(item)
                except BaseException as exc:
                    outbox._fail(exc)
                    if self.closed is not None and not outbox.open:  # an unsendable frame keeps it open
                        self.closed.append(outbox)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                if outbox._queue:
                    await outbox._drain()
                    if not outbox.open and self.closed is not None:
                        self.closed.append(outbox)
                elif outbox._waiters:
                    outbox._release()
                else:
                    outbox._owned = False
        finally:
            if not self.handed_off:
                self.finish()


async def _drain_all(outboxes: list[Outbox], loop: asyncio.AbstractEventLoop) -> None:
    """Drain outboxes this task was handed (already owned, items queued); hand on if stuck."""
    walk = _Pass(None, outboxes, loop, None)
    loop.call_soon(_drain_check, walk)
    try:
        for outbox in walk.rest:
            await outbox._drain()
    finally:
        walk.done = True


def _drain_check(walk: _Pass) -> None:
    if walk.done:
        return
    walk.handed_off = True
    rest = list(walk.rest)  # the walk ends after the drain it is blocked in
    if rest:
        keep(_start(walk.loop, _drain_all(rest, walk.loop)))


def fan_out(item: Any, outboxes: Sequence[Outbox], closed: list[Outbox] | None = None) -> Awaitable[None] | None:
    """Write ``item`` to every outbox, in order per outbox, without one slow outbox holding up the rest.

    The writes run in a task of their own (eager on Python 3.12 and later, so usually done
    before this returns). Outboxes that are busy get ``item`` queued behind their current write.

    Args:
        item: The item, shared by every outbox.
        outboxes: The outboxes; closed ones are skipped. Walked by the writing task, possibly
            after this returns: a sequence the caller does not change afterwards.
        closed: Where to append the outboxes found closed, or closed by this item (their
            write failed, or their queue overflowed with the ``"disconnect"`` policy), as the
            walk meets them: complete once the walk is over (when this returns ``None``, or
            the awaitable it returns is done).

    Returns:
        ``None`` when every outbox took ``item`` (or queued it) before returning; otherwise an
        awaitable that completes once they have, so that a caller who sends more afterwards
        keeps its order. Awaiting it never waits for a slow reader.
    """
    loop = asyncio.get_running_loop()
    walk = _Pass(item, outboxes, loop, closed)
    task = _start(loop, walk.run())
    if walk.done:
        _forget(task)
        return None
    # Blocked in its first turn (eager), or not started yet: hand on whatever is left once it has
    # had that turn (call_soon runs callbacks in the order they were registered).
    loop.call_soon(walk.check)
    keep(task)
    walk.waiter = loop.create_future()
    return walk.waiter


async def _fan_out_waiting(item: Any, outboxes: Sequence[Outbox], closed: list[Outbox]) -> None:
    """:func:`fan_out` for a caller that waits until every outbox has ``item`` (Python < 3.12).

    Without eager tasks the walk's first turn comes at the next turn of the event loop. The
    caller yields once: call_soon is first in, first out, so the walk's turn, scheduled first, has
    run when the caller resumes, and the caller hands on the rest if the walk is blocked in a
    write. One turn of the loop, where waiting on the walk and a separate check took two.
    """
    loop = asyncio.get_running_loop()
    walk = _Pass(item, outboxes, loop, closed)
    task = loop.create_task(walk.run())
    try:
        await asyncio.sleep(0)
    finally:  # even if the caller is cancelled: a blocked walk must not hold up the others
        if not walk.done:
            walk.hand_off()  # the walk ends after the write it is blocked in; the rest goes on
    _forget(task)


def _forget(task: asyncio.Task[None]) -> None:
    """Let go of a walk's task: keep it until it ends, or retrieve its outcome if it has."""
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: failures were reported through the outboxes
    else:
        keep(task)
