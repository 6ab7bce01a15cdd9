"""An in-process broadcast backend for a single node and for tests: ``memory://[name]``."""

from __future__ import annotations

import time

from qakeapi.core.broadcast.base import DEFAULT_MAX_QUEUE, BroadcastBackend, Event

__all__ = ["MemoryBackend"]

_hubs: dict[str, dict[str, set[MemoryBackend]]] = {}


class MemoryBackend(BroadcastBackend):
    """Delivers within one process to every backend created with the same hub name.

    Args:
        name: The hub; backends with the same name see each other's messages
            (``memory://chat`` has the name ``chat``).
        max_queue: How many received events may wait to be consumed.
    """

    def __init__(self, name: str = "", *, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        super().__init__(max_queue=max_queue)
        self.name = name
        self._channels: set[str] = set()
        self._connected = False

    @property
    def _hub(self) -> dict[str, set[MemoryBackend]]:
        return _hubs.setdefault(self.name, {})

    async def connect(self) -> None:
        """Start the backend. Idempotent."""
        if not self._connected:
            self._connected = True
            self._open_events()
            self.connected_since = time.monotonic()

    async def disconnect(self) -> None:
        """Drop every subscription and end :meth:`~qakeapi.core.broadcast.base.BroadcastBackend.events`. Idempotent."""
        for channel in list(self._channels):
            await self.unsubscribe(channel)
        if self._connected:
            self._connected = False
            self.connected_since = None
            self._end_events()

    async def subscribe(self, channel: str) -> None:
        """Start receiving what is published on ``channel``."""
        self._channels.add(channel)
        self._hub.setdefault(channel, set()).add(self)

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving what is published on ``channel``."""
        self._channels.discard(channel)
        subscribers = self._hub.get(channel)
        if subscribers is not None:
            subscribers.discard(self)
            if not subscribers:
                del self._hub[channel]

    async def publish(self, channel: str, payload: str | bytes) -> None:
        """Hand ``payload`` to every backend of this hub subscribed to ``channel``."""
        data = payload.encode() if isinstance(payload, str) else payload
        for backend in tuple(self._hub.get(channel, ())):
            backend._received(Event(channel, data))
