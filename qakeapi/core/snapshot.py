"""One reading of every metric of this process, as plain data: what a scrape exports.

:func:`take` reads the process's counters (:mod:`qakeapi.core.counters`), the send queues'
:data:`~qakeapi.core.websockets.outbox.stats`, every handler's
:class:`~qakeapi.core.limits.RejectionLog` and every live cluster node, and returns a list of
:class:`Family` -- names, types, help and samples, nothing of Prometheus. It is exported by
:class:`~qakeapi.core.metrics.MetricsCollector`, written to a file for the other workers of a
multi-process server (:mod:`qakeapi.core.worker_metrics`), and merged back (:func:`merge`).
Pure but for the reading: no I/O, no third-party import.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from qakeapi.core.counters import Buckets, Counters, counters, observed
from qakeapi.core.websockets.outbox import SendStats, stats

__all__ = ["Family", "Histogram", "Labels", "Sample", "from_data", "merge", "take", "to_data"]

Labels = tuple[tuple[str, str], ...]
"""A sample's labels, as sorted ``(name, value)`` pairs."""


@dataclass(frozen=True)
class Histogram:
    """A histogram sample.

    Attributes:
        buckets: ``(upper bound, cumulative count)`` pairs, ending with ``(inf, count)``.
        sum: The sum of the observations.
        count: How many there were.
    """

    buckets: tuple[tuple[float, int], ...]
    sum: float
    count: int


Sample = tuple[Labels, "float | Histogram"]
"""One sample, as its labels and its value."""


@dataclass
class Family:
    """One metric: its name (without ``_total``), type, help and samples.

    Attributes:
        name: The metric's name; a counter's samples are exposed as ``name + "_total"``.
        kind: ``"counter"``, ``"gauge"`` or ``"histogram"``.
        help: What it counts.
        samples: Its samples.
    """

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    help: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, value: float | Histogram | Buckets, **labels: str) -> None:
        """Add a sample with ``labels``."""
        if isinstance(value, Buckets):
            value = Histogram(tuple(value.cumulative()), value.sum, value.count)
        self.samples.append((tuple(sorted(labels.items())), value))


_Kind = Literal["counter", "gauge"]


def _keyed(node: str, name: str, help_: str, table: Mapping[Any, int], *names: str, kind: _Kind = "counter") -> Family:
    """The family ``name``, one sample per key of ``table``, labelled ``names`` (and ``node``)."""
    family = Family(name, kind, help_)
    for key, value in sorted(table.items(), key=lambda item: str(item[0])):
        parts = key if isinstance(key, tuple) else (key,)
        family.add(value, node=node, **{name: str(part) for name, part in zip(names, parts, strict=True)})
    return family


def _connections(node: str, c: Counters) -> list[Family]:
    return [
        _keyed(
            node,
            "qakeapi_connections",
            "WebSocket connections open now, by route template.",
            c.open_connections(),
            "route",
            kind="gauge",
        ),
        _keyed(
            node, "qakeapi_connections_opened", "WebSocket connections that reached their endpoint.", c.opened, "route"
        ),
        _keyed(
            node,
            "qakeapi_connections_closed",
            "WebSocket connections that ended, by close code.",
            c.closed,
            "route",
            "code",
        ),
    ]


def _traffic(node: str, c: Counters, s: SendStats) -> list[Family]:
    def one(name: str, help_: str, value: float, kind: Literal["counter", "gauge"] = "counter") -> Family:
        family = Family(name, kind, help_)
        family.add(value, node=node)
        return family

    recipients = Family("qakeapi_broadcast_recipients", "histogram", "Recipients of each broadcast on this node.")
    recipients.add(c.broadcast_recipients, node=node)
    delivery = Family(
        "qakeapi_delivery_seconds",
        "histogram",
        "Per broadcast: seconds until every recipient's frame was handed to the server or queued.",
    )
    delivery.add(c.delivery_seconds, node=node)
    return [
        one("qakeapi_messages_received", "WebSocket messages received.", c.received),
        one("qakeapi_messages_sent", "Frames handed to connections to send (one per recipient).", c.sent),
        one("qakeapi_received_bytes", "Payload bytes of the messages received.", c.received_bytes),
        one("qakeapi_sent_bytes", "Payload bytes of the frames sent.", c.sent_bytes),
        recipients,
        delivery,
        one("qakeapi_frames_queued", "Frames that waited behind a busy connection's write.", s.queued),
        one("qakeapi_frames_dropped", "Frames dropped: by the send policy, by a close or a failed send.", s.dropped),
        one("qakeapi_frames_unsendable", "Text frames the server could not encode (lone surrogates).", s.unsendable),
        one("qakeapi_slow_consumers_closed", "Connections closed for reading too slowly.", s.disconnected),
        one("qakeapi_slow_consumers_aborted", "Slow consumers whose transport was aborted.", s.aborted),
        one("qakeapi_send_failures", "Connections whose sends failed (the peer went away).", s.failed),
        one(
            "qakeapi_close_timeouts", "Closes that gave up waiting for the server to take the frame.", s.close_timeouts
        ),
    ]


