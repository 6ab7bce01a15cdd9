"""Guide section "WebSocket Clustering" across processes: ``examples_app.cluster_app`` nodes under
uvicorn, joined by a private ``redis-server`` (on a free port, so runs never share a channel).

Readiness: each node's manager connects and subscribes in its lifespan startup, before uvicorn
listens, and every client waits for its welcome before anyone sends.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.conftest import Serve, assert_no_message, recv_json
from tests.e2e.servers import Server
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

CLIENTS_PER_NODE = 2


def start_nodes(serve: Serve, redis_server: RedisServer, count: int) -> list[Server]:
    return [
        serve("cluster_app", env={"QAKEAPI_NODE_ID": f"node-{n}", "QAKEAPI_REDIS_URL": redis_server.url})
        for n in range(1, count + 1)
    ]


async def join(stack: AsyncExitStack, node: Server, node_id: str) -> ClientConnection:
    """Connect a client to ``node`` and wait for its welcome."""
    ws = await stack.enter_async_context(connect(f"{node.ws_url}/ws"))
    assert await recv_json(ws) == {"type": "welcome", "node": node_id}
    return ws


async def assert_everyone_gets_everything_once(clients: dict[str, list[ClientConnection]]) -> None:
    """Each client sends one message in turn; every client of every node gets each one exactly once."""
    everyone = [ws for sessions in clients.values() for ws in sessions]
    for node_id, sessions in clients.items():
        for index, sender in enumerate(sessions):
            data = {"text": f"hello from {node_id} client {index}", "unicode": "✓"}
            await sender.send(json.dumps(data))
            expected = {"type": "message", "data": data, "node": node_id}
            for ws in everyone:
                assert await recv_json(ws) == expected
    # plain text travels as it is, wrapped the same way
    sender_node = next(iter(clients))
    await clients[sender_node][0].send("plain text")
    for ws in everyone:
        assert await recv_json(ws) == {"type": "message", "data": "plain text", "node": sender_node}
    await assert_no_message(*everyone)


async def test_two_then_three_nodes_deliver_every_message_everywhere_exactly_once(
    redis_server: RedisServer, serve: Serve
) -> None:
    nodes = start_nodes(serve, redis_server, 2)
    async with AsyncExitStack() as stack:
        clients: dict[str, list[ClientConnection]] = {}
        for n, node in enumerate(nodes, start=1):  # plain loops: Python 3.10 has no nested async comprehensions
            clients[f"node-{n}"] = [await join(stack, node, f"node-{n}") for _ in range(CLIENTS_PER_NODE)]
        await assert_everyone_gets_everything_once(clients)

        third = serve("cluster_app", env={"QAKEAPI_NODE_ID": "node-3", "QAKEAPI_REDIS_URL": redis_server.url})
        nodes.append(third)
        clients["node-3"] = [await join(stack, third, "node-3") for _ in range(CLIENTS_PER_NODE)]
        await assert_everyone_gets_everything_once(clients)

    for node in nodes:
        assert node.process.poll() is None
        assert "Traceback" not in node.output()
        assert redis_server.password is not None
        assert redis_server.password not in node.output()


async def test_a_client_that_leaves_one_node_does_not_disturb_the_cluster(
    redis_server: RedisServer, serve: Serve
) -> None:
    first, second = start_nodes(serve, redis_server, 2)
    async with AsyncExitStack() as stack:
        stay = await join(stack, first, "node-1")
        other = await join(stack, second, "node-2")
        leaving = await connect(f"{second.ws_url}/ws")
        assert await recv_json(leaving) == {"type": "welcome", "node": "node-2"}
        await leaving.close()
        await stay.send("after the leave")
        for ws in (stay, other):
            assert await recv_json(ws) == {"type": "message", "data": "after the leave", "node": "node-1"}
        await assert_no_message(stay, other)
    for node in (first, second):
        assert "Traceback" not in node.output()
