"""Metrics as an operator sees them: a real Prometheus scrapes a two-node cluster under load.

Two ``examples_app.cluster_app`` nodes under uvicorn, joined by a private ``redis-server``,
expose ``/metrics``; a private ``prometheus`` (Debian's package, installed by
``scripts/services.sh``) scrapes both every second. The test drives traffic and asks
Prometheus, through its HTTP API, what an alert or a dashboard would ask: connections per node,
message counts and rates, envelopes and lag between the nodes, a slow consumer closed, a Redis
outage and the recovery from it. Every wait is a poll with a bound; every expected figure is
derived from the traffic the test made.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.clients import StalledReader
from tests.e2e.conftest import Serve, recv_json
from tests.e2e.prometheus_server import PrometheusServer
from tests.e2e.servers import Server
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

CLIENTS = {"node-1": 3, "node-2": 2}
MESSAGES_EACH = 10
FLOOD = 400
PAYLOAD = "x" * 64_000  # large frames fill the stalled reader's buffers quickly (see test_slow_consumer)


@pytest.fixture
def nodes(serve: Serve, redis_server: RedisServer) -> dict[str, Server]:
    return {
        node: serve("cluster_app", env={"QAKEAPI_NODE_ID": node, "QAKEAPI_REDIS_URL": redis_server.url})
        for node in CLIENTS
    }


@pytest.fixture
def prometheus(tmp_path: Path, nodes: dict[str, Server]) -> Iterator[PrometheusServer]:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    with PrometheusServer(directory, {node: f"127.0.0.1:{server.port}" for node, server in nodes.items()}) as server:
        server.targets_up(list(nodes))
        yield server


async def until(
    prometheus: PrometheusServer, promql: str, condition: Callable[[dict[str, float]], bool], what: str
) -> dict[str, float]:
    """:meth:`PrometheusServer.wait_for` in a thread: the clients keep reading meanwhile."""
    return await asyncio.to_thread(prometheus.wait_for, promql, condition, what)


async def read_messages(ws: ClientConnection, count: int) -> None:
    """Read ``count`` broadcast messages (each bounded by a timeout)."""
    for _ in range(count):
        assert (await recv_json(ws, timeout=30))["type"] == "message"


async def test_prometheus_sees_connections_traffic_a_slow_consumer_and_a_redis_outage(
    nodes: dict[str, Server], prometheus: PrometheusServer, redis_server: RedisServer
) -> None:
    async with AsyncExitStack() as stack:
        clients: dict[str, list[ClientConnection]] = {}
        for node, count in CLIENTS.items():
            clients[node] = []
            for _ in range(count):
                ws = await stack.enter_async_context(connect(f"{nodes[node].ws_url}/ws", max_size=None, max_queue=None))
                assert await recv_json(ws) == {"type": "welcome", "node": node}
                clients[node].append(ws)

        # Connections per node, by route template.
        await until(
            prometheus,
            'qakeapi_connections{route="/ws"}',
            lambda v: v == {node: float(count) for node, count in CLIENTS.items()},
            "connections per node",
        )

        # Load: every client sends MESSAGES_EACH; every message reaches every client of both nodes.
        everyone = [ws for sessions in clients.values() for ws in sessions]
        total = len(everyone) * MESSAGES_EACH
        readers = [asyncio.ensure_future(read_messages(ws, total)) for ws in everyone]
        for n in range(MESSAGES_EACH):
            for ws in everyone:
                await ws.send(json.dumps({"n": n}))
        await asyncio.wait_for(asyncio.gather(*readers), 60)

        received = {node: float(count * MESSAGES_EACH) for node, count in CLIENTS.items()}
        await until(prometheus, "qakeapi_messages_received_total", lambda v: v == received, "messages received")
        # Each node wrote every message to each of its clients, after one welcome each.
        sent = {node: float(count * (total + 1)) for node, count in CLIENTS.items()}
        await until(prometheus, "qakeapi_messages_sent_total", lambda v: v == sent, "frames sent")
        await until(
            prometheus,
            "rate(qakeapi_messages_received_total[1m])",
            lambda v: set(v) == set(CLIENTS) and all(rate > 0 for rate in v.values()),
            "message rates",
        )
        # Between the nodes: each received the other's messages as envelopes, with their lag.
        await until(
            prometheus,
            "qakeapi_cluster_lag_seconds_count",
            lambda v: all(v.get(node, 0) >= (len(everyone) - count) * MESSAGES_EACH for node, count in CLIENTS.items()),
            "cross-node lag observed per envelope",
        )
        await until(prometheus, "qakeapi_cluster_nodes", lambda v: v == {"node-1": 2.0, "node-2": 2.0}, "nodes alive")
        await until(
            prometheus,
            "histogram_quantile(0.99, rate(qakeapi_cluster_lag_seconds_bucket[1m]))",
            lambda v: set(v) == set(CLIENTS) and all(0 < lag < 5 for lag in v.values()),
            "p99 cross-node lag",
        )

        # A slow consumer on node-1, alone with a sender there (the others left): counted once.
        for ws in everyone[1:]:
            await ws.close()
        await until(
            prometheus, 'sum by (node) (qakeapi_connections{route="/ws"})', lambda v: sum(v.values()) == 1, "left"
        )
        sender = clients["node-1"][0]
        stalled = StalledReader(nodes["node-1"])
        await stalled.open()
        reader = asyncio.ensure_future(read_messages(sender, FLOOD))
        for n in range(FLOOD):
            await sender.send(json.dumps(f"{n:04d}{PAYLOAD}"))
        await asyncio.wait_for(reader, 120)
        await until(
            prometheus, "qakeapi_slow_consumers_closed_total", lambda v: v.get("node-1") == 1.0, "slow consumer"
        )
        await until(prometheus, "qakeapi_frames_dropped_total", lambda v: v.get("node-1", 0) > 0, "frames dropped")
        stalled.close_socket()

        # A Redis outage: both nodes report the backend down and the outage growing, then the recovery.
        redis_server.stop()
        await until(
            prometheus, "qakeapi_cluster_backend_up", lambda v: v == {"node-1": 0.0, "node-2": 0.0}, "backend down"
        )
        await until(
            prometheus,
            "qakeapi_cluster_outage_seconds_total",
            lambda v: set(v) == set(CLIENTS) and all(seconds >= 1 for seconds in v.values()),
            "outage seconds",
        )
        redis_server.start()
        await until(
            prometheus, "qakeapi_cluster_backend_up", lambda v: v == {"node-1": 1.0, "node-2": 1.0}, "backend back"
        )
        await until(
            prometheus,
            "qakeapi_cluster_redis_reconnects_total",
            lambda v: set(v) == set(CLIENTS) and all(count >= 1 for count in v.values()),
            "Redis reconnects",
        )
