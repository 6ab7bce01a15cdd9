"""What a broadcast backend stores for a room's history, and what it reads back.

The backends (:mod:`~qakeapi.core.broadcast.memory`, :mod:`~qakeapi.core.broadcast.redis_stream`)
number, keep and read histories in these terms; what a history *means* to a room and its
clients (policies, positions, recovery) is :mod:`qakeapi.core.cluster.history`, one layer up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["HistoryAppend", "HistoryEntry", "HistoryPoint", "HistoryRead"]


class HistoryPoint(Protocol):
    """A point in a room's history: an epoch and an offset (a
    :class:`~qakeapi.core.cluster.history.Position` is one)."""

    @property
    def epoch(self) -> str:
        """The history's epoch."""
        ...

    @property
    def offset(self) -> int:
        """The last offset received (``0``: none yet)."""
        ...


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One entry of a room's history.

    Attributes:
        offset: Its offset.
        data: The publication's data as JSON text; ``None`` for a gap marker (publications the
            backend could not number happened after ``offset``).
    """

    offset: int
    data: str | None


@dataclass(frozen=True, slots=True)
class HistoryAppend:
    """One publication for a backend to number, keep in a room's history and publish, atomically.

    What is published is ``header`` (a JSON object without its closing brace) completed with
    ``,"o":<offset>,"e":"<epoch>"}``, a newline, then ``data``.

    Attributes:
        channel: The cluster channel.
        keys: The history's keys (:func:`~qakeapi.core.cluster.history.history_keys`).
        header: The envelope header, open.
        data: The publication's data, JSON text.
        epoch: The epoch to give the history if it has none.
        size: How many entries the history keeps.
        ttl: Seconds the history lives after this append.
        gap: Record first that publications the backend could not number happened.
        publication: ``(publisher, number)``, unique per publication: an append that repeats the
            publisher's last one (a retry after a reply was lost) is not appended again, and
            answers the offset the first one got. Publishing is idempotent that way.
    """

    channel: str
    keys: tuple[str, str]
    header: str
    data: str
    epoch: str
    size: int
    ttl: float
    gap: bool = False
    publication: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class HistoryRead:
    """What a backend read of a room's history returns.

    Attributes:
        epoch: The history's epoch (``None``: the room has no history now).
        top: The latest offset (``0``: none).
        first: The oldest offset still kept (``None``: no entries).
        entries: The entries after the requested offset, oldest first.
    """

    epoch: str | None
    top: int
    first: int | None
    entries: list[HistoryEntry]

    def recovery_from(self, since: HistoryPoint) -> tuple[bool, str | None]:
        """Whether ``entries`` are exactly what a client at ``since`` missed.

        Returns:
            ``(True, None)`` or ``(False, reason)``.
        """
        if self.epoch is None:
            return False, "the room has no history (it expired, or the backend lost it)"
        if self.epoch != since.epoch:
            return False, "the history was reset (another epoch)"
        if since.offset > self.top:
            return False, "the position is ahead of the history"
        if any(entry.data is None for entry in self.entries):
            return False, "publications that could not be numbered happened since"
        if since.offset < self.top and (self.first is None or self.first > since.offset + 1):
            return False, "the history no longer reaches back to the position"
        return True, None
