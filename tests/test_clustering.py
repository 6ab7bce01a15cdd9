"""Tests for qakeapi.core.clustering: nodes in one process, joined by a ``memory://`` hub.

Each node is an :class:`Application` with its own :class:`WebSocketHandler` and
:class:`ClusteredManager`; clients connect through :class:`TestClient`. A node's backend can be
cut off (:class:`CuttableBackend`: publishing fails and nothing is received) to play a network
partition or a Redis outage. Redis itself, stopped and restarted, is in
``tests/test_cluster_redis.py`` and the e2e tests.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from qakeapi import Application, BroadcastError, QakeAPIError, WebSocket, WebSocketHandler
from qakeapi.core.broadcast.base import Event
from qakeapi.core.broadcast.memory import MemoryBackend
from qakeapi.core.broadcast.redis_stream import RedisStreamBackend
from qakeapi.core.cluster.envelope import Envelope, Kind, encode_envelope
from qakeapi.core.clustering import ClusteredManager, create_cluster_backend, create_clustered_manager, lost_event
from qakeapi.core.presence import PresenceDiff, PresenceReason
from qakeapi.core.rooms import Rooms
from qakeapi.exceptions import ClusterUnavailableError, RoomLimitError, UnlinkedRoomsError
from qakeapi.testing import TestClient, WebSocketTestSession
from tests.redis_server import wait_until
from tests.test_rooms import make_ws

QUIET = 0.15
FAST = {"heartbeat_interval": 0.05, "node_timeout": 0.4}


class CuttableBackend(MemoryBackend):
    """A memory backend whose link can be cut: publishing raises, and nothing is received."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.cut = False
        self.published: list[bytes] = []

    async def publish(self, channel: str, payload: str | bytes) -> None:
        if self.cut:
            raise BroadcastError("the link is cut")
        data = payload.encode() if isinstance(payload, str) else payload
        self.published.append(data)
        await super().publish(channel, payload)

    def _received(self, event: Event) -> None:
        if not self.cut:
            super()._received(event)

    def sever(self) -> None:
        self.cut = True
        self.connected_since = None

    def restore(self) -> None:
        self.cut = False
        self.connected_since = asyncio.get_running_loop().time()


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
    assert isinstance(manager.backend, RedisStreamBackend)
    assert manager.backend.url == f"redis://127.0.0.1:{port}"
    assert manager.node_id == "node-a"
    assert manager.connections == 0
    assert manager.delivered == 0


def test_create_clustered_manager_defaults() -> None:
    manager = create_clustered_manager(WebSocketHandler())
    assert manager.node_id == "node-1"
    assert manager.channel == "qakeapi:broadcast"
    assert isinstance(manager.backend, RedisStreamBackend)
    assert manager.backend.safe_url == "redis://localhost:6379"
    assert manager.outbox.max_age == 5.0
    assert (manager.heartbeat_interval, manager.node_timeout) == (1.0, 5.0)
    assert (manager.rooms.max_rooms_per_connection, manager.rooms.max_room_name_length) == (100, 200)


def test_create_clustered_manager_passes_options() -> None:
    manager = create_clustered_manager(
        WebSocketHandler(), "memory://hub-x", "solo", buffer_seconds=2.5, max_rooms_per_connection=3
    )
    assert isinstance(manager.backend, MemoryBackend)
    assert manager.backend.name == "hub-x"
    assert manager.outbox.max_age == 2.5
    assert manager.rooms.max_rooms_per_connection == 3


@pytest.mark.parametrize("url", ["http://x", "redis+socket://h", "nonsense"])
def test_unsupported_cluster_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported broadcast URL scheme"):
        create_cluster_backend(url)


@pytest.mark.parametrize("node_id", ["", "a\nb", "\n"])
def test_node_id_must_be_non_empty_without_newlines(node_id: str) -> None:
    with pytest.raises(ValueError, match="node_id must be a non-empty string without newlines"):
        ClusteredManager(WebSocketHandler(), MemoryBackend(), node_id)


