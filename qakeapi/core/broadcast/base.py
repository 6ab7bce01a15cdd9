"""The broadcast backend interface: publish to channels, receive what is published on them.

A backend carries opaque payloads between processes (or within one). Delivery is at most
once, in publish order per publisher, with no persistence: a subscriber that is disconnected
when a message is published does not get it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from qakeapi.core.broadcast.history import HistoryAppend, HistoryRead
from qakeapi.exceptions import BroadcastError

__all__ = ["DEFAULT_MAX_QUEUE", "BroadcastBackend", "Event"]

DEFAULT_MAX_QUEUE = 10_000

logger = logging.getLogger("qakeapi.broadcast")


@dataclass(frozen=True, slots=True)
class Event:
    """A message received on a subscribed channel.

    Attributes:
        channel: The channel it was published on.
        payload: The bytes that were published.
    """

    channel: str
    payload: bytes


_CLOSED = object()


class BroadcastBackend(abc.ABC):
    """Publish/subscribe between processes.

    Received events wait in a bounded queue until :meth:`~BroadcastBackend.events` takes them; when the queue
    is full the newest event is dropped, logged and counted in ``dropped``.

    Args:
        max_queue: How many received events may wait to be consumed.

    Attributes:
        connected_since: When (:func:`time.monotonic`) the receiving side last came up, or
            ``None`` while it is down: a cluster only declares other nodes dead after it has
            itself been receiving for a while.
    """

    def __init__(self, *, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        self.max_queue = max_queue
        self._queue: asyncio.Queue[Event | object] = asyncio.Queue(max_queue)
        self._closed = False
        self.dropped = 0
        self.connected_since: float | None = None

    @abc.abstractmethod
    async def connect(self) -> None:
        """Start the backend. Idempotent."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Stop the backend and end :meth:`~BroadcastBackend.events`. Idempotent."""

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start receiving what is published on ``channel``."""

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving what is published on ``channel``."""

    @abc.abstractmethod
    async def publish(self, channel: str, payload: str | bytes) -> None:
        """Publish ``payload`` (``str`` is sent as UTF-8) to every subscriber of ``channel``.

        Raises:
            BroadcastError: The backend cannot publish now.
        """

    async def publish_many(self, channel: str, payloads: Sequence[str | bytes]) -> None:
        """Publish ``payloads`` on ``channel`` in order (backends may batch them in one round trip).

        Raises:
            BroadcastError: The backend cannot publish now; some of ``payloads`` may have been published.
        """
        for payload in payloads:
            await self.publish(channel, payload)

    # -- room history (see qakeapi.core.cluster.history) --------------------------------------

    supports_history: ClassVar[bool] = False
    """Whether this backend numbers and keeps room histories (the methods below)."""

    async def append_history(self, append: HistoryAppend) -> tuple[str, int]:
        """Number a publication, append it to a room's history and publish it on its channel, atomically.

        Args:
            append: The publication, its room's history and how to keep it.

        Returns:
            The history's epoch and the publication's offset.

        Raises:
            BroadcastError: The backend cannot be reached, or keeps no history.
        """
        raise BroadcastError(f"{type(self).__name__} keeps no room history")

    async def mark_history_gap(self, keys: tuple[str, str], *, size: int, ttl: float) -> None:
        """Record in a room's history that publications the backend could not number happened.

        Raises:
            BroadcastError: The backend cannot be reached, or keeps no history.
        """
        raise BroadcastError(f"{type(self).__name__} keeps no room history")

    async def read_history(self, keys: tuple[str, str], since: int, limit: int) -> HistoryRead:
        """Read a room's history after offset ``since`` (at most ``limit`` entries), atomically.

        Raises:
            BroadcastError: The backend cannot be reached, or keeps no history.
        """
        raise BroadcastError(f"{type(self).__name__} keeps no room history")

    async def events(self) -> AsyncIterator[Event]:
        """Yield received events until :meth:`~BroadcastBackend.disconnect` is called (at once if it was)."""
        while not (self._closed and self._queue.empty()):
            event = await self._queue.get()
            if event is _CLOSED:
                return
            assert isinstance(event, Event)
            yield event

    def _received(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            logger.warning(
                "%s: event queue full (%d waiting); dropped a message on %r (%d dropped so far)",
                type(self).__name__,
                self._queue.qsize(),
                event.channel,
                self.dropped,
            )

    def _open_events(self) -> None:
        """Start a fresh event stream (in the running loop) for a new connection."""
        self._queue = asyncio.Queue(self.max_queue)
        self._closed = False

    def _end_events(self) -> None:
        """End :meth:`events`, after the events already queued (one reader per backend)."""
        self._closed = True
        # A reader waits only on an empty queue, so a full queue needs no wake-up marker.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_CLOSED)
