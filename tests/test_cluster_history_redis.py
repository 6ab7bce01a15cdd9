"""Room history on real Redis: the stream backend's scripts against private ``redis-server`` processes,
and two managers recovering a client across a restart of Redis and on a 3-master Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from qakeapi import Application, BroadcastError, WebSocket, WebSocketHandler
from qakeapi.core.broadcast.history import HistoryAppend
from qakeapi.core.broadcast.redis_stream import RedisStreamBackend
from qakeapi.core.cluster.envelope import Kind, decode_envelope
from qakeapi.core.cluster.history import HistoryPolicy, Position, history_keys
from qakeapi.core.clustering import ClusteredManager, create_clustered_manager
from qakeapi.testing import TestClient
from tests.redis_server import RedisClusterServers, RedisServer, sync_client, wait_until
from tests.test_cluster_history import publications

CHANNEL = "qakeapi:broadcast"
HEADER = '{"q":1,"k":"hist","i":"feedfeedfeed","n":"node-x","s":0,"f":"t","room":"lobby"'


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path, password="history-pw") as redis_server:
        yield redis_server


@pytest_asyncio.fixture
async def backend(server: RedisServer) -> AsyncIterator[RedisStreamBackend]:
    stream = RedisStreamBackend(server.url)
    await stream.connect()
    yield stream
    await stream.disconnect()


def raw(server: RedisServer) -> Any:
    return sync_client(server.port, server.password)


@pytest.mark.asyncio
async def test_appends_are_numbered_kept_trimmed_and_published_on_the_channel(
    backend: RedisStreamBackend, server: RedisServer
) -> None:
    keys = history_keys(CHANNEL, "lobby")
    results = [
        await backend.append_history(HistoryAppend(CHANNEL, keys, HEADER, f'{{"n":{n}}}', epoch="e1", size=3, ttl=60))
        for n in range(1, 6)
    ]
    assert results == [("e1", n) for n in range(1, 6)]
    other_epoch = HistoryAppend(CHANNEL, keys, HEADER, "0", epoch="other", size=3, ttl=60)
    assert (await backend.append_history(other_epoch))[0] == "e1"
    history = await backend.read_history(keys, 3, 100)
    assert (history.epoch, history.top, history.first) == ("e1", 6, 4)  # exactly 3 kept
    assert [(e.offset, e.data) for e in history.entries] == [(4, '{"n":4}'), (5, '{"n":5}'), (6, "0")]
    client = raw(server)
    try:
        entries: Any = client.xrange(CHANNEL)
        assert 0 < client.ttl(keys[0]) <= 60
        assert 0 < client.ttl(keys[1]) <= 60
    finally:
        client.close()
    envelopes = [decode_envelope(fields[b"d"]) for _id, fields in entries]
    assert [(e.kind, e.data["o"], e.data["e"], e.frame) for e in envelopes[:2]] == [
        (Kind.HISTORY, 1, "e1", '{"n":1}'),
        (Kind.HISTORY, 2, "e1", '{"n":2}'),
    ]


@pytest.mark.asyncio
async def test_gap_markers_sit_between_offsets_and_end_recoveries_across_them(backend: RedisStreamBackend) -> None:
    keys = history_keys(CHANNEL, "lobby")
    await backend.mark_history_gap(keys, size=10, ttl=60)  # no history yet: nothing to mark
    assert (await backend.read_history(keys, 0, 10)).epoch is None
    for n in (1, 2):
        await backend.append_history(HistoryAppend(CHANNEL, keys, HEADER, str(n), epoch="e", size=10, ttl=60))
    await backend.mark_history_gap(keys, size=10, ttl=60)  # after 2
    await backend.append_history(
        HistoryAppend(CHANNEL, keys, HEADER, "3", epoch="e", size=10, ttl=60, gap=True)
    )  # another before 3
    since_1 = await backend.read_history(keys, 1, 10)
    assert [(e.offset, e.data) for e in since_1.entries] == [(2, "2"), (2, None), (2, None), (3, "3")]
    assert since_1.recovery_from(Position("e", 1))[0] is False
    assert since_1.recovery_from(Position("e", 2))[0] is False  # the markers are after 2
    since_3 = await backend.read_history(keys, 3, 10)
    assert since_3.recovery_from(Position("e", 3)) == (True, None)


@pytest.mark.asyncio
async def test_a_marker_trimmed_to_the_front_does_not_count_as_its_publication(backend: RedisStreamBackend) -> None:
    keys = history_keys(CHANNEL, "r")
    await backend.append_history(HistoryAppend(CHANNEL, keys, HEADER, "1", epoch="e", size=2, ttl=60))
    await backend.append_history(
        HistoryAppend(CHANNEL, keys, HEADER, "2", epoch="e", size=2, ttl=60, gap=True)
    )  # [1, gap, 2] -> [gap, 2]
    history = await backend.read_history(keys, 1, 10)
    assert history.first == 2  # the marker after 1 is kept, 1 itself is not
    assert history.recovery_from(Position("e", 0))[0] is False


@pytest.mark.asyncio
async def test_history_calls_fail_with_a_broadcast_error_while_redis_is_down(
    backend: RedisStreamBackend, server: RedisServer
) -> None:
    server.stop()
    keys = history_keys(CHANNEL, "lobby")
    with pytest.raises(BroadcastError, match="cannot append to the history") as raised:
        await backend.append_history(HistoryAppend(CHANNEL, keys, HEADER, "1", epoch="e", size=3, ttl=60))
    assert "history-pw" not in str(raised.value)
    with pytest.raises(BroadcastError, match="cannot read the history"):
        await backend.read_history(keys, 0, 3)


# -- managers --------------------------------------------------------------------------------------


def history_node(url: str, node_id: str) -> tuple[ClusteredManager, TestClient]:
    handler = WebSocketHandler()
    manager = create_clustered_manager(handler, redis_url=url, node_id=node_id, history=HistoryPolicy(size=100))
    app = Application()
    app.on_shutdown(manager.close)

    @handler.on_message
    async def on_message(websocket: WebSocket, message: Any) -> None:
        if "join" in message:
            since = Position.parse(message["since"]) if "since" in message else None
            recovery = await manager.join(message["join"], websocket, since=since)
            await websocket.send_json(recovery.as_message("lobby") if recovery else {"type": "joined"})
        else:
            room = manager.rooms.get("lobby")
            assert room is not None
            await room.broadcast(message)

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await manager.handle_connection(websocket)

    return manager, TestClient(app)


async def recover_on(client: TestClient, since: Position, expected: int) -> tuple[list[dict[str, Any]], Any]:
    session = await client.websocket_connect("/ws")
    await session.send_json({"join": "lobby", "since": {"epoch": since.epoch, "offset": since.offset}})
    replay = await publications(session, expected, timeout=10)
    answer = await session.receive_json(timeout=10)
    await session.close()
    return replay, answer


async def exercise(url: str, restart: Any) -> None:
    """Two nodes on ``url``: publications in one order everywhere, a recovery on the other node, then
    ``restart()`` of the Redis holding the history: the old position gets ``recovered: false``."""
    first, first_client = history_node(url, "node-1")
    _second, second_client = history_node(url, "node-2")
    async with first_client, second_client:
        async with first_client.websocket_connect("/ws") as a, second_client.websocket_connect("/ws") as b:
            for session in (a, b):
                await session.send_json({"join": "lobby"})
                assert await session.receive_json(timeout=10) == {"type": "joined"}
            await wait_until(lambda: len(first.presence.connection_ids("lobby")) == 2, "node-1 sees both members")
            for n in range(6):
                await (a if n % 2 else b).send_json({"n": n})
            on_a, on_b = await publications(a, 6, timeout=10), await publications(b, 6, timeout=10)
            assert on_a == on_b
            assert [p["offset"] for p in on_a] == [1, 2, 3, 4, 5, 6]
            epoch = on_a[0]["epoch"]
        replay, answer = await recover_on(second_client, Position(epoch, 2), 4)
        assert [p["offset"] for p in replay] == [3, 4, 5, 6]
        assert (answer["recovered"], answer["replayed"], answer["offset"]) == (True, 4, 6)
        await restart()  # the history is gone with Redis's memory
        replay, answer = await recover_on(first_client, Position(epoch, 6), 0)
        assert answer["recovered"] is False


@pytest.mark.asyncio
@pytest.mark.parametrize("secret", [None, "history-cluster-secret-0123456789"])
async def test_two_nodes_recover_a_client_and_a_redis_restart_ends_the_epoch(
    server: RedisServer, secret: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a cluster secret (from QAKEAPI_CLUSTER_SECRET) the script closes a signed header: it still verifies."""
    if secret is None:
        monkeypatch.delenv("QAKEAPI_CLUSTER_SECRET", raising=False)
    else:
        monkeypatch.setenv("QAKEAPI_CLUSTER_SECRET", secret)

    async def restart() -> None:
        server.stop()
        server.start()

    await exercise(server.url, restart)