def test_node_timeout_must_exceed_the_heartbeat() -> None:
    with pytest.raises(ValueError, match="node_timeout larger"):
        ClusteredManager(WebSocketHandler(), MemoryBackend(), "n", heartbeat_interval=1, node_timeout=1)


def test_managers_with_the_same_node_id_get_different_instance_ids() -> None:
    ids = {ClusteredManager(WebSocketHandler(), MemoryBackend(), "node-1").instance_id for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 12 and i.isdigit() and i[0] != "0" for i in ids)


# -- nodes ---------------------------------------------------------------------------------------


@dataclass
class Node:
    """One server of a cluster: its manager and an in-process client."""

    manager: ClusteredManager
    client: TestClient
    backend: CuttableBackend

    async def join(self, stack: AsyncExitStack, user: str = "") -> tuple[WebSocketTestSession, str]:
        """Connect a client (as ``user``) and wait for its welcome; return it and its connection id."""
        url = f"/ws?user={user}" if user else "/ws"
        session = await stack.enter_async_context(self.client.websocket_connect(url, timeout=3))
        welcome = await session.receive_json()
        assert welcome["type"] == "welcome"
        connection = welcome["id"]
        assert isinstance(connection, str)
        return session, connection


def make_node(hub: str, node_id: str, **options: Any) -> Node:
    backend = CuttableBackend(hub)
    handler = WebSocketHandler()
    manager = ClusteredManager(handler, backend, node_id, **options)
    app = Application()

    @handler.on_connect
    async def welcome(websocket: WebSocket) -> None:
        await websocket.send_json({"type": "welcome", "id": manager.connection_id(websocket)})

    @handler.on_message
    async def on_message(websocket: WebSocket, message: Any) -> None:
        if message.get("join"):
            manager.rooms.join(message["join"], websocket)
            await websocket.send_json({"type": "joined", "room": message["join"]})
        elif message.get("leave"):
            manager.rooms.leave(message["leave"], websocket)
            await websocket.send_json({"type": "left", "room": message["leave"]})

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        user = websocket.query_params.get("user")
        websocket.user_id = user or None
        await manager.handle_connection(websocket)

    return Node(manager, TestClient(app), backend)


async def quiet(*sessions: WebSocketTestSession) -> None:
    """Assert that no session receives anything more (no duplicates, nothing stray)."""

    async def one(session: WebSocketTestSession) -> None:
        try:
            message = await session.receive(timeout=QUIET)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected extra message {message}")

    await asyncio.gather(*(one(session) for session in sessions))


async def request(session: WebSocketTestSession, message: dict[str, str]) -> None:
    """Send a join/leave and wait for its acknowledgement."""
    await session.send_json(message)
    answer = await session.receive_json()
    assert answer["type"] in ("joined", "left")


async def known_everywhere(nodes: Sequence[Node], room: str, expected: set[str]) -> None:
    for node in nodes:
        await wait_until(
            lambda node=node: node.manager.presence.connection_ids(room) == expected,  # type: ignore[misc]
            f"{node.manager.node_id} knows the members of {room!r}",
            timeout=3,
        )


@pytest_asyncio.fixture
async def make_cluster() -> AsyncIterator[Callable[..., list[Node]]]:
    """A factory of nodes on a fresh memory hub; every node is closed at teardown."""
    made: list[Node] = []
    hub = uuid.uuid4().hex

    def factory(count: int = 2, **options: Any) -> list[Node]:
        nodes = [make_node(hub, f"node-{len(made) + n}", **{**FAST, **options}) for n in range(1, count + 1)]
        made.extend(nodes)
        return nodes

    yield factory
    for node in made:
        await node.manager.close()


