"""Tests for qakeapi.core.snapshot: a reading of every metric, merged across workers, as data."""

from __future__ import annotations

import json

import pytest

from qakeapi.core.counters import Counters
from qakeapi.core.snapshot import Family, Histogram, from_data, merge, take, to_data


def _value(families: list[Family], name: str, **labels: str) -> float | Histogram:
    family = next(f for f in families if f.name == name)
    wanted = tuple(sorted(labels.items()))
    return next(value for key, value in family.samples if key == wanted)


def test_a_reading_exports_the_counters_with_node_and_bounded_labels() -> None:
    c = Counters(received=7, received_bytes=70, sent=9)
    c.connected("/chat/{room}")
    c.connected("/chat/{room}")
    c.disconnected("/chat/{room}", 1001)
    c.count(c.auth_failures, "expired", 2)
    c.broadcast_recipients.observe(3)
    reading = take("node-a", source=c)
    assert _value(reading, "qakeapi_messages_received", node="node-a") == 7
    assert _value(reading, "qakeapi_received_bytes", node="node-a") == 70
    assert _value(reading, "qakeapi_connections", node="node-a", route="/chat/{room}") == 1
    assert _value(reading, "qakeapi_connections_closed", node="node-a", route="/chat/{room}", code="1001") == 1
    assert _value(reading, "qakeapi_auth_failures", node="node-a", reason="expired") == 2
    histogram = _value(reading, "qakeapi_broadcast_recipients", node="node-a")
    assert isinstance(histogram, Histogram)
    assert histogram.count == 1
    assert histogram.sum == 3
    kinds = {f.name: f.kind for f in reading}
    assert kinds["qakeapi_connections"] == "gauge"
    assert kinds["qakeapi_messages_sent"] == "counter"
    assert kinds["qakeapi_delivery_seconds"] == "histogram"


def test_merge_adds_counters_histograms_and_gauges_but_not_nodes_alive() -> None:
    def worker(received: int, open_: int, nodes: int, up: int) -> list[Family]:
        counter = Family("qakeapi_messages_received", "counter", "h")
        counter.add(received, node="n")
        gauge = Family("qakeapi_connections", "gauge", "h")
        gauge.add(open_, node="n", route="/ws")
        alive = Family("qakeapi_cluster_nodes", "gauge", "h")
        alive.add(nodes, node="n")
        backend = Family("qakeapi_cluster_backend_up", "gauge", "h")
        backend.add(up, node="n")
        histogram = Family("qakeapi_delivery_seconds", "histogram", "h")
        histogram.add(Histogram(((0.1, received), (float("inf"), received + 1)), 0.5, received + 1), node="n")
        return [counter, gauge, alive, backend, histogram]

    merged = merge([worker(3, 2, 3, 1), worker(4, 5, 2, 0)])
    assert _value(merged, "qakeapi_messages_received", node="n") == 7
    assert _value(merged, "qakeapi_connections", node="n", route="/ws") == 7
    assert _value(merged, "qakeapi_cluster_nodes", node="n") == 3
    assert _value(merged, "qakeapi_cluster_backend_up", node="n") == 0
    histogram = _value(merged, "qakeapi_delivery_seconds", node="n")
    assert histogram == Histogram(((0.1, 7), (float("inf"), 9)), 1.0, 9)


def test_a_reading_survives_a_round_trip_through_json() -> None:
    c = Counters(sent=5)
    c.delivery_seconds.observe(0.002)
    reading = take("n", source=c)
    again = from_data(json.loads(json.dumps(to_data(reading))))
    assert [(f.name, f.kind, f.samples) for f in again] == [(f.name, f.kind, f.samples) for f in reading]


@pytest.mark.parametrize(
    "data",
    [
        [{"name": "x"}],
        [{"name": "x", "kind": "summary", "help": "", "samples": []}],
        [{"name": "x", "kind": "counter", "help": "", "samples": [[[["a", "b"]], "many"]]}],
    ],
)
def test_from_data_refuses_what_to_data_never_writes(data: list[dict[str, object]]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # the message varies with what is wrong
        from_data(data)