@pytest.mark.asyncio
async def test_history_on_a_3_master_redis_cluster(tmp_path: Path) -> None:
    servers = RedisClusterServers(tmp_path, password="cluster-pw")
    try:
        await servers.start()
        owner = servers.owner_of(CHANNEL)
        assert servers.owner_of(history_keys(CHANNEL, "lobby")[0]) is owner  # one slot: the scripts may run

        async def restart() -> None:
            owner.stop()
            owner.start()

        await exercise(servers.url, restart)
    finally:
        servers.stop()


@pytest.mark.asyncio
async def test_a_retry_whose_first_try_ran_is_not_numbered_twice(
    backend: RedisStreamBackend, server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The script ran, its reply was lost (a broken connection), the one retry runs it again."""
    import qakeapi.core.broadcast.redis_stream as redis_stream

    async def reply_lost_then_retried(operation: Any, what: str, safe_url: str) -> Any:
        await operation()  # Redis ran it; the reply never came back
        return await operation()  # the retry

    monkeypatch.setattr(redis_stream, "with_one_retry", reply_lost_then_retried)
    keys = history_keys(CHANNEL, "lobby")
    first = await backend.append_history(
        HistoryAppend(CHANNEL, keys, HEADER, "1", epoch="e", size=10, ttl=60, publication=("i", 1))
    )
    second = await backend.append_history(
        HistoryAppend(CHANNEL, keys, HEADER, "2", epoch="e", size=10, ttl=60, publication=("i", 2))
    )
    other = await backend.append_history(
        HistoryAppend(CHANNEL, keys, HEADER, "3", epoch="e", size=10, ttl=60, publication=("j", 1))
    )
    assert (first, second, other) == (("e", 1), ("e", 2), ("e", 3))
    history = await backend.read_history(keys, 0, 100)
    assert [(e.offset, e.data) for e in history.entries] == [(1, "1"), (2, "2"), (3, "3")]
    client = raw(server)
    try:
        assert client.xlen(CHANNEL) == 3  # published once each on the cluster channel too
    finally:
        client.close()
