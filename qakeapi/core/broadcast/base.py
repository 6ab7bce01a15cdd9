"""The broadcast backend interface: publish to channels, receive what is published on them.

A backend carries opaque payloads between processes (or within one). Delivery is at most
once, in publish order per publisher, with no persistence: a subscriber that is disconnected
when a message is published does not get it.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

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
    """

    def __init__(self, *, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        self._queue: asyncio.Queue[Event | object] = asyncio.Queue(max_queue)
        self.dropped = 0

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

    async def events(self) -> AsyncIterator[Event]:
        """Yield received events until :meth:`~BroadcastBackend.disconnect` is called."""
        while True:
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

    def _end_events(self) -> None:
        while True:
            try:
                self._queue.put_nowait(_CLOSED)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()