class AbsorbingBackend(CuttableBackend):
    """A memory backend whose publish, once armed, hangs and then absorbs the cancellation it gets.

    That is what redis-py's publish path was seen to do while Redis came back: the cluster's
    sender task was cancelled by close() in the middle of a publish, the publish returned
    normally, and the sender's loop went on waiting for work (a hang at shutdown).
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.armed = False
        self.absorbed = asyncio.Event()

    async def publish_many(self, channel: str, payloads: Sequence[str | bytes]) -> None:
        if self.armed:
            self.armed = False
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.absorbed.set()
        await super().publish_many(channel, payloads)


@pytest.mark.asyncio
async def test_close_stops_a_sender_whose_backend_absorbed_the_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = AbsorbingBackend(uuid.uuid4().hex)
    manager = ClusteredManager(WebSocketHandler(), backend, "node-1", heartbeat_interval=0.05, node_timeout=0.4)
    await manager.start()
    backend.armed = True
    await manager.broadcast("stuck in a publish")
    await wait_until(lambda: not backend.armed, "the sender is in the publish", timeout=5)
    caplog.set_level(logging.WARNING, "qakeapi")
    await asyncio.wait_for(manager.close(flush_timeout=0.05), 4)  # within the 5 s a stuck task is given
    assert backend.absorbed.is_set()
    assert "did not stop" not in caplog.text


@pytest.mark.asyncio
async def test_a_background_loop_that_fails_is_logged_at_once_and_restarted(
    make_cluster: Callable[..., list[Node]], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = make_cluster()
    failures: list[float] = []
    expire = a.manager._membership.expire_peers

    def fails_once(now: float) -> None:
        if not failures:
            failures.append(now)
            raise RuntimeError("a bug in the heartbeat loop")
        expire(now)

    monkeypatch.setattr(a.manager._membership, "expire_peers", fails_once)
    caplog.set_level(logging.ERROR, "qakeapi")
    await a.manager.start()
    await b.manager.start()
    await wait_until(lambda: bool(failures), "the heartbeat loop failed", timeout=5)
    await wait_until(lambda: "heartbeat" in caplog.text and "restarting" in caplog.text, "it was logged", timeout=5)
    # restarted: node-1 keeps sending heartbeats, so node-2 never counts it as down
    await asyncio.sleep(0.4 * 3)  # three node timeouts
    assert b.manager.nodes.get(a.manager.instance_id) == a.manager.node_id


@pytest.mark.asyncio
async def test_a_rooms_of_its_own_under_a_cluster_manager_is_refused_loudly() -> None:
    """The tutorial's ``rooms = Rooms()`` kept after adding a cluster manager would reach this
    node's members only, silently: the join raises, and says what to write instead."""
    manager = ClusteredManager(WebSocketHandler(), MemoryBackend(uuid.uuid4().hex), "node-1")
    mine, local = Rooms(), Rooms(local_only=True)
    errors: list[BaseException] = []

    @manager.handler.on_message
    async def on_message(websocket: WebSocket, message: Any) -> None:
        try:
            mine.join("lobby", websocket)
        except UnlinkedRoomsError as exc:
            errors.append(exc)
        local.join("this node", websocket)  # meant for this node only: allowed
        manager.rooms.join("lobby", websocket)
        await websocket.send_json({"joined": sorted(manager.rooms.rooms_of(websocket))})

    app = Application()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await manager.handle_connection(websocket)

    try:
        async with TestClient(app).websocket_connect("/ws") as session:
            await session.send_json({})
            assert await session.receive_json() == {"joined": ["lobby"]}
    finally:
        await manager.close()
    [error] = errors
    assert "manager.rooms.join(name, websocket)" in str(error)
    assert "Rooms(local_only=True)" in str(error)
    assert "lobby" not in mine
    outside = make_ws()
    assert mine.join("lobby", outside) is mine.get("lobby")  # without a cluster, a Rooms() is fine


# -- broadcast and local first ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_broadcast_reaches_every_connection_on_every_node_exactly_once(
    make_cluster: Callable[..., list[Node]],
) -> None:
    a, b = make_cluster()
    async with AsyncExitStack() as stack:
        a1, _ = await a.join(stack)
        a2, _ = await a.join(stack)
        b1, _ = await b.join(stack)
        b2, _ = await b.join(stack)
        everyone = (a1, a2, b1, b2)
        assert await a.manager.broadcast({"n": 1, "text": "héllo"}) == 2
        for session in everyone:
            assert await session.receive_text() == '{"n":1,"text":"héllo"}'
        assert await b.manager.broadcast(b"\x00bytes", exclude=None) == 2
        for session in everyone:
            assert await session.receive_bytes() == b"\x00bytes"
        await quiet(*everyone)
        await wait_until(lambda: (a.manager.delivered, b.manager.delivered) == (2, 2), "each node counted 2 remote")