def _refusals(node: str, c: Counters) -> list[Family]:
    limits: dict[str, int] = dict(c.limit_refusals)
    for log in list(observed.rejection_logs):
        for kind, count in log.counts.items():
            limits[kind] = limits.get(kind, 0) + count
    revocations = Family("qakeapi_revocations", "counter", "Connections closed because their user was revoked.")
    revocations.add(c.revocations, node=node)
    return [
        _keyed(
            node, "qakeapi_limit_refusals", "Refusals by a limit: rate, size, per-IP cap, penalty ...", limits, "kind"
        ),
        _keyed(node, "qakeapi_auth_failures", "Authentication failures, by reason.", c.auth_failures, "reason"),
        _keyed(
            node,
            "qakeapi_origin_refusals",
            "Handshakes refused by the origin policy, by reason.",
            c.origin_refusals,
            "reason",
        ),
        revocations,
    ]


def _hooks(node: str, c: Counters) -> list[Family]:
    durations = Family("qakeapi_hook_duration_seconds", "histogram", "Seconds a WebSocket hook ran, by hook.")
    for (kind, hook), buckets in sorted(c.hook_seconds.items()):
        durations.add(buckets, node=node, kind=kind, hook=hook)
    return [
        durations,
        _keyed(node, "qakeapi_hook_errors", "WebSocket hooks that raised, by hook.", c.hook_errors, "hook"),
    ]


def _cluster(now: float) -> list[Family]:
    nodes = Family(
        "qakeapi_cluster_nodes", "gauge", "Cluster instances alive, as this node sees them (itself included)."
    )
    up = Family("qakeapi_cluster_backend_up", "gauge", "1 while publishing to the cluster backend works, else 0.")
    depth = Family("qakeapi_cluster_publish_buffer", "gauge", "Envelopes waiting in the publish buffer.")
    published = Family("qakeapi_cluster_envelopes_published", "counter", "Envelopes published to the other nodes.")
    received = Family("qakeapi_cluster_envelopes_received", "counter", "Envelopes received from the other nodes.")
    dropped = Family("qakeapi_cluster_publish_dropped", "counter", "Client messages the publish buffer dropped.")
    reconnects = Family("qakeapi_cluster_redis_reconnects", "counter", "Times the Redis reader lost its connection.")
    outage = Family("qakeapi_cluster_outage_seconds", "counter", "Seconds the cluster backend was unreachable.")
    rejected = Family("qakeapi_cluster_rejected", "counter", "Envelopes dropped as unauthenticated, by cause.")
    lag = Family("qakeapi_cluster_lag_seconds", "histogram", "Seconds from an envelope's publication to its receipt.")
    recoveries = Family("qakeapi_history_recoveries", "counter", "Rejoins with a position, by result.")
    for manager in sorted(observed.clusters, key=lambda m: (m.node_id, m.instance_id)):
        node = manager.node_id
        buffer = manager.outbox
        down_since = buffer.down_since
        counts = manager.counts
        nodes.add(len(manager.nodes) + 1, node=node)
        up.add(1 if down_since is None else 0, node=node)
        depth.add(len(buffer), node=node)
        published.add(buffer.published, node=node)
        dropped.add(buffer.dropped, node=node)
        received.add(counts.received, node=node)
        lag.add(counts.lag, node=node)
        for cause, count in sorted(manager.rejected.items()):
            rejected.add(count, node=node, cause=cause)
        reconnects.add(getattr(manager.backend, "reconnects", 0), node=node)
        outage.add(manager.outage_seconds(now), node=node)
        for result, count in sorted(counts.history_recoveries.items()):
            recoveries.add(count, node=node, result=result)
    return [nodes, up, depth, published, received, dropped, reconnects, outage, rejected, lag, recoveries]


