"""The publish buffer of one instance: ordered, numbered, bounded in age and size, and counted.

Every envelope an instance publishes waits here until the backend takes it, so a backend
outage shorter than ``max_age`` loses nothing: the buffered envelopes go out, in order, when it
comes back. An envelope gets its sequence number when it is first handed to the backend and
keeps it through retries, so a retry after an ambiguous failure is a duplicate receivers can
drop. Only client messages are numbered (1, 2, 3 ...); a control envelope carries the number of
the last client message before it, so a receiver notices missing client messages even when no
further client message follows.

Past the bound: envelopes older than ``max_age`` are dropped, and while the backend has been
down for longer than ``max_age`` (or the buffer is full) new ones are refused with
:class:`~qakeapi.exceptions.ClusterUnavailableError`. Either way what was lost, and for whom, is recorded in a
:class:`Loss` that is published once the backend is back, so the affected clients are told.
Pure: the clock is passed in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from qakeapi.core.cluster.envelope import DATA_KINDS, Envelope, Kind
from qakeapi.core.moved import moved
from qakeapi.exceptions import ClusterUnavailableError

__all__ = [
    "DEFAULT_BUFFER_SECONDS",
    "DEFAULT_MAX_BUFFER",
    "Loss",
    "PublishBuffer",
    "Pending",
]

DEFAULT_BUFFER_SECONDS = 5.0
DEFAULT_MAX_BUFFER = 100_000
_MAX_NAMED_TARGETS = 1000


@dataclass(slots=True)
class Loss:
    """What was dropped, and whose clients it was meant for.

    Attributes:
        count: How many messages.
        everyone: Whether any of them was for every connection (or too many targets to name).
        rooms: The rooms they were for.
        users: The users they were for.
        connections: The connection ids they were for.
        causes: How many were dropped for each cause: ``"age"`` (waited longer than the
            buffer's ``max_age``), ``"full"`` (the buffer was full) or ``"down"`` (refused: the
            backend had been down longer than ``max_age``).
    """

    count: int = 0
    everyone: bool = False
    rooms: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    connections: set[str] = field(default_factory=set)
    causes: dict[str, int] = field(default_factory=dict)

    def add(self, kind: Kind, data: dict[str, Any], cause: str) -> None:
        """Record one envelope dropped for ``cause`` (control envelopes are not anybody's messages)."""
        if kind is Kind.ALL:
            self.everyone = True
        elif kind is Kind.ROOM:
            self.rooms.add(data["room"])
        elif kind is Kind.USER:
            self.users.add(data["user"])
        elif kind is Kind.CONNECTION:
            self.connections.add(data["connection"])
        else:
            return
        self.count += 1
        self.causes[cause] = self.causes.get(cause, 0) + 1
        if len(self.rooms) + len(self.users) + len(self.connections) > _MAX_NAMED_TARGETS:
            self.everyone = True
            self.rooms.clear()
            self.users.clear()
            self.connections.clear()

    def describe(self, max_age: float) -> str:
        """Why they were dropped, for a log line ("3 waited longer than 5.0s, 1 found the buffer full")."""
        words = {
            "age": f"waited longer than {max_age}s for the backend",
            "full": "found the buffer full",
            "down": f"came after the backend had been down for over {max_age}s",
        }
        return ", ".join(f"{count} {words[cause]}" for cause, count in sorted(self.causes.items()))

    def as_data(self) -> dict[str, Any]:
        """The fields of a :attr:`~qakeapi.core.cluster.envelope.Kind.LOST` envelope."""
        return {
            "count": self.count,
            "everyone": self.everyone,
            "rooms": sorted(self.rooms),
            "users": sorted(self.users),
            "connections": sorted(self.connections),
        }


@dataclass(slots=True)
class Pending:
    """An envelope waiting to be published.

    Attributes:
        kind: What it carries.
        data: The kind's fields.
        frame: The frame, if any.
        enqueued_at: When it was buffered (the outbox's clock).
        seq: Its sequence number, once it was first handed to the backend (``-1`` before).
    """

    kind: Kind
    data: dict[str, Any]
    frame: str | bytes | None
    enqueued_at: float
    seq: int = -1


class PublishBuffer:
    """An ordered, bounded buffer of envelopes to publish, with the backend's up/down state.

    Args:
        instance: The publishing instance id.
        node: The publishing node's label.
        max_age: How long an envelope may wait for the backend, in seconds.
        max_size: How many envelopes may wait.
    """

    def __init__(
        self,
        instance: str,
        node: str,
        *,
        max_age: float = DEFAULT_BUFFER_SECONDS,
        max_size: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        if max_age <= 0 or max_size < 1:
            raise ValueError("max_age must be positive and max_size at least 1")
        self.instance = instance
        self.node = node
        self.max_age = max_age
        self.max_size = max_size
        self.down_since: float | None = None
        self.published = 0
        self.dropped = 0
        self.loss = Loss()
        self.enqueued = 0  # envelopes ever buffered
        self.settled = 0  # of those, how many went out or were dropped for good
        self._items: deque[Pending] = deque()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def last_seq(self) -> int:
        """The number given to the latest client message (``0`` before the first)."""
        return self._seq

    def put(self, kind: Kind, data: dict[str, Any], frame: str | bytes | None, now: float) -> None:
        """Buffer an envelope that carries a client message.

        Raises:
            ClusterUnavailableError: The backend has been down longer than ``max_age``, or the
                buffer is full; the loss is recorded.
        """
        reason = self.refusal(now)
        if reason is not None:
            self.dropped += 1
            self.loss.add(kind, data, "full" if len(self._items) >= self.max_size else "down")
            raise ClusterUnavailableError(reason)
        self._items.append(Pending(kind, data, frame, now))
        self.enqueued += 1

    def put_control(self, kind: Kind, data: dict[str, Any], now: float, *, force: bool = False) -> bool:
        """Buffer a control envelope (heartbeat, presence); returns ``False`` if it was refused.

        Refused control envelopes are not counted as losses: presence recovers through
        heartbeats and sync. ``force`` buffers it anyway (a heartbeat probing a backend that is
        down, when nothing else is waiting).
        """
        if not force and self.refusal(now) is not None:
            return False
        self._items.append(Pending(kind, data, None, now))
        self.enqueued += 1
        return True

    def refusal(self, now: float) -> str | None:
        """Why a new envelope would be refused now, or ``None`` if it would be buffered."""
        if self.down_since is not None and now - self.down_since > self.max_age:
            down = now - self.down_since
            return f"the broadcast backend has been unreachable for {down:.1f}s (bound {self.max_age}s)"
        if len(self._items) >= self.max_size:
            return f"the cluster publish buffer is full ({self.max_size} messages waiting)"
        return None

    def expire(self, now: float) -> int:
        """Drop the client messages that waited longer than ``max_age``; return how many.

        Revocations are never dropped for their age (a node that misses one would keep a
        revoked user's connections open): they wait until the backend takes them. A client
        message that already had a number (a publish of it was attempted) leaves a
        :attr:`~qakeapi.core.cluster.envelope.Kind.SKIP` in its place, so receivers do not take
        the missing number for a loss of their own.
        """
        expired = 0
        kept: list[Pending] = []
        while self._items and now - self._items[0].enqueued_at > self.max_age:
            item = self._items.popleft()
            if item.kind is Kind.SKIP or item.kind is Kind.REVOKE:
                kept.append(item)
                continue
            self.loss.add(item.kind, item.data, "age")
            if item.kind in DATA_KINDS:
                self.dropped += 1
                if item.seq >= 0:
                    kept.append(Pending(Kind.SKIP, {}, None, item.enqueued_at, item.seq))  # in its place
                    expired += 1
                    continue
            self.settled += 1
            expired += 1
        self._items.extendleft(reversed(kept))
        return expired

    def batch(self, limit: int) -> list[Envelope]:
        """The next (up to) ``limit`` envelopes to publish, numbered; they stay until :meth:`sent`."""
        envelopes = []
        for index, item in enumerate(self._items):
            if index >= limit:
                break
            if item.seq < 0:
                if item.kind in DATA_KINDS:
                    self._seq += 1
                item.seq = self._seq
            envelopes.append(Envelope(item.kind, self.instance, self.node, item.seq, item.data, item.frame))
        return envelopes

    def sent(self, count: int) -> None:
        """The first ``count`` envelopes of the last :meth:`batch` were published."""
        for _ in range(count):
            self._items.popleft()
        self.published += count
        self.settled += count

    def drained(self, mark: int) -> bool:
        """Whether every envelope buffered up to ``mark`` (a past ``enqueued``) went out or was dropped."""
        return self.settled >= mark

    def failed(self, now: float) -> bool:
        """Publishing failed; return ``True`` if the backend was up until now."""
        if self.down_since is None:
            self.down_since = now
            return True
        return False

    def recovered(self) -> Loss | None:
        """Publishing works again: return what was lost since the last report (if anything) and forget it."""
        self.down_since = None
        if not self.loss.count:
            return None
        loss, self.loss = self.loss, Loss()
        return loss

    def take_loss(self) -> Loss | None:
        """Return and forget what was lost, if anything (for losses while the backend was up)."""
        if not self.loss.count:
            return None
        loss, self.loss = self.loss, Loss()
        return loss


# Outbox, this class's name before 0.2 (the name Outbox is the connection's send queue now).
__getattr__ = moved(__name__, {"Outbox": "qakeapi.core.cluster.outbox.PublishBuffer"})
