"""Bounded per-connection sending for fan-out: one slow reader never stalls the others.

Fan-out writes a frame to each recipient with
:meth:`WebSocket.send_nowait <qakeapi.core.websockets.connection.WebSocket.send_nowait>`. The
ASGI ``send`` is started at once; when the server can take the frame (the usual case) it
completes right there, with no task and no queue. When the server applies backpressure (the
peer is not reading and the transport buffer is full), the blocked send is finished by a
background task and the frames that follow wait in an :class:`Outbox` bounded by the
connection's :class:`SendPolicy`. What happens when the outbox is full is the policy's
``overflow``:

``"disconnect"`` (the default)
    the queued frames are dropped (and counted) and the connection is closed with
    ``close_code`` (:attr:`~qakeapi.status.CloseCode.POLICY_VIOLATION`) and the reason
    ``"slow consumer"``; later sends to it raise
    :class:`~qakeapi.exceptions.WebSocketClosedError`, so rooms forget it.
``"drop_oldest"``
    the oldest queued frame is dropped (and counted) to make room; the connection stays open.

Drops are counted per connection (``WebSocket.dropped``) and for the process
(:data:`stats`).

The first step of each send runs in the broadcasting task, the rest (when it blocks) in the
outbox's task: this needs an ASGI server whose ``send`` is a plain coroutine that does not
depend on the task it runs in (uvicorn's ``websockets-sansio``, ``websockets`` and ``wsproto``
implementations are tested). A ``send`` wrapped in task-bound constructs (anyio cancel scopes)
is not supported by fan-out.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Coroutine, Generator
from dataclasses import dataclass
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from qakeapi.status import CloseCode
from qakeapi.types import Message

if TYPE_CHECKING:
    from qakeapi.core.websockets.connection import WebSocket

__all__ = ["DEFAULT_SEND_POLICY", "Outbox", "Overflow", "SendPolicy", "SendStats", "finish_send", "start_send", "stats"]

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
    """

    max_queue: int = 256
    overflow: Overflow = Overflow.DISCONNECT
    close_code: int = CloseCode.POLICY_VIOLATION

    def __post_init__(self) -> None:
        if self.max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        object.__setattr__(self, "overflow", Overflow(self.overflow))


DEFAULT_SEND_POLICY = SendPolicy()
"""The policy of connections nobody configured (256 frames, then disconnect)."""


@dataclass
class SendStats:
    """Process-wide counters of the slow-consumer policy.

    Attributes:
        queued: Times a send found its connection busy and had to wait in an outbox.
        dropped: Frames dropped by either policy.
        disconnected: Connections closed for being too slow.
    """

    queued: int = 0
    dropped: int = 0
    disconnected: int = 0


stats = SendStats()
"""The counters for this process."""


def start_send(send: Awaitable[None]) -> Coroutine[Any, Any, None] | None:
    """Start an ASGI send and run it as far as it goes without waiting.

    Args:
        send: The awaitable returned by the ASGI ``send`` callable.

    Returns:
        ``None`` when the send completed; otherwise a coroutine that finishes it when awaited.

    Raises:
        OSError: The server reports the connection gone.
    """
    if type(send) is not CoroutineType:  # an exact type check: cheaper than isinstance on an ABC
        return _await(send)
    steps = send.__await__()
    waiter = next(steps, _DONE)
    return None if waiter is _DONE else finish_send(steps, waiter)


_DONE = object()


async def _await(send: Awaitable[None]) -> None:
    await send


async def finish_send(steps: Generator[Any, None, Any], waiter: Any) -> None:
    """Drive a send on from where it was suspended waiting on ``waiter``, as a task would.

    Args:
        steps: The send's ``__await__()`` iterator, stepped once.
        waiter: What that step yielded (a future, or ``None`` for a bare yield).
    """
    try:
        while True:
            if waiter is None:
                await asyncio.sleep(0)
            else:
                waiter._asyncio_future_blocking = False
                await asyncio.wait((waiter,))
            try:
                waiter = steps.send(None)
            except StopIteration:
                return
    finally:
        steps.close()


