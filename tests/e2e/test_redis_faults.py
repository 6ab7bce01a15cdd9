"""Redis failing under a running cluster, across processes: nothing lost, nothing doubled.

Two ``examples_app.cluster_app`` nodes share a private, password-protected ``redis-server``.
A client on node-1 streams numbered messages at 200 a second; every client on both nodes
records what it receives. Then Redis is broken (stopped for 2 s, or its connections killed) in
the middle of the stream, and every client must end up with every message exactly once, in
order. The logs must show a handful of state changes, never one line per message, and never
the password.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AsyncExitStack
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.conftest import QUIET_TIMEOUT, Serve, assert_no_message, recv_json
from tests.e2e.servers import Server
from tests.redis_server import RedisServer, sync_client

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RATE = 200
"""Messages per second the streaming client sends."""
DELIVERY_TIMEOUT = 20.0
"""How long every client may take to have every message (the outage plus the flush)."""


async def welcomed(stack: AsyncExitStack, node: Server, node_id: str) -> ClientConnection:
    ws = await stack.enter_async_context(connect(f"{node.ws_url}/ws"))
    assert await recv_json(ws) == {"type": "welcome", "node": node_id}
    return ws


class Recorder:
    """Reads a client's messages in a task and keeps the stream's numbers in arrival order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.numbers: list[int] = []
        self.other: list[Any] = []
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for data in self.ws:
            message = json.loads(data)
            payload = message.get("data") if isinstance(message, dict) else None
            if isinstance(payload, dict) and "i" in payload:
                self.numbers.append(payload["i"])
            else:
                self.other.append(message)

    async def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while len(set(self.numbers)) < count:
            assert time.monotonic() < deadline, (
                f"only {len(set(self.numbers))} of {count} messages arrived; missing "
                f"{sorted(set(range(count)) - set(self.numbers))[:20]}..., other: {self.other[:5]}"
            )
            await asyncio.sleep(0.05)


async def stream(sender: ClientConnection, count: int, during: Any) -> None:
    """Send ``count`` numbered messages at :data:`RATE` a second, running ``during`` alongside."""

    async def send() -> None:
        start = time.monotonic()
        for i in range(count):
            delay = start + i / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await sender.send(json.dumps({"i": i}))

    await asyncio.gather(send(), during)


def assert_exactly_once_in_order(recorder: Recorder, count: int, who: str) -> None:
    duplicates = len(recorder.numbers) - len(set(recorder.numbers))
    lost = count - len(set(recorder.numbers))
    assert (lost, duplicates) == (0, 0), f"{who}: {lost} lost, {duplicates} duplicated"
    assert recorder.numbers == list(range(count)), f"{who}: out of order"
    assert recorder.other == [], f"{who}: unexpected messages {recorder.other[:5]}"


def start_nodes(serve: Serve, redis_server: RedisServer) -> tuple[Server, Server]:
    env = {"QAKEAPI_REDIS_URL": redis_server.url}
    return (
        serve("cluster_app", env={**env, "QAKEAPI_NODE_ID": "node-1"}),
        serve("cluster_app", env={**env, "QAKEAPI_NODE_ID": "node-2"}),
    )


def warnings_of(node: Server) -> list[str]:
    return [line for line in node.output().splitlines() if line.startswith(("WARNING", "ERROR"))]


async def test_redis_stopped_for_2s_during_a_200_per_second_stream_loses_and_doubles_nothing(
    redis_server: RedisServer, serve: Serve
) -> None:
    first, second = start_nodes(serve, redis_server)
    count = 4 * RATE
    async with AsyncExitStack() as stack:
        clients = {
            "node-1 sender": await welcomed(stack, first, "node-1"),
            "node-1 listener": await welcomed(stack, first, "node-1"),
            "node-2 listener a": await welcomed(stack, second, "node-2"),
            "node-2 listener b": await welcomed(stack, second, "node-2"),
        }
        recorders = {who: Recorder(ws) for who, ws in clients.items()}

        async def outage() -> None:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(redis_server.stop)
            await asyncio.sleep(2.0)
            await asyncio.to_thread(redis_server.start)

        await stream(clients["node-1 sender"], count, outage())
        for recorder in recorders.values():
            await recorder.wait_for(count)
        await asyncio.sleep(QUIET_TIMEOUT)  # a window for late duplicates to show up
        for who, recorder in recorders.items():
            assert_exactly_once_in_order(recorder, count, who)
        for recorder in recorders.values():
            recorder.task.cancel()

    password = redis_server.password
    assert password is not None
    for node in (first, second):
        output = node.output()
        assert password not in output
        assert "Traceback" not in output
        # a handful of state changes, not one line per message
        assert len(warnings_of(node)) <= 6, warnings_of(node)
    assert any("buffered publishes flushed, 0 dropped" in line for line in warnings_of(first)), warnings_of(first)
    assert any("reconnected after" in line for line in warnings_of(second)), warnings_of(second)


async def test_killed_redis_connections_lose_and_double_nothing(redis_server: RedisServer, serve: Serve) -> None:
    first, second = start_nodes(serve, redis_server)
    count = 2 * RATE
    admin = sync_client(redis_server.port, redis_server.password)
    async with AsyncExitStack() as stack:
        sender = await welcomed(stack, first, "node-1")
        listener = await welcomed(stack, second, "node-2")
        recorders = [Recorder(sender), Recorder(listener)]

        async def kill_connections() -> None:
            for _ in range(3):  # every client connection of both nodes, three times
                await asyncio.sleep(0.5)
                killed = await asyncio.to_thread(admin.client_kill_filter, _type="normal", skipme=True)
                assert killed >= 2  # the two readers at least (a writer may be idle)

        await stream(sender, count, kill_connections())
        for recorder in recorders:
            await recorder.wait_for(count)
        await asyncio.sleep(QUIET_TIMEOUT)  # a window for late duplicates to show up
        assert_exactly_once_in_order(recorders[0], count, "node-1 sender")
        assert_exactly_once_in_order(recorders[1], count, "node-2 listener")
        for recorder in recorders:
            recorder.task.cancel()
    admin.close()
    for node in (first, second):
        assert "Traceback" not in node.output()


async def test_nodes_start_with_redis_down_serve_locally_and_join_when_it_appears(
    redis_server: RedisServer, serve: Serve
) -> None:
    redis_server.stop()
    first, second = start_nodes(serve, redis_server)
    async with AsyncExitStack() as stack:
        alice = await welcomed(stack, first, "node-1")
        carol = await welcomed(stack, first, "node-1")
        bob = await welcomed(stack, second, "node-2")
        await alice.send("while redis is down")
        expected = {"type": "message", "data": "while redis is down", "node": "node-1"}
        assert await recv_json(alice, timeout=10) == expected  # Redis is down: only local delivery can bring it
        assert await recv_json(carol, timeout=10) == expected
        await asyncio.to_thread(redis_server.start)
        assert await recv_json(bob, timeout=10) == expected  # the buffered publish, flushed once Redis is up
        await bob.send("and back")
        for ws in (alice, carol, bob):
            assert await recv_json(ws) == {"type": "message", "data": "and back", "node": "node-2"}
        await assert_no_message(alice, carol, bob)
