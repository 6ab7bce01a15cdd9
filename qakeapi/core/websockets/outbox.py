"""The ordered, bounded way out of one connection, and the writers that drain it.

Every frame a connection sends passes through its :class:`Outbox`. At any moment at most one
task *owns* the outbox: that task writes (awaits the server's ``send``) and, before it lets go,
writes whatever was queued behind it. An ASGI ``send`` is therefore always entered and finished
in one task, whatever the server and middleware wrap it in (anyio cancel scopes and task
groups, ``asyncio.timeout``, contextvars), and no coroutine is ever stepped by hand.

Fan-out (:func:`~qakeapi.core.websockets.fanout.fan_out`) writes one item to many outboxes from
a task of its own (started eagerly where Python has public eager tasks, 3.12 and later, so the common case completes
synchronously). When a write blocks because a peer reads slowly, the frames for the other
recipients are handed to a new task at the next turn of the event loop, and the blocked task
stays the owner of the slow outbox only: one slow reader never holds up the others. Frames for
a connection whose outbox is owned wait in its queue, bounded by :class:`SendPolicy`:

``"disconnect"`` (the default)
    the queued frames are dropped (and counted) and the outbox gives up with the reason
    ``"slow consumer"``; its connection closes with the policy's ``close_code``.
``"drop_oldest"``
    the oldest queued frame is dropped (and counted) to make room; the connection stays open.

Before the queue is full, the senders feel it (``SendPolicy.backpressure``): a connection
whose message filled a recipient's queue past half waits, before it reads its next message,
while that queue drains to a quarter. A reader that keeps up with its socket behind a server
slower than the senders (the server is the bottleneck) is therefore never dropped: the senders
slow down instead. A recipient whose writes make no progress at all for ``backpressure``
seconds (a peer that does not read) is not waited for: the policy above deals with it.

A write that raises :class:`UnicodeEncodeError` (the server could not encode a text frame: it
holds a lone surrogate) wrote nothing: that item is dropped (counted in
:attr:`SendStats.unsendable`) and the outbox goes on with the next one, so a frame that cannot
be sent costs its recipients that frame, never their connection.

The outbox knows nothing of WebSockets: it writes opaque items with the ``send`` it was given
and reports giving up (and unsendable items) through callbacks.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from qakeapi.core.tasks import keep
from qakeapi.status import CloseCode

__all__ = [
    "DEFAULT_SEND_POLICY",
    "GiveUp",
    "GiveUpCallback",
    "Outbox",
    "Overflow",
    "SendPolicy",
    "SendStats",
    "UnsendableCallback",
    "end_pressure",
    "feel_pressure",
    "relieve",
    "stats",
]

logger = logging.getLogger("qakeapi.websockets")


class Overflow(str, enum.Enum):
    """What to do when a connection's outbox is full."""

    #: Drop the queue and close the connection.
    DISCONNECT = "disconnect"
    #: Drop the oldest queued frame to make room; keep the connection.
    DROP_OLDEST = "drop_oldest"


@dataclass(frozen=True)
class SendPolicy:
    """How much may wait for a slow reader, and what happens beyond that.

    Args:
        max_queue: How many frames may wait for one connection.
        overflow: :attr:`~Overflow.DISCONNECT` or :attr:`~Overflow.DROP_OLDEST`.
        close_code: The close code used by :attr:`~Overflow.DISCONNECT`.
        close_timeout: How many seconds :meth:`WebSocket.close
            <qakeapi.core.websockets.connection.WebSocket.close>` waits for the server to take
            the close frame (behind a blocked write to a peer that does not read) before it
            gives up on telling the peer.
        backpressure: How many seconds a sender waits, at most, for a recipient's writes to
            progress: a connection whose message filled a recipient's queue past half reads its
            next message once that queue is down to a quarter, or once the recipient wrote
            nothing for this long (``0``: senders never wait; only the overflow policy acts).
    """

    max_queue: int = 256
    overflow: Overflow = Overflow.DISCONNECT
    close_code: int = CloseCode.POLICY_VIOLATION
    close_timeout: float = 3.0
    backpressure: float = 0.5

    def __post_init__(self) -> None:
        if self.max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if not self.close_timeout > 0:
            raise ValueError("close_timeout must be positive")
        if not self.backpressure >= 0:
            raise ValueError("backpressure must be zero or positive")
        object.__setattr__(self, "overflow", Overflow(self.overflow))


DEFAULT_SEND_POLICY = SendPolicy()
"""The policy of connections nobody configured (256 frames, then disconnect)."""


