"""The process's own counters: plain integers the framework keeps, read only when someone looks.

Nothing here knows Prometheus. The hot paths (a message received, a frame sent, a room's
fan-out) add to plain attributes of :data:`counters` -- an integer increment, never a call
into a metrics library -- and :mod:`qakeapi.core.metrics` turns them into Prometheus metrics
at scrape time. Counts that already live elsewhere (the send queue's
:data:`~qakeapi.core.websockets.outbox.stats`, each handler's
:class:`~qakeapi.core.limits.RejectionLog`, a cluster's publish buffer) are read where they
are, through the weak registries below.

Every label a counter is keyed by is bounded by the code, never by a client: a route
*template* (``/chat/{room}``, not ``/chat/lobby``), a close code, a reason from a fixed set, a
hook's qualified name. Room names, user ids and paths never become keys (see the
observability topic of the docs).
"""

from __future__ import annotations

import bisect
import socket
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DURATION_BUCKETS",
    "FANOUT_BUCKETS",
    "LAG_BUCKETS",
    "MESSAGE_SAMPLE",
    "TIMING_SCOPE_KEY",
    "Buckets",
    "ClusterCounters",
    "Counters",
    "Observed",
    "counters",
    "default_node",
    "hook_name",
    "observed",
    "payload_size",
]

DURATION_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
"""Upper bounds, in seconds, for hook durations and delivery times."""
FANOUT_BUCKETS = (1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0)
"""Upper bounds, in recipients, for the size of one broadcast."""
MESSAGE_SAMPLE = 16
"""One message in this many has its message hooks timed (a clock read costs about as much as a
counter update costs ten times: timing every message would cost an echo server ~6 %)."""
TIMING_SCOPE_KEY = "qakeapi.timing"
"""The scope key an application that exposes metrics sets on its WebSocket connections, whose
hooks are then timed (two clock reads and a histogram update per hook call)."""
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds, in seconds, for the time an envelope took from one node to another."""


class Buckets:
    """The storage of one histogram: a count per upper bound, the sum and the count of observations.

    :meth:`observe` is a binary search and three additions: cheap enough for a per-broadcast
    or per-envelope path. Counts are per bucket, not cumulative (:meth:`cumulative` adds them
    up for the exposition).

    Args:
        bounds: The upper bounds, increasing (``+Inf`` is implied).
    """

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"bucket bounds must be increasing, got {bounds!r}")
        self.bounds = tuple(float(bound) for bound in bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Count one observation of ``value``."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def observe_many(self, value: float, times: int) -> None:
        """Count ``times`` observations of the same ``value`` (one frame sent to ``times`` members)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.sum += value * times
        self.count += times

    def cumulative(self) -> list[tuple[float, int]]:
        """``[(upper bound, observations at or below it), ..., (inf, count)]``, as Prometheus exposes them."""
        total = 0
        out = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


