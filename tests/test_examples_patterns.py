"""The guide's "Common Patterns" (``examples_app.patterns``): a bounded pool and per-room queues.

Each app test builds its own app with :func:`create_app` and runs it inside ``async with
TestClient(app)``, so the queue workers it starts are stopped by the shutdown hook.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from examples_app import patterns
from examples_app.patterns import ConnectionPool, MessageQueue, create_app
from qakeapi import Application, CloseCode, WebSocket, WebSocketClosedError, WebSocketDisconnect
from qakeapi.core.websockets import WebSocketState
from qakeapi.testing import TestClient, WebSocketTestSession
from qakeapi.types import Message

CLOSE = {"type": "websocket.close", "code": 1000, "reason": ""}


async def assert_silent(*sessions: WebSocketTestSession) -> None:
    """Nothing more arrives on any of ``sessions``."""
    for ws in sessions:
        with pytest.raises(TimeoutError):
            await ws.receive_json(timeout=0.1)


def pool_of(app: Application) -> ConnectionPool:
    pool = app.state.pool
    assert isinstance(pool, ConnectionPool)
    return pool


def worker_tasks() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") == "MessageQueue.broadcast_worker"
    ]


# -- a WebSocket over an in-memory transport, for the unit tests ----------------------------


class Transport:
    """The server side's ASGI ``receive``/``send``: records what the WebSocket sends.

    Args:
        gone: Whether the peer has gone away (sending raises ``OSError``, as a server reports it).
    """

    def __init__(self, *, gone: bool = False) -> None:
        self.gone = gone
        self.incoming: asyncio.Queue[Message] = asyncio.Queue()
        self.incoming.put_nowait({"type": "websocket.connect"})
        self.sent: asyncio.Queue[Message] = asyncio.Queue()

    async def receive(self) -> Message:
        return await self.incoming.get()

    async def send(self, message: Message) -> None:
        if self.gone and message["type"] != "websocket.accept":
            raise OSError("connection reset by peer")
        self.sent.put_nowait(message)

    def drain(self) -> list[Message]:
        """What was sent and not yet read."""
        messages = []
        while not self.sent.empty():
            messages.append(self.sent.get_nowait())
        return messages

    async def next_text(self) -> Any:
        message = await asyncio.wait_for(self.sent.get(), 1)
        assert message["type"] == "websocket.send"
        return json.loads(message["text"])


async def open_websocket(*, gone: bool = False) -> tuple[WebSocket, Transport]:
    transport = Transport(gone=gone)
    websocket = WebSocket({"type": "websocket", "path": "/unit", "headers": []}, transport.receive, transport.send)
    await websocket.accept()
    assert transport.drain() == [{"type": "websocket.accept", "subprotocol": None}]
    return websocket, transport


# -- ConnectionPool -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_pool_adds_connections_up_to_its_capacity() -> None:
    pool = ConnectionPool(max_connections=3)
    sockets = [await open_websocket() for _ in range(3)]
    for n, (websocket, _) in enumerate(sockets):
        await pool.add_connection(f"c{n}", websocket)
    assert list(pool.connections) == ["c0", "c1", "c2"]
    assert [pool.connections[f"c{n}"] for n in range(3)] == [websocket for websocket, _ in sockets]
    for websocket, transport in sockets:
        assert websocket.is_open
        assert transport.drain() == []


@pytest.mark.asyncio
async def test_full_pool_closes_and_forgets_the_oldest() -> None:
    pool = ConnectionPool(max_connections=2)
    (first, first_t), (second, second_t), (third, third_t) = [await open_websocket() for _ in range(3)]
    await pool.add_connection("first", first)
    await pool.add_connection("second", second)
    await pool.add_connection("third", third)
    assert list(pool.connections) == ["second", "third"]
    assert first_t.drain() == [CLOSE]
    assert first.application_state is WebSocketState.DISCONNECTED
    assert second_t.drain() == []
    assert third_t.drain() == []
    assert second.is_open
    assert third.is_open


@pytest.mark.asyncio
async def test_pool_of_one_keeps_only_the_newest() -> None:
    pool = ConnectionPool(max_connections=1)
    sockets = [await open_websocket() for _ in range(4)]
    for n, (websocket, _) in enumerate(sockets):
        await pool.add_connection(str(n), websocket)
        assert list(pool.connections) == [str(n)]
    assert [transport.drain() for _, transport in sockets] == [[CLOSE], [CLOSE], [CLOSE], []]


def test_pool_default_capacity() -> None:
    assert ConnectionPool().max_connections == 1000
    assert ConnectionPool().connections == {}


@pytest.mark.asyncio
async def test_remove_connection_closes_it_and_ignores_unknown_ids() -> None:
    pool = ConnectionPool()
    websocket, transport = await open_websocket()
    await pool.add_connection("a", websocket)
    await pool.remove_connection("unknown")
    assert list(pool.connections) == ["a"]
    assert transport.drain() == []
    await pool.remove_connection("a")
    assert pool.connections == {}
    assert transport.drain() == [CLOSE]
    await pool.remove_connection("a")
    assert transport.drain() == []


@pytest.mark.asyncio
async def test_pool_broadcast_sends_the_same_frame_to_everyone() -> None:
    pool = ConnectionPool()
    sockets = [await open_websocket() for _ in range(3)]
    for n, (websocket, _) in enumerate(sockets):
        await pool.add_connection(str(n), websocket)
    assert await pool.broadcast({"type": "news", "text": "héllo"}) == 3
    frames = [transport.drain() for _, transport in sockets]
    assert frames == [[{"type": "websocket.send", "text": '{"type":"news","text":"héllo"}'}]] * 3


@pytest.mark.asyncio
async def test_pool_broadcast_drops_closed_connections() -> None:
    pool = ConnectionPool()
    (alive, alive_t), (closed, closed_t), (gone, gone_t) = [
        await open_websocket(),
        await open_websocket(),
        await open_websocket(gone=True),
    ]
    await pool.add_connection("alive", alive)
    await pool.add_connection("closed", closed)
    await pool.add_connection("gone", gone)
    await closed.close()
    assert closed_t.drain() == [CLOSE]

    assert await pool.broadcast({"n": 1}) == 1
    assert list(pool.connections) == ["alive"]
    assert alive_t.drain() == [{"type": "websocket.send", "text": '{"n":1}'}]
    assert closed_t.drain() == []
    assert gone_t.drain() == []

    assert await pool.broadcast({"n": 2}) == 1
    assert alive_t.drain() == [{"type": "websocket.send", "text": '{"n":2}'}]


@pytest.mark.asyncio
async def test_pool_broadcast_to_an_empty_pool() -> None:
    assert await ConnectionPool().broadcast({"n": 1}) == 0


# -- MessageQueue ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_queue_is_fifo_per_room_and_rooms_are_separate() -> None:
    queue = MessageQueue()
    assert queue.queues == {}
    await queue.enqueue("red", {"n": 1})
    await queue.enqueue("blue", {"n": 2})
    await queue.enqueue("red", {"n": 3})
    assert set(queue.queues) == {"red", "blue"}
    assert await queue.dequeue("blue") == {"n": 2}
    assert await queue.dequeue("red") == {"n": 1}
    assert await queue.dequeue("red") == {"n": 3}
    assert all(q.empty() for q in queue.queues.values())


@pytest.mark.asyncio
async def test_queue_is_bounded() -> None:
    queue = MessageQueue(max_size=2)
    await queue.enqueue("red", {"n": 1})
    await queue.enqueue("red", {"n": 2})
    assert queue.queues["red"].maxsize == 2
    assert queue.queues["red"].full()
    with pytest.raises(asyncio.TimeoutError):  # the builtin TimeoutError only from Python 3.11
        await asyncio.wait_for(queue.enqueue("red", {"n": 3}), 0.05)
    assert await queue.dequeue("red") == {"n": 1}
    await queue.enqueue("red", {"n": 4})
    assert [await queue.dequeue("red"), await queue.dequeue("red")] == [{"n": 2}, {"n": 4}]


@pytest.mark.asyncio
async def test_dequeue_waits_for_a_message() -> None:
    queue = MessageQueue()
    waiting = asyncio.get_running_loop().create_task(queue.dequeue("red"))
    with pytest.raises(asyncio.TimeoutError):  # the builtin TimeoutError only from Python 3.11
        await asyncio.wait_for(asyncio.shield(waiting), 0.05)
    await queue.enqueue("red", {"n": 1})
    assert await asyncio.wait_for(waiting, 1) == {"n": 1}


@pytest.mark.asyncio
async def test_broadcast_worker_delivers_in_order_and_drops_closed_connections() -> None:
    queue = MessageQueue()
    (first, first_t), (second, second_t), (gone, gone_t) = [
        await open_websocket(),
        await open_websocket(),
        await open_websocket(gone=True),
    ]
    connections = {first, second, gone}
    worker = asyncio.get_running_loop().create_task(queue.broadcast_worker("red", connections))
    try:
        for n in range(5):
            await queue.enqueue("red", {"n": n})
        await queue.enqueue("blue", {"n": "other room"})
        for transport in (first_t, second_t):
            assert [await transport.next_text() for _ in range(5)] == [{"n": n} for n in range(5)]
        # the worker removed the dead connection after the first message it could not deliver
        assert connections == {first, second}
        assert gone_t.drain() == []
        assert first_t.drain() == []
        assert second_t.drain() == []
        assert await queue.dequeue("blue") == {"n": "other room"}
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert worker.cancelled()


# -- /pool ----------------------------------------------------------------------------------


async def pool_welcome(ws: WebSocketTestSession) -> str:
    welcome = await ws.receive_json()
    connection_id = welcome["connection_id"]
    assert isinstance(connection_id, str)
    assert welcome == {"type": "welcome", "connection_id": connection_id}
    return connection_id


def pooled(sender: str, data: Any) -> dict[str, Any]:
    return {"type": "pool_message", "from": sender, "data": data}


@pytest.mark.asyncio
async def test_pool_broadcasts_to_every_member() -> None:
    app = create_app(max_connections=10)
    async with (
        TestClient(app) as client,
        client.websocket_connect("/pool") as first,
        client.websocket_connect("/pool") as second,
    ):
        first_id = await pool_welcome(first)
        second_id = await pool_welcome(second)
        assert first_id != second_id
        assert list(pool_of(app).connections) == [first_id, second_id]

        await first.send_text("hello")
        assert await first.receive_json() == pooled(first_id, "hello")
        assert await second.receive_json() == pooled(first_id, "hello")
        await second.send_json({"text": "hi", "n": [1, 2]})
        assert await first.receive_json() == pooled(second_id, {"text": "hi", "n": [1, 2]})
        assert await second.receive_json() == pooled(second_id, {"text": "hi", "n": [1, 2]})
        await assert_silent(first, second)


@pytest.mark.asyncio
async def test_full_pool_evicts_the_oldest_connection() -> None:
    app = create_app(max_connections=2)
    pool = pool_of(app)
    async with (
        TestClient(app) as client,
        client.websocket_connect("/pool") as first,
        client.websocket_connect("/pool") as second,
    ):
        first_id = await pool_welcome(first)
        second_id = await pool_welcome(second)
        await first.send_text("hello")
        assert await first.receive_json() == pooled(first_id, "hello")
        assert await second.receive_json() == pooled(first_id, "hello")

        async with client.websocket_connect("/pool") as third:
            third_id = await pool_welcome(third)  # the pool was full: the oldest is closed
            with pytest.raises(WebSocketDisconnect) as closed:
                await first.receive_json()
            assert closed.value.code == CloseCode.NORMAL_CLOSURE
            assert first.close_code == 1000
            assert list(pool.connections) == [second_id, third_id]
            assert len(pool.connections) == 2

            await third.send_text("again")
            assert await third.receive_json() == pooled(third_id, "again")
            assert await second.receive_json() == pooled(third_id, "again")
            await assert_silent(second, third)
            with pytest.raises(WebSocketDisconnect):
                await first.receive_json(timeout=0.1)
            with pytest.raises(WebSocketClosedError):
                await first.send_text("let me back in")


@pytest.mark.asyncio
async def test_pool_evicts_in_arrival_order() -> None:
    app = create_app(max_connections=2)
    pool = pool_of(app)
    async with TestClient(app) as client:
        sessions = [await client.websocket_connect("/pool") for _ in range(4)]
        try:
            ids = [await pool_welcome(ws) for ws in sessions]
            assert list(pool.connections) == ids[2:]
            for ws in sessions[:2]:
                with pytest.raises(WebSocketDisconnect) as closed:
                    await ws.receive_json()
                assert closed.value.code == 1000
            await sessions[3].send_text("last")
            for ws in sessions[2:]:
                assert await ws.receive_json() == pooled(ids[3], "last")
            await assert_silent(*sessions[2:])
        finally:
            for ws in sessions:
                await ws.close()
        assert pool.connections == {}


@pytest.mark.asyncio
async def test_disconnect_leaves_the_pool() -> None:
    app = create_app(max_connections=10)
    pool = pool_of(app)
    async with TestClient(app) as client, client.websocket_connect("/pool") as stayer:
        stayer_id = await pool_welcome(stayer)
        async with client.websocket_connect("/pool") as leaver:
            leaver_id = await pool_welcome(leaver)
            assert list(pool.connections) == [stayer_id, leaver_id]
        assert list(pool.connections) == [stayer_id]
        await stayer.send_text("anyone?")
        assert await stayer.receive_json() == pooled(stayer_id, "anyone?")
        await assert_silent(stayer)


# -- /queue/{room} --------------------------------------------------------------------------


async def queue_welcome(ws: WebSocketTestSession, room: str) -> None:
    assert await ws.receive_json() == {"type": "welcome", "room": room}


@pytest.mark.asyncio
async def test_queue_delivers_in_order_to_every_room_member_and_rooms_are_isolated() -> None:
    app = create_app()
    async with TestClient(app) as client:
        async with (
            client.websocket_connect("/queue/red") as red1,
            client.websocket_connect("/queue/red") as red2,
            client.websocket_connect("/queue/blue") as blue,
        ):
            await queue_welcome(red1, "red")
            await queue_welcome(red2, "red")
            await queue_welcome(blue, "blue")

            texts = ["one", "two", "three", "four", "five"]
            for text in texts:
                await red1.send_text(text)
            first_batch = [await red1.receive_json() for _ in texts]
            sender = first_batch[0]["from"]
            assert isinstance(sender, str)
            expected = [{"type": "queued_message", "room": "red", "from": sender, "data": t} for t in texts]
            assert first_batch == expected
            assert [await red2.receive_json() for _ in texts] == expected
            await assert_silent(red1, red2, blue)

            await blue.send_json({"only": "blue"})
            blue_message = await blue.receive_json()
            assert blue_message["data"] == {"only": "blue"}
            assert blue_message["room"] == "blue"
            assert blue_message["type"] == "queued_message"
            assert blue_message["from"] != sender
            await assert_silent(red1, red2, blue)

            await red2.send_text("from red2")
            red2_message = await red1.receive_json()
            assert red2_message == await red2.receive_json()
            assert red2_message["data"] == "from red2"
            assert red2_message["from"] not in (sender, blue_message["from"])
            await assert_silent(red1, red2, blue)
            assert len(worker_tasks()) == 2  # one worker per room
        assert worker_tasks() == []  # the rooms emptied: their workers stopped


@pytest.mark.asyncio
async def test_queue_skips_members_that_left() -> None:
    app = create_app()
    async with TestClient(app) as client, client.websocket_connect("/queue/green") as stayer:
        await queue_welcome(stayer, "green")
        async with client.websocket_connect("/queue/green") as leaver:
            await queue_welcome(leaver, "green")
            await leaver.send_text("bye")
            for ws in (stayer, leaver):
                assert (await ws.receive_json())["data"] == "bye"
        await stayer.send_text("still here")
        message = await stayer.receive_json()
        assert message["data"] == "still here"
        assert message["type"] == "queued_message"
        await assert_silent(stayer)


@pytest.mark.asyncio
async def test_module_app_serves_both_patterns() -> None:
    assert pool_of(patterns.app).max_connections == 1000
    async with (
        TestClient(patterns.app) as client,
        client.websocket_connect("/pool") as pooled_ws,
        client.websocket_connect("/queue/lobby") as queued_ws,
    ):
        pool_id = await pool_welcome(pooled_ws)
        await queue_welcome(queued_ws, "lobby")
        await pooled_ws.send_text("x")
        assert await pooled_ws.receive_json() == pooled(pool_id, "x")
        await queued_ws.send_text("y")
        message = await queued_ws.receive_json()
        assert message["type"] == "queued_message"
        assert message["room"] == "lobby"
        assert message["data"] == "y"
        await assert_silent(pooled_ws, queued_ws)
    assert worker_tasks() == []


@pytest.mark.asyncio
async def test_a_room_left_empty_loses_its_worker_and_queue_and_can_be_used_again() -> None:
    app = create_app()
    async with TestClient(app) as client:
        for _ in range(2):  # the second round reuses the room after it was cleaned up
            async with client.websocket_connect("/queue/ephemeral") as ws:
                assert await ws.receive_json() == {"type": "welcome", "room": "ephemeral"}
                await ws.send_json("hi")
                queued = await ws.receive_json()
                assert (queued["type"], queued["room"], queued["data"]) == ("queued_message", "ephemeral", "hi")
                assert "ephemeral" in app.state.workers
            assert "ephemeral" not in app.state.workers
            assert "ephemeral" not in app.state.queue.queues