@pytest.mark.asyncio
async def test_broadcast_exclude_leaves_out_one_connection(make_cluster: Callable[..., list[Node]]) -> None:
    a, b = make_cluster()
    async with AsyncExitStack() as stack:
        a1, _ = await a.join(stack)
        a2, _ = await a.join(stack)
        b1, _ = await b.join(stack)
        sender = next(iter(a.manager.handler.connections))
        await a.manager.broadcast("hi", exclude=sender)
        received: list[str | None] = []
        for session in (a1, a2):
            try:
                received.append(await session.receive_text(timeout=QUIET))
            except TimeoutError:
                received.append(None)
        assert sorted(received, key=str) == [None, "hi"]
        assert await b1.receive_text() == "hi"
        await quiet(a1, a2, b1)


@pytest.mark.asyncio
async def test_a_node_delivers_locally_while_its_backend_is_cut(make_cluster: Callable[..., list[Node]]) -> None:
    a, b = make_cluster()
    async with AsyncExitStack() as stack:
        a1, _ = await a.join(stack)
        b1, _ = await b.join(stack)
        a.backend.sever()
        assert await a.manager.broadcast("local first") == 1
        assert await a1.receive_text(timeout=5) == "local first"  # the backend is cut: only local delivery can bring it
        await quiet(b1)


# -- rooms across nodes -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_room_split_over_two_nodes_gets_every_broadcast_once(make_cluster: Callable[..., list[Node]]) -> None:
    a, b = make_cluster()
    async with AsyncExitStack() as stack:
        a1, a1_id = await a.join(stack)
        a2, _ = await a.join(stack)  # not in the room
        b1, b1_id = await b.join(stack)
        b2, b2_id = await b.join(stack)
        for session in (a1, b1, b2):
            await request(session, {"join": "lobby"})
        await known_everywhere((a, b), "lobby", {a1_id, b1_id, b2_id})

        room = a.manager.rooms.get("lobby")
        assert room is not None
        assert await room.broadcast({"said": "hello"}) == 1
        for session in (a1, b1, b2):
            assert await session.receive_json() == {"said": "hello"}
        await quiet(a1, a2, b1, b2)

        sender = next(iter(b.manager.rooms.get("lobby").members))  # type: ignore[union-attr]
        other = b2 if b.manager.connection_id(sender) == b1_id else b1
        skipped = b1 if other is b2 else b2
        await b.manager.rooms.get("lobby").broadcast("from b", exclude=sender)  # type: ignore[union-attr]
        assert await a1.receive_text() == "from b"
        assert await other.receive_text() == "from b"
        await quiet(a1, a2, skipped)


@pytest.mark.asyncio
async def test_presence_lists_members_and_users_on_every_node(make_cluster: Callable[..., list[Node]]) -> None:
    a, b = make_cluster()
    async with AsyncExitStack() as stack:
        alice, alice_id = await a.join(stack, user="alice")
        bob, bob_id = await b.join(stack, user="bob")
        anonymous, anonymous_id = await b.join(stack)
        for session in (alice, bob, anonymous):
            await request(session, {"join": "lobby"})
        await known_everywhere((a, b), "lobby", {alice_id, bob_id, anonymous_id})
        for node in (a, b):
            assert node.manager.presence.user_ids("lobby") == {"alice", "bob"}
            members = node.manager.presence.members("lobby")
            assert members[bob_id].node_id == "node-2"
            assert members[bob_id].instance_id == b.manager.instance_id
            assert members[alice_id].user_id == "alice"

        await request(bob, {"leave": "lobby"})
        await known_everywhere((a, b), "lobby", {alice_id, anonymous_id})
        await stack.aclose()  # everyone disconnects: their rooms are left everywhere
    await known_everywhere((a, b), "lobby", set())
    assert a.manager.presence.rooms() == frozenset()