@dataclass
class SendStats:
    """Process-wide counters of the delivery core.

    Attributes:
        queued: Frames that found their connection busy and waited in its outbox.
        dropped: Frames dropped: by either overflow policy, by a close, or because the
            connection's sends failed.
        disconnected: Connections closed for being too slow.
        failed: Connections whose sends failed (the peer went away, the server refused a
            frame, a deadline in middleware fired).
        close_timeouts: Closes that gave up waiting for the server to take the close frame.
        aborted: Slow consumers whose transport was aborted (their close frame still not
            taken after ``close_timeout``, on a server with the
            :data:`~qakeapi.core.websockets.ending.TRANSPORT_ABORT` extension).
        unsendable: Frames the server could not encode (a lone surrogate in a text frame),
            dropped for their connection, which was kept (also counted in ``dropped``).
    """

    queued: int = 0
    dropped: int = 0
    disconnected: int = 0
    failed: int = 0
    close_timeouts: int = 0
    aborted: int = 0
    unsendable: int = 0


stats = SendStats()
"""The counters for this process."""


class GiveUp(str, enum.Enum):
    """Why an outbox stopped taking frames (see :class:`Outbox`)."""

    #: The overflow policy was :attr:`Overflow.DISCONNECT` and the queue was full.
    SLOW_CONSUMER = "slow consumer"
    #: A write raised (the peer is gone, the server refused the frame, or a deadline fired).
    SEND_FAILED = "send failed"


GiveUpCallback = Callable[[GiveUp, BaseException | None], Any]
"""``callback(why, error)``: called once when an outbox gives up (``error`` is ``None`` for a slow
consumer). For :attr:`GiveUp.SLOW_CONSUMER` it may return a final item (a close frame), which the
outbox writes after the write that is blocked now; ``None`` for nothing."""

UnsendableCallback = Callable[[UnicodeEncodeError], Any]
"""``callback(error)``: called when the server could not encode an item (it was dropped; the
outbox goes on)."""


