"""The cluster over real Redis in-process: the stream backend and managers against a private ``redis-server``.

Each test starts its own ``redis-server`` on a free port, so it can stop it, restart it and
kill its connections without disturbing anybody else.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from qakeapi import Application, BroadcastError, WebSocket, WebSocketHandler
from qakeapi.core.broadcast.redis_stream import RedisStreamBackend, SentinelTarget, parse_sentinel_url
from qakeapi.core.clustering import ClusteredManager, create_clustered_manager
from qakeapi.testing import TestClient, WebSocketTestSession
from tests.redis_server import RedisClusterServers, RedisServer, SentinelServer, sync_client, wait_until

HANG = 10.0
"""A bound that only catches a hang (how fast things happen is measured in benchmarks/)."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path, password="pw-not-in-logs") as redis_server:
        yield redis_server


async def collect(backend: RedisStreamBackend, into: list[bytes]) -> None:
    async for event in backend.events():
        into.append(event.payload)


@pytest.mark.asyncio
async def test_a_reader_resumes_after_its_connection_is_killed_and_misses_nothing(server: RedisServer) -> None:
    writer, reader = RedisStreamBackend(server.url), RedisStreamBackend(server.url, min_backoff=0.01)
    received: list[bytes] = []
    await writer.connect()
    await reader.connect()
    await reader.subscribe("c")
    task = asyncio.get_running_loop().create_task(collect(reader, received))
    admin = sync_client(server.port, server.password)
    try:
        await writer.publish("c", b"0")
        await wait_until(lambda: received == [b"0"], "the first message")
        assert reader.connected_since is not None
        killed = admin.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        for n in range(1, 50):  # published while the reader reconnects
            await writer.publish("c", str(n).encode())
        await wait_until(lambda: len(received) == 50, "all 50 messages")
        assert received == [str(n).encode() for n in range(50)]
        assert reader.reconnects == 1
    finally:
        admin.close()
        task.cancel()
        await writer.disconnect()
        await reader.disconnect()


@pytest.mark.asyncio
async def test_publish_while_redis_is_down_raises_broadcast_error_without_the_password(server: RedisServer) -> None:
    backend = RedisStreamBackend(server.url)
    await backend.connect()
    try:
        server.stop()
        with pytest.raises(BroadcastError, match=f"cannot publish to 'c' on redis://127.0.0.1:{server.port}") as raised:
            await backend.publish("c", b"x")
        assert "pw-not-in-logs" not in str(raised.value)
    finally:
        await backend.disconnect()


@pytest.mark.asyncio
async def test_publish_before_connect_raises() -> None:
    with pytest.raises(BroadcastError, match="not connected"):
        await RedisStreamBackend("redis://127.0.0.1:1").publish("c", b"x")


@pytest.mark.asyncio
async def test_stream_keys_are_trimmed_and_expire(server: RedisServer) -> None:
    backend = RedisStreamBackend(server.url, max_len=10, ttl=60)
    await backend.connect()
    admin = sync_client(server.port, server.password)
    try:
        await backend.publish_many("c", [str(n) for n in range(500)])
        assert admin.xlen("c") < 500  # approximate trimming keeps about max_len (whole nodes)
        assert 0 < admin.ttl("c") <= 60
    finally:
        admin.close()
        await backend.disconnect()


@pytest.mark.asyncio
async def test_a_node_starts_at_once_with_redis_down_and_joins_when_it_appears(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "qakeapi")
    server.stop()
    first = ClusteredManager(WebSocketHandler(), RedisStreamBackend(server.url, min_backoff=0.02), "node-1")
    second = ClusteredManager(WebSocketHandler(), RedisStreamBackend(server.url, min_backoff=0.02), "node-2")
    try:
        # start() does not wait for Redis (it is down: waiting would never end)
        await asyncio.wait_for(first.start(), HANG)
        await asyncio.wait_for(second.start(), HANG)
        second_got: list[str] = []

        @second.on_presence
        async def seen(diff: object) -> None:
            second_got.append(repr(diff))

        assert await first.broadcast("early") == 0  # no local connections; buffered for the others
        await asyncio.sleep(0.3)  # Redis is still down: the publish waits in the buffer
        assert len(first.outbox) >= 1
        await asyncio.to_thread(server.start)
        await wait_until(lambda: not first.outbox, "the buffer was flushed", timeout=5)
        await wait_until(lambda: second.nodes.get(first.instance_id) == "node-1", "node-2 heard node-1", timeout=5)
        assert first.outbox.dropped == 0
    finally:
        await first.close()
        await second.close()
    assert "pw-not-in-logs" not in caplog.text
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    # Per node, each state change once (down and up, reader and sender), not one line per attempt.
    # (A loaded machine may add a line that is not a repeat, e.g. "closing with 1 publishes not sent".)
    kinds = Counter(re.sub(r"node-\d|\d+(\.\d+)?", "#", line) for line in lines)
    assert all(count <= 2 for count in kinds.values()), kinds
    assert sum("stream reader on" in line and "lost its connection" in line for line in lines) == 2, lines
    assert sum("cluster publisher lost its connection" in line for line in lines) == 2, lines


# -- Sentinel ------------------------------------------------------------------------------------


def parse(url: str) -> SentinelTarget:
    return parse_sentinel_url(url)


