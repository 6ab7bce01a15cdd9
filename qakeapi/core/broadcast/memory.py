"""An in-process broadcast backend for a single node and for tests: ``memory://[name]``."""

from __future__ import annotations

import time
from collections import deque
from typing import ClassVar

from qakeapi.core.broadcast.base import DEFAULT_MAX_QUEUE, BroadcastBackend, Event
from qakeapi.core.broadcast.history import HistoryAppend, HistoryEntry, HistoryRead
from qakeapi.core.datastructures import discard_from

__all__ = ["MemoryBackend"]

_hubs: dict[str, dict[str, set[MemoryBackend]]] = {}


class _History:
    __slots__ = ("entries", "epoch", "expires_at", "last", "top")

    def __init__(self, epoch: str) -> None:
        self.epoch = epoch
        self.top = 0
        self.entries: deque[HistoryEntry] = deque()
        self.expires_at = 0.0
        self.last: dict[str, tuple[int, int]] = {}  # publisher -> (its last number, the offset it got)

    def add(self, entry: HistoryEntry, size: int, ttl: float) -> None:
        self.entries.append(entry)
        while len(self.entries) > size:
            self.entries.popleft()
        self.expires_at = time.monotonic() + ttl


_histories: dict[tuple[str, str], _History] = {}


class MemoryBackend(BroadcastBackend):
    """Delivers within one process to every backend created with the same hub name.

    Args:
        name: The hub; backends with the same name see each other's messages
            (``memory://chat`` has the name ``chat``).
        max_queue: How many received events may wait to be consumed.
    """

    supports_history: ClassVar[bool] = True

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
        discard_from(self._hub, channel, self)

    async def publish(self, channel: str, payload: str | bytes) -> None:
        """Hand ``payload`` to every backend of this hub subscribed to ``channel``."""
        data = payload.encode() if isinstance(payload, str) else payload
        for backend in tuple(self._hub.get(channel, ())):
            backend._received(Event(channel, data))

    # -- room history: kept per hub, in this process ------------------------------------------

    def _history(self, keys: tuple[str, str]) -> _History | None:
        history = _histories.get((self.name, keys[0]))
        if history is not None and history.expires_at <= time.monotonic():
            del _histories[(self.name, keys[0])]
            return None
        return history

    async def append_history(self, append: HistoryAppend) -> tuple[str, int]:
        """Number, keep and publish a publication (see the base class)."""
        keys, publication = append.keys, append.publication
        history = self._history(keys) or _History(append.epoch)
        if publication is not None:
            number, offset = history.last.get(publication[0], (-1, 0))
            if number == publication[1]:  # a retry of the last one: already appended
                return history.epoch, offset
        offset = history.top + 1
        # Publish first: if it raises, nothing changed.
        await self.publish(append.channel, f'{append.header},"o":{offset},"e":"{history.epoch}"}}\n{append.data}')
        _histories[(self.name, keys[0])] = history
        if append.gap:
            history.add(HistoryEntry(history.top, None), append.size, append.ttl)
        history.top = offset
        history.add(HistoryEntry(offset, append.data), append.size, append.ttl)
        if publication is not None:
            history.last[publication[0]] = (publication[1], offset)
        return history.epoch, offset

    async def mark_history_gap(self, keys: tuple[str, str], *, size: int, ttl: float) -> None:
        """Record a stretch of unnumbered publications (see the base class)."""
        history = self._history(keys)
        if history is not None:
            history.add(HistoryEntry(history.top, None), size, ttl)

    async def read_history(self, keys: tuple[str, str], since: int, limit: int) -> HistoryRead:
        """Read a room's history after ``since`` (see the base class)."""
        history = self._history(keys)
        if history is None:
            return HistoryRead(None, 0, None, [])
        entries = list(history.entries)
        first = None
        if entries:
            first = entries[0].offset if entries[0].data is not None else entries[0].offset + 1
        after = [e for e in entries if e.offset > since or (e.data is None and e.offset >= since)]
        return HistoryRead(history.epoch, history.top, first, after[:limit])