@dataclass(eq=False, slots=True)
class Counters:
    """Counts the framework keeps for this process, each bumped where the event happens.

    Attributes:
        received: WebSocket messages received (every endpoint, through
            :meth:`~qakeapi.core.websockets.connection.WebSocket.receive_message`).
        received_bytes: Their payload: bytes of a binary message, UTF-8 bytes of a text one.
        sent: Frames handed to connections' send queues (a broadcast counts one per recipient).
        sent_bytes: Their payload, counted like ``received_bytes``.
        opened: Connections that reached their endpoint, by route template.
        closed: Those that ended, by route template and close code (the peer's code, else the
            one this side closed with, else 1006 for a transport that went away).
        origin_refusals: Handshakes refused by the origin policy, by reason.
        limit_refusals: Refusals by a limit not kept in a handler's
            :class:`~qakeapi.core.limits.RejectionLog`, by kind (``"room_limit"``: a join past
            a :class:`~qakeapi.core.rooms.Rooms` limit).
        auth_failures: Authentication failures, by reason (``"missing"``, ``"expired"`` ...).
        revocations: Connections closed because their user's sessions were revoked.
        hook_errors: Hooks that raised, by hook name.
        hook_seconds: How long hooks ran, by ``(kind, hook name)``, for the connections of an
            application that exposes metrics (see :data:`TIMING_SCOPE_KEY`): every call of a
            connection hook, one message in :data:`MESSAGE_SAMPLE` of a message hook.
        broadcast_recipients: How many recipients each broadcast had.
        delivery_seconds: Per broadcast, the time from the call until every recipient's frame
            was handed to the server or queued behind a slow reader.
        history_recoveries: Rejoins with a position, by result (``"recovered"``, ``"failed"``).
    """

    received: int = 0
    received_bytes: int = 0
    sent: int = 0
    sent_bytes: int = 0
    opened: dict[str, int] = field(default_factory=dict)
    closed: dict[tuple[str, int], int] = field(default_factory=dict)
    origin_refusals: dict[str, int] = field(default_factory=dict)
    limit_refusals: dict[str, int] = field(default_factory=dict)
    auth_failures: dict[str, int] = field(default_factory=dict)
    revocations: int = 0
    hook_errors: dict[str, int] = field(default_factory=dict)
    hook_seconds: dict[tuple[str, str], Buckets] = field(default_factory=dict)
    _timers: dict[tuple[str, object], Buckets] = field(default_factory=dict, repr=False)
    broadcast_recipients: Buckets = field(default_factory=lambda: Buckets(FANOUT_BUCKETS))
    delivery_seconds: Buckets = field(default_factory=lambda: Buckets(DURATION_BUCKETS))
    history_recoveries: dict[str, int] = field(default_factory=dict)

    def count(self, table: dict[Any, int], key: Any, amount: int = 1) -> None:
        """Add ``amount`` to ``table[key]`` (one of the keyed counters above)."""
        table[key] = table.get(key, 0) + amount

    def hook_timer(self, kind: str, hook: object) -> Buckets:
        """The histogram of hook ``hook`` of ``kind`` (``"on_message"`` ...), made on first use.

        Looked up by the hook object (a dictionary lookup); hooks with the same name share one.
        """
        timer = self._timers.get((kind, hook))
        if timer is None:
            key = (kind, hook_name(hook))
            timer = self.hook_seconds.get(key)
            if timer is None:
                timer = self.hook_seconds[key] = Buckets(DURATION_BUCKETS)
            self._timers[(kind, hook)] = timer
        return timer

    def hook_failed(self, hook: object) -> None:
        """Hook ``hook`` raised."""
        name = hook_name(hook)
        self.hook_errors[name] = self.hook_errors.get(name, 0) + 1

    def connected(self, route: str) -> None:
        """A connection reached the endpoint of ``route`` (a template)."""
        self.opened[route] = self.opened.get(route, 0) + 1

    def disconnected(self, route: str, code: int) -> None:
        """A connection of ``route`` ended with close ``code``."""
        key = (route, code)
        self.closed[key] = self.closed.get(key, 0) + 1

    def open_connections(self) -> dict[str, int]:
        """Connections open now, by route (opened minus closed)."""
        open_ = dict(self.opened)
        for (route, _code), count in self.closed.items():
            open_[route] = open_.get(route, 0) - count
        return open_


def hook_name(hook: object) -> str:
    """The label of a hook: its module and qualified name (bounded: written in code, not sent by clients)."""
    module = getattr(hook, "__module__", None) or ""
    name = getattr(hook, "__qualname__", None) or type(hook).__qualname__
    return f"{module}.{name}" if module else name


def payload_size(data: str | bytes) -> int:
    """Bytes of ``data`` on the wire: ``len`` for ASCII text and bytes (no copy), UTF-8 length otherwise."""
    if isinstance(data, bytes) or data.isascii():
        return len(data)
    return len(data.encode("utf-8", "surrogatepass"))


counters = Counters()
"""The counters of this process."""


@dataclass(eq=False)
class ClusterCounters:
    """The counts of one cluster node that nothing else keeps (see
    :class:`~qakeapi.core.clustering.ClusteredManager`'s ``counts``).

    Attributes:
        received: Envelopes received from other instances (duplicates left out).
        lag: Seconds from an envelope's publication (its sender's clock) to its receipt.
        history_recoveries: Rejoins with a position, by result (``"recovered"``, ``"failed"``).
    """

    received: int = 0
    lag: Buckets = field(default_factory=lambda: Buckets(LAG_BUCKETS))
    history_recoveries: dict[str, int] = field(default_factory=dict)


@dataclass(eq=False)
class Observed:
    """Weak registries of the objects whose own counts are exported (nothing is kept alive by them).

    Attributes:
        rejection_logs: Every :class:`~qakeapi.core.limits.RejectionLog` (limit refusals by kind).
        clusters: Every :class:`~qakeapi.core.clustering.ClusteredManager`.
    """

    rejection_logs: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)
    clusters: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)


observed = Observed()
"""The registries of this process."""


def default_node() -> str:
    """The ``node`` label when none is given: the node id of this process's cluster node, else the host name."""
    managers = sorted({manager.node_id for manager in list(observed.clusters)})
    return managers[0] if len(managers) == 1 else socket.gethostname()