def test_sentinel_urls_are_parsed() -> None:
    target = parse("redis+sentinel://u:p%40ss@10.0.0.1:26379,[::1]:26380/mymaster/2?sentinel_auth=1")
    assert target == SentinelTarget([("10.0.0.1", 26379), ("::1", 26380)], "mymaster", 2, "u", "p@ss", True)
    assert parse("redis+sentinel://h:1/svc") == SentinelTarget([("h", 1)], "svc")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("redis+sentinel:///svc", "at least one host:port"),
        ("redis+sentinel://h/svc", "bad Sentinel address"),
        ("redis+sentinel://h:1", "needs /service"),
        ("redis+sentinel://h:1/svc/x", "needs /service"),
    ],
)
def test_bad_sentinel_urls_are_refused_when_the_manager_is_created(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_clustered_manager(WebSocketHandler(), url, "node-1")


def redis_node(url: str, node_id: str) -> tuple[ClusteredManager, TestClient]:
    handler = WebSocketHandler()
    backend = RedisStreamBackend(url, min_backoff=0.02, max_backoff=0.3)
    # A failover takes down-after-milliseconds plus an election (about 4 s here): the buffer
    # must outlast it, as the clustering topic says.
    manager = ClusteredManager(handler, backend, node_id, buffer_seconds=15)
    app = Application()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await manager.handle_connection(websocket)

    return manager, TestClient(app, timeout=10)


@asynccontextmanager
async def two_nodes(url: str) -> AsyncIterator[tuple[ClusteredManager, WebSocketTestSession, WebSocketTestSession]]:
    """Nodes 1 and 2 on ``url``, a client on each, once node 2 hears node 1: yields node 1, its
    client and node 2's. Both nodes are closed at the end."""
    first, first_client = redis_node(url, "node-1")
    second, second_client = redis_node(url, "node-2")
    try:
        async with (
            first_client.websocket_connect("/ws") as sender_side,
            second_client.websocket_connect("/ws") as receiver,
        ):
            await wait_until(lambda: second.nodes.get(first.instance_id) == "node-1", "node-2 heard node-1")
            yield first, sender_side, receiver
    finally:
        await first.close()
        await second.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("before", ["down", "not created"])
async def test_nodes_started_before_their_redis_cluster_hear_each_other_once_it_is_up(
    tmp_path: Path, before: str, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-py's cluster client raises RedisClusterException (not a RedisError) while the
    cluster is unreachable: the reader and the writer must retry it like any outage."""
    caplog.set_level(logging.WARNING, "qakeapi")
    servers = RedisClusterServers(tmp_path, password="cluster-pw")
    if before == "not created":
        servers.start_shards()
    first, first_client = redis_node(servers.url, "node-1")
    second, second_client = redis_node(servers.url, "node-2")
    try:
        async with (
            first_client.websocket_connect("/ws") as sender_side,
            second_client.websocket_connect("/ws") as receiver,
        ):
            await wait_until(lambda: first.outbox.down_since is not None, "node-1 found no cluster", timeout=HANG)
            await servers.start() if before == "down" else await servers.create()
            await wait_until(lambda: second.nodes.get(first.instance_id) == "node-1", "node-2 heard node-1", timeout=30)
            for n in range(20):
                await first.broadcast({"n": n})
                assert await sender_side.receive_json() == {"n": n}
            assert [await receiver.receive_json(timeout=HANG) for _ in range(20)] == [{"n": n} for n in range(20)]
    finally:
        await first.close()
        await second.close()
        servers.stop()
    assert "Traceback" not in caplog.text
    assert "had failed" not in caplog.text  # no background task died


@pytest.mark.asyncio
async def test_a_sentinel_failover_loses_and_doubles_nothing(tmp_path: Path) -> None:
    password = "sentinel-pw"
    with (
        RedisServer(tmp_path, password=password) as master,
        RedisServer(tmp_path, password=password, args=("--replicaof", "127.0.0.1", str(master.port))) as replica,
    ):
        sentinels = [SentinelServer(tmp_path, master) for _ in range(3)]
        try:
            hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
            url = f"redis+sentinel://:{password}@{hosts}/mymaster"
            async with two_nodes(url) as (first, sender_side, receiver):
                count = 60
                for n in range(count):
                    if n == 20:
                        master.stop(kill=True)  # the master dies mid-stream
                    await first.broadcast({"n": n})
                    assert await sender_side.receive_json() == {"n": n}
                    await asyncio.sleep(0.02)
                await wait_until(
                    lambda: sentinels[0].master_port() == replica.port, "Sentinel promoted the replica", timeout=15
                )
                received = [await receiver.receive_json(timeout=15) for _ in range(count)]
                assert received == [{"n": n} for n in range(count)]
                with pytest.raises(TimeoutError):
                    await receiver.receive(timeout=0.3)  # nothing doubled
                assert first.outbox.dropped == 0
        finally:
            for sentinel in sentinels:
                sentinel.stop()


# -- Redis Cluster -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_3_master_redis_cluster_carries_the_cluster_through_a_shard_restart(tmp_path: Path) -> None:
    servers = RedisClusterServers(tmp_path, password="cluster-pw")
    try:
        await servers.start()
        owner = servers.owner_of("qakeapi:broadcast")
        async with two_nodes(servers.url) as (first, sender_side, receiver):
            await first.broadcast({"n": 0})
            assert await sender_side.receive_json() == {"n": 0}
            assert await receiver.receive_json() == {"n": 0}
            owner.stop()  # the shard holding the stream goes away (and comes back empty)
            for n in range(1, 11):
                await first.broadcast({"n": n})
                assert await sender_side.receive_json() == {"n": n}
            await asyncio.to_thread(owner.start)
            received = [await receiver.receive_json(timeout=15) for _ in range(10)]
            assert received == [{"n": n} for n in range(1, 11)]
            with pytest.raises(TimeoutError):
                await receiver.receive(timeout=0.3)
    finally:
        servers.stop()