class Outbox:
    """Frames waiting for one connection while its transport is not taking writes.

    Created by :meth:`WebSocket.send_nowait <qakeapi.core.websockets.connection.WebSocket.send_nowait>`
    when a send blocks; gone again once everything is written.

    Args:
        websocket: The connection.
        blocked: The unfinished send, as returned by :func:`start_send`.
        send: The connection's ASGI ``send`` callable, for the frames that follow.
    """

    def __init__(
        self,
        websocket: WebSocket,
        blocked: Coroutine[Any, Any, None],
        send: Any,
    ) -> None:
        self.websocket = websocket
        self.frames: deque[Message] = deque()
        self._send = send
        self._blocked = blocked
        self._aborted = False
        stats.queued += 1
        self.task = asyncio.get_running_loop().create_task(self._run(blocked))
        self.task.add_done_callback(self._finished)

    def __len__(self) -> int:
        return len(self.frames)

    def put(self, message: Message) -> bool:
        """Queue ``message`` behind the blocked send, applying the policy when full.

        Returns:
            Whether the connection is still open.
        """
        if self._aborted or self.task.done():
            return False
        policy = self.websocket.send_policy
        if len(self.frames) < policy.max_queue:
            self.frames.append(message)
            return True
        if policy.overflow is Overflow.DROP_OLDEST:
            self.frames.popleft()
            self.frames.append(message)
            self._count_drops(1)
            if self.websocket.dropped == 1 or self.websocket.dropped % policy.max_queue == 0:
                logger.warning(
                    "WebSocket %s (path=%s) reads too slowly: dropped %d frame(s) so far (drop_oldest, max_queue=%d)",
                    self.websocket.id,
                    self.websocket.path,
                    self.websocket.dropped,
                    policy.max_queue,
                )
            return True
        self._count_drops(len(self.frames) + 1)
        self.frames.clear()
        stats.disconnected += 1
        logger.warning(
            "WebSocket %s (path=%s) reads too slowly: more than %d frames waiting; closing it with code %d",
            self.websocket.id,
            self.websocket.path,
            policy.max_queue,
            policy.close_code,
        )
        self._aborted = True
        self.websocket._abandon()
        self.task.cancel()
        return False

    def discard(self) -> None:
        """Drop what waits (counted) and stop sending: the connection is being closed."""
        self._count_drops(len(self.frames))
        self.frames.clear()
        self.task.cancel()

    def _count_drops(self, count: int) -> None:
        self.websocket.dropped += count
        stats.dropped += count

    async def wait_drained(self) -> None:
        """Wait until every queued frame is written (or the outbox gave up)."""
        await asyncio.wait((self.task,))

    async def _run(self, blocked: Coroutine[Any, Any, None]) -> None:
        try:
            await blocked
            while self.frames:
                await self._send(self.frames.popleft())
        except asyncio.CancelledError:
            if not self._aborted:  # cancelled from outside (shutdown): what waited is lost
                self._give_up("its sends were cancelled")
            raise
        except Exception as exc:  # OSError from the server when the peer is gone, or a refusal
            self._give_up(repr(exc))
        finally:
            # In the same step as the last write: a send_nowait() right after must not queue
            # behind an outbox that no longer writes.
            self.websocket._outbox_done(self)

    def _give_up(self, why: str) -> None:
        logger.info("WebSocket %s: dropping %d queued frame(s): %s", self.websocket.id, len(self.frames), why)
        self._count_drops(len(self.frames))
        self.frames.clear()
        self.websocket._abandon()

    def _finished(self, task: asyncio.Task[None]) -> None:
        # Runs however the task ended, even when it was cancelled before it started.
        self._blocked.close()
        self.websocket._outbox_done(self)
        if self._aborted:
            closing = asyncio.get_running_loop().create_task(self._close())
            _closing.add(closing)
            closing.add_done_callback(_closing.discard)
        elif not task.cancelled() and task.exception() is not None:
            logger.error("WebSocket %s: sending queued frames failed", self.websocket.id, exc_info=task.exception())

    async def _close(self) -> None:
        """Tell the slow reader why it is being dropped (written once it reads again)."""
        policy = self.websocket.send_policy
        try:
            await self._send({"type": "websocket.close", "code": int(policy.close_code), "reason": "slow consumer"})
        except OSError:
            pass  # the peer is gone: nothing left to tell it
        except Exception:
            logger.exception("WebSocket %s: closing the slow reader failed", self.websocket.id)


_closing: set[asyncio.Task[None]] = set()
