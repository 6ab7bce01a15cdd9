"""Tests for qakeapi.core.clustering: envelopes, and broadcasts across nodes through real backends.

Each node is an :class:`Application` with its own :class:`WebSocketHandler` and
:class:`ClusteredManager`; clients connect through :class:`TestClient`. The cluster tests use
the shared Redis at 127.0.0.1:6379 with a unique channel per test; the outage test starts a
private ``redis-server``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from qakeapi import Application, BroadcastError, WebSocket, WebSocketDisconnect, WebSocketHandler
from qakeapi.core.broadcast.memory import MemoryBackend
from qakeapi.core.broadcast.redis import RedisBackend
from qakeapi.core.clustering import ClusteredManager, create_clustered_manager, decode_envelope, encode_envelope
from qakeapi.testing import TestClient, WebSocketTestSession
from tests.redis_server import RedisServer, wait_until

SHARED_REDIS = "redis://127.0.0.1:6379"
QUIET = 0.2


def unique(prefix: str = "cluster") -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


# -- envelopes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    ["hello", "", "héllo ✓ 🚀", "line one\nline two", '{"a":[1,2]}'],
    ids=["plain", "empty", "unicode", "newlines", "json"],
)
def test_text_envelope_round_trip(frame: str) -> None:
    payload = encode_envelope("node-a", frame)
    assert payload == b"tnode-a\n" + frame.encode()
    assert decode_envelope(payload) == ("node-a", frame)


@pytest.mark.parametrize(
    "frame", [b"\x00\x01\xff", b"", b"a\nb\n", bytes(range(256))], ids=["binary", "empty", "newlines", "all-bytes"]
)
def test_binary_envelope_round_trip(frame: bytes) -> None:
    payload = encode_envelope("node-b", frame)
    assert payload == b"bnode-b\n" + frame
    node, decoded = decode_envelope(payload)
    assert node == "node-b"
    assert decoded == frame
    assert isinstance(decoded, bytes)


def test_text_and_binary_envelopes_of_the_same_bytes_differ() -> None:
    assert decode_envelope(encode_envelope("n", "abc")) == ("n", "abc")
    assert decode_envelope(encode_envelope("n", b"abc")) == ("n", b"abc")
    assert encode_envelope("n", "abc") != encode_envelope("n", b"abc")


@pytest.mark.parametrize(
    "payload",
    [b"", b"no newline at all", b"xnode\nbody", b"\nbody", b"tnode\n\xff\xfe", b"t\xff\nbody"],
    ids=["empty", "no-newline", "unknown-kind", "no-head", "bad-utf8-text", "bad-utf8-node"],
)
def test_malformed_envelope_raises_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - UnicodeDecodeError is a ValueError too
        decode_envelope(payload)


def test_not_an_envelope_message() -> None:
    with pytest.raises(ValueError, match="not a QakeAPI broadcast envelope"):
        decode_envelope(b"garbage")


# -- construction -------------------------------------------------------------------------------


def test_create_clustered_manager_touches_no_network() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]

        manager = create_clustered_manager(WebSocketHandler(), f"redis://127.0.0.1:{port}", "node-a")

        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    assert isinstance(manager.backend, RedisBackend)
    assert manager.backend.url == f"redis://127.0.0.1:{port}"
    assert manager.node_id == "node-a"
    assert manager.connections == 0
    assert manager.delivered == 0


def test_create_clustered_manager_to_a_closed_port_does_not_raise() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends
    manager = create_clustered_manager(WebSocketHandler(), f"redis://:pw@127.0.0.1:{port}", "n", channel="c")
    assert manager.channel == "c"
    assert isinstance(manager.backend, RedisBackend)
    assert manager.backend.listening is False


def test_create_clustered_manager_defaults() -> None:
    manager = create_clustered_manager(WebSocketHandler())
    assert manager.node_id == "node-1"
    assert manager.channel == "qakeapi:broadcast"
    assert isinstance(manager.backend, RedisBackend)
    assert manager.backend.url == "redis://localhost:6379"


def test_create_clustered_manager_with_memory_url() -> None:
    manager = create_clustered_manager(WebSocketHandler(), "memory://hub-x", "solo")
    assert isinstance(manager.backend, MemoryBackend)
    assert manager.backend.name == "hub-x"


@pytest.mark.parametrize("node_id", ["", "a\nb", "\n"])
def test_node_id_must_be_non_empty_without_newlines(node_id: str) -> None:
    with pytest.raises(ValueError, match="node_id must be a non-empty string without newlines"):
        ClusteredManager(WebSocketHandler(), MemoryBackend(), node_id)


# -- nodes ---------------------------------------------------------------------------------------


@dataclass
class Node:
    """One server of a cluster: its manager, an in-process client, and a latch for lingering hooks."""

    manager: ClusteredManager
    client: TestClient
    release: asyncio.Event

    async def join(self, stack: AsyncExitStack) -> WebSocketTestSession:
        """Connect a client and wait for its welcome (the connection is then registered)."""
        session = await stack.enter_async_context(self.client.websocket_connect("/ws"))
        assert await session.receive_text() == f"welcome to {self.manager.node_id}"
        return session


def make_node(manager: ClusteredManager) -> Node:
    handler = manager.handler
    release = asyncio.Event()
    app = Application()
    node_id = manager.node_id

    @handler.on_connect
    async def welcome(websocket: WebSocket) -> None:
        await websocket.send_text(f"welcome to {node_id}")

    @handler.on_message
    async def on_message(websocket: WebSocket, message: Any) -> None:
        if message == "ping":
            await websocket.send_text("pong")
        elif message == "shout":
            await manager.broadcast(f"shout from {node_id}")
        elif message == "close and linger":
            # Closed from the server side, but still registered until released.
            await websocket.close()
            await release.wait()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await manager.handle_connection(websocket)

    return Node(manager, TestClient(app), release)


def node(url: str, node_id: str, channel: str) -> Node:
    return make_node(create_clustered_manager(WebSocketHandler(), url, node_id, channel=channel))


async def quiet(*sessions: WebSocketTestSession) -> None:
    """Assert that no session receives anything more (no duplicates, nothing stray)."""

    async def one(session: WebSocketTestSession) -> None:
        try:
            message = await session.receive(timeout=QUIET)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected extra message {message}")

    await asyncio.gather(*(one(session) for session in sessions))


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[tuple[Node, Node]]:
    """Two nodes on the shared Redis, on a channel of their own."""
    channel = unique()
    first, second = node(SHARED_REDIS, "node-a", channel), node(SHARED_REDIS, "node-b", channel)
    try:
        yield first, second
    finally:
        await first.manager.close()
        await second.manager.close()


# -- broadcasting across nodes ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_broadcast_reaches_every_connection_on_every_node_exactly_once(cluster: tuple[Node, Node]) -> None:
    a, b = cluster
    async with AsyncExitStack() as stack:
        a1, a2 = await a.join(stack), await a.join(stack)
        b1, b2 = await b.join(stack), await b.join(stack)
        everyone = (a1, a2, b1, b2)

        await a.manager.broadcast({"n": 1, "text": "héllo"})
        for session in everyone:
            assert await session.receive_text() == '{"n":1,"text":"héllo"}'
        await quiet(*everyone)

        await b.manager.broadcast("from b")
        for session in everyone:
            assert await session.receive_text() == "from b"
        await quiet(*everyone)

        assert (a.manager.connections, b.manager.connections) == (2, 2)
        await wait_until(
            lambda: (a.manager.delivered, b.manager.delivered) == (4, 4), "each node counted its 2 x 2 deliveries"
        )


@pytest.mark.asyncio
async def test_binary_broadcast_arrives_as_the_same_bytes(cluster: tuple[Node, Node]) -> None:
    a, b = cluster
    frame = b"\x00\x01\nbinary\xff"
    async with AsyncExitStack() as stack:
        sessions = (await a.join(stack), await b.join(stack), await b.join(stack))

        await b.manager.broadcast(frame)

        for session in sessions:
            assert await session.receive_bytes() == frame
        await quiet(*sessions)


@pytest.mark.asyncio
async def test_broadcast_from_a_handler_hook_reaches_the_other_node(cluster: tuple[Node, Node]) -> None:
    a, b = cluster
    async with AsyncExitStack() as stack:
        sender, receiver = await a.join(stack), await b.join(stack)

        await sender.send_text("shout")

        assert await receiver.receive_text() == "shout from node-a"
        assert await sender.receive_text() == "shout from node-a"
        await quiet(sender, receiver)


@pytest.mark.asyncio
async def test_closed_connections_are_skipped_and_not_counted(cluster: tuple[Node, Node]) -> None:
    a, b = cluster
    async with AsyncExitStack() as stack:
        a_live, a_closed, b_live = await a.join(stack), await a.join(stack), await b.join(stack)
        stack.callback(a.release.set)  # runs before the sessions close, should an assertion fail
        await a_closed.send_text("close and linger")
        with pytest.raises(WebSocketDisconnect):
            await a_closed.receive_text()
        assert a.manager.connections == 2  # the closed connection is still registered

        await b.manager.broadcast("to the living")

        assert await a_live.receive_text() == "to the living"
        assert await b_live.receive_text() == "to the living"
        await quiet(a_live, b_live)
        await wait_until(
            lambda: (a.manager.delivered, b.manager.delivered) == (1, 1), "each node counted one live delivery"
        )
        a.release.set()
        await wait_until(lambda: a.manager.connections == 1, "the closed connection was unregistered")


@pytest.mark.asyncio
async def test_malformed_payload_on_the_channel_is_logged_and_ignored(
    cluster: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="qakeapi.clustering")
    a, _b = cluster
    raw: Redis = Redis.from_url(SHARED_REDIS)
    garbage = [b"garbage", b"", b"xnode\nbody", b"tnode\n\xff\xfe"]
    try:
        async with AsyncExitStack() as stack:
            session = await a.join(stack)
            for payload in garbage:
                assert await raw.publish(a.manager.channel, payload) >= 1

            await a.manager.broadcast("still working")

            assert await session.receive_text() == "still working"  # nothing of the garbage came first
            await a.manager.broadcast("and again")
            assert await session.receive_text() == "and again"
            await quiet(session)
    finally:
        await raw.aclose()
    messages = [r.getMessage() for r in caplog.records if r.name == "qakeapi.clustering"]
    assert len(messages) == len(garbage), messages
    prefix = f"node node-a: ignoring a malformed message on {a.manager.channel!r}: "
    assert all(message.startswith(prefix) for message in messages), messages


@pytest.mark.asyncio
async def test_memory_manager_broadcasts_within_one_process() -> None:
    manager = create_clustered_manager(WebSocketHandler(), f"memory://{unique('hub')}", "solo")
    solo = make_node(manager)
    try:
        async with AsyncExitStack() as stack:
            first, second = await solo.join(stack), await solo.join(stack)

            await manager.broadcast(["json", 1])
            await manager.broadcast(b"\x01\x02")

            for session in (first, second):
                assert await session.receive_text() == '["json",1]'
                assert await session.receive_bytes() == b"\x01\x02"
            await quiet(first, second)
            await wait_until(lambda: manager.delivered == 4, "two broadcasts counted for two connections")
    finally:
        await manager.close()


@pytest.mark.asyncio
async def test_memory_managers_on_one_hub_form_a_cluster() -> None:
    hub, channel = f"memory://{unique('hub')}", unique()
    a, b = node(hub, "node-a", channel), node(hub, "node-b", channel)
    try:
        async with AsyncExitStack() as stack:
            sessions = (await a.join(stack), await b.join(stack))

            await a.manager.broadcast("hello")

            for session in sessions:
                assert await session.receive_text() == "hello"
            await quiet(*sessions)
    finally:
        await a.manager.close()
        await b.manager.close()


@pytest.mark.asyncio
async def test_broadcast_without_connections_starts_the_manager_and_delivers_nothing() -> None:
    manager = create_clustered_manager(WebSocketHandler(), f"memory://{unique('hub')}", "empty")
    try:
        await manager.broadcast("into the void")
        await manager.broadcast("again")
        assert manager.delivered == 0
        assert manager.connections == 0
    finally:
        await manager.close()


@pytest.mark.asyncio
async def test_close_is_idempotent_and_stops_dispatching() -> None:
    hub, channel = unique("hub"), unique()
    manager = create_clustered_manager(WebSocketHandler(), f"memory://{hub}", "closer", channel=channel)
    solo = make_node(manager)
    outsider = MemoryBackend(hub)
    await outsider.connect()
    async with AsyncExitStack() as stack:
        session = await solo.join(stack)

        await manager.close()
        await manager.close()
        await asyncio.gather(manager.close(), manager.close())

        dispatchers = [t for t in asyncio.all_tasks() if t.get_name() == "qakeapi cluster dispatcher closer"]
        assert dispatchers == []
        await outsider.publish(channel, encode_envelope("other", "after close"))
        await quiet(session)
        await session.send_text("ping")
        assert await session.receive_text() == "pong"
    await outsider.disconnect()


@pytest.mark.asyncio
async def test_close_before_start_does_nothing() -> None:
    manager = create_clustered_manager(WebSocketHandler(), f"memory://{unique('hub')}", "idle")
    await manager.close()
    await manager.close()
    assert manager.delivered == 0


# -- Redis outage, on a private server ----------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path, password="s3cret") as server:
        yield server


@pytest.mark.asyncio
async def test_broadcast_while_redis_is_down_raises_and_the_handler_keeps_working(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="qakeapi")
    backend = RedisBackend(private_redis.url, min_backoff=0.02, max_backoff=0.2)
    manager = ClusteredManager(WebSocketHandler(), backend, "node-a", channel=unique())
    a = make_node(manager)
    try:
        async with AsyncExitStack() as stack:
            session = await a.join(stack)
            await manager.broadcast("before")
            assert await session.receive_text() == "before"

            private_redis.stop()

            with pytest.raises(BroadcastError) as info:
                await manager.broadcast("while down")
            assert str(info.value).startswith(
                f"cannot publish to {manager.channel!r} on redis://127.0.0.1:{private_redis.port}: "
            )
            assert "s3cret" not in str(info.value)
            await session.send_text("ping")
            assert await session.receive_text() == "pong"

            # A hook whose broadcast fails is logged (and surfaces in the test); the connection goes on.
            await session.send_text("shout")
            await session.send_text("ping")
            with pytest.raises(BroadcastError):
                await session.receive_text()
            assert await session.receive_text() == "pong"
            failures = [r for r in caplog.records if r.name == "qakeapi.websockets" and r.levelno == logging.ERROR]
            assert len(failures) == 1
            assert failures[0].exc_info is not None
            assert isinstance(failures[0].exc_info[1], BroadcastError)

            # Redis comes back: the dispatcher survived the outage and delivers again.
            await wait_until(lambda: backend.reconnects >= 2, "the listener failed to reconnect at least once")
            await asyncio.to_thread(private_redis.start)
            await wait_until(lambda: backend.listening, "the listener resubscribed after the restart")
            await manager.broadcast("after")
            assert await session.receive_text() == "after"
            await quiet(session)
        leaked = [r.getMessage() for r in caplog.records if "s3cret" in caplog.handler.format(r)]
        assert leaked == []
    finally:
        await manager.close()


@pytest.mark.asyncio
async def test_a_start_during_close_waits_for_it_and_leaves_a_working_manager() -> None:
    manager = create_clustered_manager(WebSocketHandler(), f"memory://{unique('hub')}", "restarter")
    solo = make_node(manager)
    await manager.start()
    closing = asyncio.ensure_future(manager.close())
    await asyncio.sleep(0)  # the close is under way
    await manager.start()  # must not be undone by the close still running
    assert closing.done()
    try:
        async with AsyncExitStack() as stack:
            session = await solo.join(stack)
            await manager.broadcast("after the restart")
            assert await session.receive_text() == "after the restart"
    finally:
        await manager.close()


@pytest.mark.asyncio
async def test_a_failed_start_is_not_cached() -> None:
    manager = create_clustered_manager(WebSocketHandler(), f"memory://{unique('hub')}", "flaky")
    original = manager.backend.connect
    attempts: list[int] = []

    async def connect_once_failing() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionRefusedError("backend not there yet")
        await original()

    manager.backend.connect = connect_once_failing  # type: ignore[method-assign]
    with pytest.raises(ConnectionRefusedError):
        await manager.start()
    await manager.start()
    assert len(attempts) == 2
    await manager.close()
