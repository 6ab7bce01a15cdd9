"""Redis going away under a running cluster, across processes.

Two ``examples_app.cluster_app`` nodes share a private, password-protected ``redis-server``.
The server is stopped: a broadcast fails, the node logs it, and nothing else breaks (the
connection stays open, the process keeps serving). The server comes back on the same port:
the supervised listeners reconnect and resubscribe, and messages flow across nodes exactly once
again. The password never appears in the logs.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AsyncExitStack
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

from tests.e2e.conftest import RECV_TIMEOUT, Serve, assert_no_message, recv_json
from tests.e2e.servers import Server
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RECOVERY_TIMEOUT = 15.0
"""How long the listeners may take to reconnect once Redis is back (their backoff is capped at 5 s)."""
PROBE_WINDOW = 0.5
"""How long each recovery probe waits for deliveries before the next one is sent."""


async def wait_for_output(server: Server, text: str, timeout: float = RECV_TIMEOUT) -> None:
    """Poll ``server``'s output (bounded) until it contains ``text``."""
    deadline = time.monotonic() + timeout
    while text not in server.output():
        assert time.monotonic() < deadline, f"{server.app} on {server.port} never logged {text!r}"
        await asyncio.sleep(0.05)


async def welcomed(stack: AsyncExitStack, node: Server, node_id: str) -> ClientConnection:
    ws = await stack.enter_async_context(connect(f"{node.ws_url}/ws"))
    assert await recv_json(ws) == {"type": "welcome", "node": node_id}
    return ws


def is_probe(message: Any) -> bool:
    return isinstance(message, dict) and isinstance(message.get("data"), dict) and "probe" in message["data"]


async def drain_probes(ws: ClientConnection, seen: set[int], window: float) -> None:
    """Collect the probe numbers that arrive on ``ws`` within ``window`` seconds."""
    deadline = time.monotonic() + window
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await recv_json(ws, timeout=left)
        except asyncio.TimeoutError:
            return
        assert is_probe(message), f"expected a probe, got {message!r}"
        seen.add(message["data"]["probe"])


async def recv_skipping_probes(ws: ClientConnection) -> Any:
    """The next message that is not a recovery probe (late probes may still be on their way)."""
    while is_probe(message := await recv_json(ws)):
        pass
    return message


async def test_cluster_survives_redis_restart(redis_server: RedisServer, serve: Serve) -> None:
    password = redis_server.password
    assert password is not None
    env = {"QAKEAPI_REDIS_URL": redis_server.url}
    first = serve("cluster_app", env={**env, "QAKEAPI_NODE_ID": "node-1"})
    second = serve("cluster_app", env={**env, "QAKEAPI_NODE_ID": "node-2"})

    async with AsyncExitStack() as stack:
        alice = await welcomed(stack, first, "node-1")
        bob = await welcomed(stack, second, "node-2")
        await alice.send("before")
        for ws in (alice, bob):
            assert await recv_json(ws) == {"type": "message", "data": "before", "node": "node-1"}

        # -- Redis goes away ------------------------------------------------------------
        await asyncio.to_thread(redis_server.stop)
        lost = f"WARNING qakeapi.broadcast.redis: Redis listener on redis://127.0.0.1:{redis_server.port} lost"
        for node in (first, second):
            await wait_for_output(node, lost)

        await alice.send("while redis is down")
        await wait_for_output(first, "BroadcastError: cannot publish to 'qakeapi:broadcast'")
        await assert_no_message(alice, bob)
        for node in (first, second):
            assert node.process.poll() is None
        assert alice.state is State.OPEN
        assert bob.state is State.OPEN
        carol = await welcomed(stack, first, "node-1")  # node-1 still accepts and greets new connections

        # -- Redis comes back on the same port --------------------------------------------
        await asyncio.to_thread(redis_server.start)
        seen_by_alice: set[int] = set()
        seen_by_bob: set[int] = set()
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        probe = 0
        while not seen_by_alice & seen_by_bob:
            assert time.monotonic() < deadline, "messages did not flow across the nodes again after Redis came back"
            probe += 1
            await alice.send(json.dumps({"probe": probe}))
            await asyncio.gather(
                drain_probes(alice, seen_by_alice, PROBE_WINDOW), drain_probes(bob, seen_by_bob, PROBE_WINDOW)
            )

        # exactly once again, both ways (alice first: node-1 handles her messages in order, so
        # every probe she sent is published before this one)
        await alice.send("after, from node-1")
        for ws in (alice, bob, carol):
            assert await recv_skipping_probes(ws) == {"type": "message", "data": "after, from node-1", "node": "node-1"}
        await bob.send("after, from node-2")
        for ws in (alice, bob, carol):
            assert await recv_json(ws) == {"type": "message", "data": "after, from node-2", "node": "node-2"}
        await assert_no_message(alice, bob, carol)

    for node in (first, second):
        assert node.process.poll() is None
        output = node.output()
        assert password not in output
        assert lost in output