@pytest.mark.asyncio
async def test_presence_hooks_see_remote_joins_and_leaves_in_order(make_cluster: Callable[..., list[Node]]) -> None:
    a, b = make_cluster()
    seen: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = []

    @a.manager.on_presence
    async def record(diff: PresenceDiff) -> None:
        seen.append(
            (
                diff.reason.value,
                diff.room,
                tuple(m.user_id or "" for m in diff.joins),
                tuple(m.user_id or "" for m in diff.leaves),
            )
        )

    async with AsyncExitStack() as stack:
        await a.manager.start()
        bob, _ = await b.join(stack, user="bob")
        # Until node-1 has node-2's state, node-2's first news reaches it as a full-state sync.
        await wait_until(lambda: a.manager.peers.synced(b.manager.instance_id), "node-1 has node-2's state")
        await request(bob, {"join": "x"})
        await request(bob, {"leave": "x"})
        await wait_until(lambda: len(seen) >= 2, "both diffs reached node-1's hook")
    assert seen[:2] == [("join", "x", ("bob",), ()), ("leave", "x", (), ("bob",))]


@pytest.mark.asyncio
async def test_a_node_started_later_learns_the_existing_presence(make_cluster: Callable[..., list[Node]]) -> None:
    (a,) = make_cluster(1)
    async with AsyncExitStack() as stack:
        alice, alice_id = await a.join(stack, user="alice")
        await request(alice, {"join": "lobby"})
        (late,) = make_cluster(1)
        await late.manager.start()
        await known_everywhere((late,), "lobby", {alice_id})
        assert late.manager.nodes == {a.manager.instance_id: "node-1"}


# -- users and connections ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_send_to_user_reaches_all_their_sockets_on_every_node(make_cluster: Callable[..., list[Node]]) -> None:
    a, b, c = make_cluster(3)
    async with AsyncExitStack() as stack:
        alice_a, _ = await a.join(stack, user="alice")
        alice_b, _ = await b.join(stack, user="alice")
        bob_b, _ = await b.join(stack, user="bob")
        carol_c, _ = await c.join(stack, user="carol")
        assert await c.manager.send_to_user("alice", {"dm": 1}) == 0
        assert await alice_a.receive_json() == {"dm": 1}
        assert await alice_b.receive_json() == {"dm": 1}
        await quiet(alice_a, alice_b, bob_b, carol_c)
        assert await a.manager.send_to_user("alice", "local too") == 1
        assert await alice_a.receive_text() == "local too"
        assert await alice_b.receive_text() == "local too"
        await quiet(alice_a, alice_b, bob_b, carol_c)


@pytest.mark.asyncio
async def test_send_to_connection_by_cluster_unique_id(make_cluster: Callable[..., list[Node]]) -> None:
    a, b = make_cluster()
    async with AsyncExitStack() as stack:
        a1, a1_id = await a.join(stack)
        b1, b1_id = await b.join(stack)
        b2, _ = await b.join(stack)
        assert a1_id.startswith(a.manager.instance_id)
        assert b1_id.startswith(b.manager.instance_id)
        assert await a.manager.send_to_connection(b1_id, "just you") is True
        assert await b1.receive_text() == "just you"
        assert await a.manager.send_to_connection(a1_id, "me") is True
        assert await a1.receive_text() == "me"
        await quiet(a1, b1, b2)
        assert await a.manager.send_to_connection(f"{a.manager.instance_id}999999", "nobody") is False
        assert await a.manager.send_to_connection("not-an-id", "nobody") is False
        assert await a.manager.send_to_connection(a.manager.instance_id, "too short") is False