class Outbox:
    """The ordered, bounded way out of one connection.

    Items are written in the order they are given, each by the task that owns the outbox at the
    time. :meth:`send` writes from the calling task (waiting its turn); fan-out
    (:func:`~qakeapi.core.websockets.fanout.fan_out`) writes from a task of its own and queues
    behind a busy owner.

    Args:
        send: Writes one item (for a WebSocket: the ASGI ``send``); awaited by the owning task.
        on_give_up: Called once, synchronously, when the outbox gives up (see :class:`GiveUp`).
        policy: The slow-reader policy.
        on_unsendable: Called, synchronously, for each item the server could not encode.

    Attributes:
        policy: The slow-reader policy.
        dropped: How many items this outbox dropped.
        open: Whether it still takes items.
    """

    __slots__ = (
        "_on_give_up",
        "_on_unsendable",
        "_owned",
        "_progress",
        "_queue",
        "_send",
        "_waiters",
        "dropped",
        "open",
        "policy",
        "written",
    )

    def __init__(
        self,
        send: Callable[[Any], Awaitable[None]],
        on_give_up: GiveUpCallback,
        policy: SendPolicy = DEFAULT_SEND_POLICY,
        on_unsendable: UnsendableCallback | None = None,
    ) -> None:
        self._send = send
        self._on_give_up = on_give_up
        self._on_unsendable = on_unsendable
        self.policy = policy
        self.dropped = 0
        self.written = 0  # items written from the queue (the progress senders under backpressure watch)
        self.open = True
        self._owned = False
        self._progress: asyncio.Future[None] | None = None  # resolved when the queue is down to a quarter
        self._queue: deque[Any] | None = None  # made when first needed: most connections never queue
        self._waiters: deque[asyncio.Future[None]] | None = None

    def __len__(self) -> int:
        """How many items wait behind the owner's write."""
        return len(self._queue) if self._queue else 0

    @property
    def busy(self) -> bool:
        """Whether a task is writing to this outbox now."""
        return self._owned

    # -- writing from the caller's task --------------------------------------------------

    async def send(self, item: Any, *, last: bool = False) -> bool:
        """Write ``item`` from the calling task, after everything queued before it.

        Exceptions of the write propagate (the outbox gives up first, so later items are
        refused).

        Args:
            item: The item.
            last: Write it even though the outbox no longer takes items (a close).

        Returns:
            ``False`` when the outbox stopped taking items before it was this item's turn
            (nothing was written), ``True`` once it is written.
        """
        if self._owned:
            await self._wait_turn()
        else:
            self._owned = True
        if not (self.open or last):
            self._release()
            return False
        try:
            await self._send(item)
        except BaseException as exc:
            self._fail(exc)
            raise
        if self._queue:  # frames fanned out to us while we wrote
            await self._drain()
        elif self._waiters:
            self._release()
        else:
            self._owned = False
        return True

    async def send_last(self, item: Any) -> bool:
        """Stop taking items, drop what waits (counted) and write ``item`` as the last one.

        Used to close: the caller bounds the wait with a timeout of its own.

        Args:
            item: The final item (for a WebSocket: the close message).

        Returns:
            Whether ``item`` was written.
        """
        self.open = False
        self._clear()
        return await self.send(item, last=True)

    async def _wait_turn(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = deque()
        self._waiters.append(waiter)
        try:
            await waiter  # resolved with ownership handed to us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # granted, then cancelled before we could use it
            else:
                self._waiters.remove(waiter)
            raise

    # -- owner's side ---------------------------------------------------------------------

    def _enqueue(self, item: Any) -> bool:
        """Queue ``item`` behind the owner's write, applying the policy when full."""
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        policy = self.policy
        stats.queued += 1
        if len(queue) < policy.max_queue:
            queue.append(item)
            if len(queue) == policy.max_queue + 1 >> 1 and policy.backpressure:
                senders = _pressure.get()
                if senders is not None:
                    senders.append(self)  # the sending connection waits for it before its next message
            return True
        if policy.overflow is Overflow.DROP_OLDEST:
            queue.popleft()
            queue.append(item)
            self._drop(1)
            return True
        self._drop(len(queue) + 1)
        queue.clear()
        self._wake()
        stats.disconnected += 1
        self.open = False
        last = self._on_give_up(GiveUp.SLOW_CONSUMER, None)
        if last is not None:
            queue.append(last)  # the owner writes it after its blocked write
        return False

    async def _drain(self) -> None:
        """Owner only: write what waits, then let go."""
        queue = self._queue
        while queue:
            try:
                await self._send(queue.popleft())
            except BaseException as exc:
                self._fail(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            self.written += 1
            if self._progress is not None and len(queue) <= self.policy.max_queue >> 2:
                self._wake()
        self._release()

    def _release(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # ownership passes to the waiting sender
                return
        self._owned = False

    def _fail(self, exc: BaseException) -> None:
        """Owner only: a write raised. Drop what waits, give up once, let go."""
        if isinstance(exc, UnicodeEncodeError) and self.open:
            self._skip(exc)
            return
        self._clear()
        if self.open:
            self.open = False
            stats.failed += 1
            self._on_give_up(GiveUp.SEND_FAILED, exc)
        self._release()

    def _skip(self, exc: UnicodeEncodeError) -> None:
        """Owner only: the server could not encode this item and wrote nothing. Drop it, go on."""
        self._drop(1)
        stats.unsendable += 1
        if self._on_unsendable is not None:
            self._on_unsendable(exc)
        if self._queue:  # still owned: a task of its own writes what waits
            keep(asyncio.get_running_loop().create_task(self._drain()))
        else:
            self._release()

    def _clear(self) -> None:
        if self._queue:
            self._drop(len(self._queue))
            self._queue.clear()
        self._wake()

    def _wake(self) -> None:
        """The queue is down to a quarter (or gone): the senders waiting for it go on."""
        progress = self._progress
        if progress is not None:
            self._progress = None
            if not progress.done():
                progress.set_result(None)

    async def relieved(self) -> None:
        """Wait while more than a quarter of ``SendPolicy.max_queue`` waits and the writes progress.

        Returns when the queue is down to a quarter, the outbox gave up, or no item was written
        for ``SendPolicy.backpressure`` seconds (a peer that does not read is not waited for).
        """
        while self.open and self._queue is not None and len(self._queue) > self.policy.max_queue >> 2:
            if self._progress is None:
                self._progress = asyncio.get_running_loop().create_future()
            written = self.written
            try:
                await asyncio.wait_for(asyncio.shield(self._progress), self.policy.backpressure)
            except asyncio.TimeoutError:
                if self.written == written:
                    return

    def _drop(self, count: int) -> None:
        self.dropped += count
        stats.dropped += count


# -- backpressure -----------------------------------------------------------------------------

_pressure: contextvars.ContextVar[list[Outbox] | None] = contextvars.ContextVar("qakeapi_pressure", default=None)
"""The outboxes the current connection's messages filled past half (see :func:`feel_pressure`)."""


def feel_pressure() -> tuple[list[Outbox], contextvars.Token[list[Outbox] | None]]:
    """Make the calling task a sender that feels backpressure (a connection's receive loop).

    Returns:
        The list in which outboxes that the task's sends fill past half are collected (await
        :func:`relieve` with it before reading on), and the token to reset the context with.
    """
    senders: list[Outbox] = []
    return senders, _pressure.set(senders)


def end_pressure(token: contextvars.Token[list[Outbox] | None]) -> None:
    """Undo :func:`feel_pressure` (with the token it returned), in the task that called it."""
    _pressure.reset(token)


async def relieve(pressed: list[Outbox]) -> None:
    """Wait for each outbox of ``pressed`` to drain (see :meth:`Outbox.relieved`), then forget them."""
    while pressed:
        await pressed.pop().relieved()