def take(node: str, *, now: float | None = None, source: Counters = counters) -> list[Family]:
    """Read every metric of this process.

    Args:
        node: The ``node`` label of this process's own metrics (a cluster node's metrics carry
            its ``node_id``).
        now: ``time.monotonic()`` (for the current outage); read when ``None``.
        source: The counters to read.

    Returns:
        The families, in a fixed order.
    """
    now = time.monotonic() if now is None else now
    return [
        *_connections(node, source),
        *_traffic(node, source, stats),
        *_refusals(node, source),
        *_hooks(node, source),
        *_cluster(now),
    ]


_GAUGE_MERGE = {"qakeapi_cluster_nodes": max, "qakeapi_cluster_backend_up": min}
"""Gauges that do not add up across workers (the others -- connections, buffers -- do)."""


def merge(readings: Iterable[list[Family]]) -> list[Family]:
    """Add up the readings of several worker processes: the totals of the server.

    Counters and histograms are added sample by sample (same name and labels); gauges too,
    but for the few whose sum means nothing (nodes alive: the largest; backend up: the
    smallest).

    Args:
        readings: One list of families per process.

    Returns:
        The merged families, in the order first seen.
    """
    merged: dict[str, Family] = {}
    values: dict[str, dict[Labels, float | Histogram]] = {}
    for reading in readings:
        for family in reading:
            target = merged.setdefault(family.name, Family(family.name, family.kind, family.help))
            table = values.setdefault(family.name, {})
            combine = _GAUGE_MERGE.get(family.name)
            for labels, value in family.samples:
                old = table.get(labels)
                if old is None:
                    table[labels] = value
                elif isinstance(old, Histogram) and isinstance(value, Histogram):
                    if len(old.buckets) != len(value.buckets):
                        continue  # another version's bounds: not comparable
                    table[labels] = Histogram(
                        tuple((b, n + m) for (b, n), (_, m) in zip(old.buckets, value.buckets, strict=True)),
                        old.sum + value.sum,
                        old.count + value.count,
                    )
                elif not isinstance(old, Histogram) and not isinstance(value, Histogram):
                    table[labels] = combine(old, value) if combine is not None else old + value
            target.samples = list(table.items())
    return list(merged.values())


def to_data(families: list[Family]) -> list[dict[str, Any]]:
    """``families`` as JSON-ready data (infinite bounds as ``"+Inf"``)."""

    def value(v: float | Histogram) -> Any:
        if isinstance(v, Histogram):
            return {
                "buckets": [["+Inf" if math.isinf(b) else b, n] for b, n in v.buckets],
                "sum": v.sum,
                "count": v.count,
            }
        return v

    return [
        {
            "name": f.name,
            "kind": f.kind,
            "help": f.help,
            "samples": [[list(map(list, lb)), value(v)] for lb, v in f.samples],
        }
        for f in families
    ]


def from_data(data: list[dict[str, Any]]) -> list[Family]:
    """The families :func:`to_data` wrote.

    Raises:
        ValueError: ``data`` is not what :func:`to_data` writes.
    """
    try:
        families = []
        for item in data:
            family = Family(str(item["name"]), item["kind"], str(item["help"]))
            if family.kind not in ("counter", "gauge", "histogram"):
                raise ValueError(f"unknown metric type {family.kind!r}")
            for labels, raw in item["samples"]:
                key: Labels = tuple((str(k), str(v)) for k, v in labels)
                if isinstance(raw, dict):
                    buckets = tuple((float(b), int(n)) for b, n in raw["buckets"])
                    family.samples.append((key, Histogram(buckets, float(raw["sum"]), int(raw["count"]))))
                else:
                    family.samples.append((key, float(raw)))
            families.append(family)
        return families
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a metrics reading: {exc!r}") from exc