# -- presence when a node dies ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_cut_off_node_s_members_leave_elsewhere_within_the_timeout(
    make_cluster: Callable[..., list[Node]],
) -> None:
    a, b = make_cluster()
    downs: list[PresenceDiff] = []

    @a.manager.on_presence
    async def record(diff: PresenceDiff) -> None:
        if diff.reason is PresenceReason.NODE_DOWN:
            downs.append(diff)

    async with AsyncExitStack() as stack:
        alice, alice_id = await a.join(stack, user="alice")
        bob, bob_id = await b.join(stack, user="bob")
        for session in (alice, bob):
            await request(session, {"join": "lobby"})
        await known_everywhere((a, b), "lobby", {alice_id, bob_id})

        b.backend.sever()  # node-2 falls silent, as if killed
        started = asyncio.get_running_loop().time()
        await wait_until(lambda: bool(downs), "node-1 declared node-2 down", timeout=10)
        elapsed = asyncio.get_running_loop().time() - started
        assert elapsed >= 0.3  # not before node_timeout (0.4 s) less a heartbeat (how soon after: benchmarks/)
        assert a.manager.presence.connection_ids("lobby") == {alice_id}
        assert [m.connection_id for m in downs[0].leaves] == [bob_id]
        assert a.manager.nodes == {}
        # node-2 does not declare node-1 down: it hears nobody, which says nothing about the others
        assert b.manager.nodes == {a.manager.instance_id: "node-1"}

        b.backend.restore()  # it comes back: its heartbeat makes node-1 sync its presence again
        await known_everywhere((a,), "lobby", {alice_id, bob_id})


@pytest.mark.asyncio
async def test_a_clean_shutdown_removes_the_node_s_members_at_once(make_cluster: Callable[..., list[Node]]) -> None:
    a, b = make_cluster(2, node_timeout=60)
    async with AsyncExitStack() as stack:
        alice, alice_id = await a.join(stack)
        async with AsyncExitStack() as b_stack:
            bob, bob_id = await b.join(b_stack)
            await request(bob, {"join": "lobby"})
            await request(alice, {"join": "lobby"})
            await known_everywhere((a, b), "lobby", {alice_id, bob_id})
        await b.manager.close()
        await known_everywhere((a,), "lobby", {alice_id})
        assert a.manager.nodes == {}


# -- nothing lost in a blink ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_outage_within_the_bound_loses_nothing_and_keeps_order(
    make_cluster: Callable[..., list[Node]], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = make_cluster(2, buffer_seconds=5, node_timeout=10)
    caplog.set_level(logging.INFO, "qakeapi")
    async with AsyncExitStack() as stack:
        a1, _ = await a.join(stack)
        b1, _ = await b.join(stack)
        await a.manager.broadcast("before")
        assert await b1.receive_text() == "before"
        assert await a1.receive_text() == "before"

        a.backend.sever()
        for n in range(100):
            await a.manager.broadcast({"n": n})
        assert [await a1.receive_json() for _ in range(100)] == [{"n": n} for n in range(100)]
        await quiet(b1)
        a.backend.restore()
        assert [await b1.receive_json() for _ in range(100)] == [{"n": n} for n in range(100)]
        await quiet(a1, b1)
    lines = [r.getMessage() for r in caplog.records if r.name == "qakeapi.clustering" and r.levelno >= logging.WARNING]
    assert len(lines) == 2, lines  # one when it went down, one when it came back: not one per message
    assert "the cluster publisher lost its connection" in lines[0]
    assert "buffering publishes for up to" in lines[0]
    assert "the cluster publisher reconnected after" in lines[1]
    assert "0 dropped" in lines[1]


@pytest.mark.asyncio
async def test_past_the_bound_publishes_raise_and_the_affected_clients_are_told(
    make_cluster: Callable[..., list[Node]],
) -> None:
    a, b = make_cluster(2, buffer_seconds=0.2, node_timeout=10)
    async with AsyncExitStack() as stack:
        a1, _ = await a.join(stack)
        b_in_room, _ = await b.join(stack)
        b_elsewhere, _ = await b.join(stack)
        await request(b_in_room, {"join": "news"})
        await request(a1, {"join": "news"})
        await wait_until(lambda: len(a.manager.presence.connection_ids("news")) == 2, "node-1 sees both members")
        room = a.manager.rooms.get("news")
        assert room is not None

        a.backend.sever()
        await room.broadcast("buffered, then too old")  # accepted, dropped at 0.2 s
        assert await a1.receive_text() == "buffered, then too old"
        await wait_until(lambda: a.manager.outbox.down_since is not None, "node-1 noticed the outage")
        await asyncio.sleep(0.3)  # past the bound: the next publish cannot be buffered
        with pytest.raises(ClusterUnavailableError, match="unreachable") as raised:
            await room.broadcast("refused")
        assert isinstance(raised.value, BroadcastError)
        assert await a1.receive_text() == "refused"  # the local member still got it

        a.backend.restore()
        assert await b_in_room.receive_json() == lost_event(2, "node-1")
        await quiet(b_in_room, b_elsewhere)  # not in the room: not affected, not told
        assert a.manager.outbox.dropped == 2


@pytest.mark.asyncio
async def test_receivers_drop_duplicates_and_report_gaps(make_cluster: Callable[..., list[Node]]) -> None:
    (a,) = make_cluster(1)
    async with AsyncExitStack() as stack:
        a1, _ = await a.join(stack)
        stranger = MemoryBackend(a.backend.name)
        await stranger.connect()

        async def publish(seq: int, text: str) -> None:
            envelope = Envelope(Kind.ALL, "feedfeedfeed", "node-x", seq, {}, text)
            await stranger.publish(a.manager.channel, encode_envelope(envelope))

        await publish(1, "one")
        await publish(1, "one again")  # a retry: dropped
        await publish(2, "two")
        assert await a1.receive_text() == "one"
        assert await a1.receive_text() == "two"
        await publish(5, "five")  # 3 and 4 never arrived
        assert await a1.receive_json() == lost_event(2, "node-x")
        assert await a1.receive_text() == "five"
        await quiet(a1)
        assert (a.manager.inbox.duplicates, a.manager.inbox.gaps) == (1, 2)
        await stranger.disconnect()


@pytest.mark.asyncio
async def test_malformed_messages_are_logged_and_ignored(
    make_cluster: Callable[..., list[Node]], caplog: pytest.LogCaptureFixture
) -> None:
    (a,) = make_cluster(1)
    async with AsyncExitStack() as stack:
        a1, _ = await a.join(stack)
        await a.backend.publish(a.manager.channel, b"garbage")
        await a.manager.broadcast("still fine")
        assert await a1.receive_text() == "still fine"
        await wait_until(lambda: "ignoring a malformed message" in caplog.text, "the bad message was logged")
        await quiet(a1)


# -- limits, lifecycle, workers ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_room_limits_apply_to_cluster_rooms(make_cluster: Callable[..., list[Node]]) -> None:
    (a,) = make_cluster(1, max_rooms_per_connection=2, max_room_name_length=5)
    async with AsyncExitStack() as stack:
        await a.join(stack)
        websocket = next(iter(a.manager.handler.connections))
        a.manager.rooms.join("one", websocket)
        a.manager.rooms.join("two", websocket)
        with pytest.raises(RoomLimitError, match="already in 2 rooms") as raised:
            a.manager.rooms.join("three", websocket)
        assert isinstance(raised.value, QakeAPIError)
        assert isinstance(raised.value, ValueError)
        with pytest.raises(RoomLimitError, match="exceeds the limit of 5"):
            a.manager.rooms.join("toolong", websocket)
        assert a.manager.rooms.rooms_of(websocket) == {"one", "two"}


@pytest.mark.asyncio
async def test_memory_backend_in_a_worker_process_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, make_cluster: Callable[..., list[Node]]
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    (a,) = make_cluster(1)
    await a.manager.start()
    assert "will NOT reach the other workers" in caplog.text
    assert "WEB_CONCURRENCY=2" in caplog.text


@pytest.mark.asyncio
async def test_memory_backend_alone_does_not_warn(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, make_cluster: Callable[..., list[Node]]
) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    (a,) = make_cluster(1)
    await a.manager.start()
    assert "will NOT reach" not in caplog.text


@pytest.mark.asyncio
async def test_close_is_idempotent_and_the_manager_starts_again(make_cluster: Callable[..., list[Node]]) -> None:
    a, b = make_cluster()
    await a.manager.close()  # before start: nothing
    async with AsyncExitStack() as stack:
        b1, _ = await b.join(stack)
        await a.manager.start()
        await a.manager.close()
        await a.manager.close()
        await a.manager.broadcast("after a restart")  # starts it again
        assert await b1.receive_text() == "after a restart"
