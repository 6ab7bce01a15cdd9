"""Cluster-wide rooms, users and presence across processes, with the guide's chat apps.

``examples_app.chat_app`` and ``examples_app.websocket_app`` run as two uvicorn processes (or
one ``uvicorn --workers 2``) on a private ``redis-server``. A room whose members sit on both
nodes gets every message once on every member; a direct message reaches every socket of a
user on any node; when a node is killed with ``kill -9`` its members leave on the other node
(``user_left``) within the documented bound.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from contextlib import AsyncExitStack
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.conftest import QUIET_TIMEOUT, Serve, assert_no_message, generate_token, recv_json
from tests.e2e.servers import Server
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

NODE_TIMEOUT = 5.0
"""The example's node_timeout: a dead node's members leave no sooner than a heartbeat before it."""
HANG = 30.0
"""A bound that only catches a hang: how soon members leave is measured in benchmarks/, not here."""


def chat_nodes(serve: Serve, redis_server: RedisServer, count: int = 2) -> list[Server]:
    return [
        serve("chat_app", env={"QAKEAPI_REDIS_URL": redis_server.url, "QAKEAPI_NODE_ID": f"chat-{n}"})
        for n in range(1, count + 1)
    ]


async def chatter(stack: AsyncExitStack, node: Server) -> tuple[ClientConnection, str]:
    """Connect to the chat, read the welcome and the automatic join of ``general``."""
    ws = await stack.enter_async_context(connect(f"{node.ws_url}/ws"))
    welcome = await recv_json(ws)
    assert welcome["type"] == "welcome"
    connection_id = welcome["connection_id"]
    assert await recv_json(ws) == {"type": "room_joined", "room": "general"}
    return ws, connection_id


async def drain(ws: ClientConnection) -> list[Any]:
    """Everything that arrives on ``ws`` until it has been quiet for a moment."""
    messages = []
    while True:
        try:
            messages.append(await recv_json(ws, timeout=QUIET_TIMEOUT))
        except asyncio.TimeoutError:
            return messages


async def settle(ws: ClientConnection, *earlier: dict[str, str]) -> None:
    """Let a newcomer hear, at most once each, of joins made just before its own on another node.

    A join is announced to the members its announcement finds on each node; one made on the
    other node a moment before this client joined may reach this node just after: the
    newcomer then hears of a member who was already there. That is all it may hear.
    """
    heard = await drain(ws)
    assert all(message in earlier for message in heard), heard
    assert len(heard) == len({tuple(sorted(message.items())) for message in heard}), heard


def joined(connection_id: str, room: str = "general") -> dict[str, str]:
    return {"type": "user_joined", "connection_id": connection_id, "room": room}


def left(connection_id: str, room: str = "general") -> dict[str, str]:
    return {"type": "user_left", "connection_id": connection_id, "room": room}


def said(connection_id: str, message: str, room: str = "general") -> dict[str, str]:
    return {"type": "chat_message", "connection_id": connection_id, "room": room, "message": message}


async def test_a_room_split_over_two_processes_behaves_as_on_one(redis_server: RedisServer, serve: Serve) -> None:
    first, second = chat_nodes(serve, redis_server)
    async with AsyncExitStack() as stack:
        carol, carol_id = await chatter(stack, first)
        bob, bob_id = await chatter(stack, second)
        assert await recv_json(carol) == joined(bob_id)  # across the nodes: node 1 has bob's announcement
        await settle(bob, joined(carol_id))
        alice, alice_id = await chatter(stack, first)
        assert alice_id != bob_id
        for ws in (carol, bob):
            assert await recv_json(ws) == joined(alice_id)

        await bob.send('{"type": "chat_message", "room": "general", "message": "hi from node 2"}')
        for ws in (alice, bob, carol):
            assert await recv_json(ws) == said(bob_id, "hi from node 2")
        await assert_no_message(alice, bob, carol)

        # a second room with one member on each node
        await alice.send('{"type": "join_room", "room": "side"}')
        assert await recv_json(alice) == {"type": "room_joined", "room": "side"}
        await bob.send('{"type": "join_room", "room": "side"}')
        assert await recv_json(bob) == {"type": "room_joined", "room": "side"}
        assert await recv_json(alice) == joined(bob_id, "side")
        await settle(bob, joined(alice_id, "side"))
        await alice.send('{"type": "chat_message", "room": "side", "message": "psst"}')
        for ws in (alice, bob):
            assert await recv_json(ws) == said(alice_id, "psst", "side")
        await assert_no_message(alice, bob, carol)  # carol is not in "side"

        await bob.close()
        for ws in (alice, carol):
            assert await recv_json(ws) == left(bob_id)
        assert await recv_json(alice) == left(bob_id, "side")
        await assert_no_message(alice, carol)
    for node in (first, second):
        assert "Traceback" not in node.output()


async def test_a_killed_node_s_members_leave_for_their_room_mates(redis_server: RedisServer, serve: Serve) -> None:
    first, second = chat_nodes(serve, redis_server)
    async with AsyncExitStack() as stack:
        olga, olga_id = await chatter(stack, second)
        alice, alice_id = await chatter(stack, first)
        assert await recv_json(olga) == joined(alice_id)
        await settle(alice, joined(olga_id))
        bob, bob_id = await chatter(stack, second)
        for ws in (alice, olga):
            assert await recv_json(ws) == joined(bob_id)
        await bob.send('{"type": "join_room", "room": "side"}')
        assert await recv_json(bob) == {"type": "room_joined", "room": "side"}
        await alice.send('{"type": "join_room", "room": "side"}')
        assert await recv_json(alice) == {"type": "room_joined", "room": "side"}
        assert await recv_json(bob) == joined(alice_id, "side")
        await settle(alice, joined(bob_id, "side"))

        second.process.kill()  # kill -9: no goodbye, no user_left from node 2 itself
        killed_at = time.monotonic()
        leaves = [await recv_json(alice, timeout=HANG)]
        elapsed = time.monotonic() - killed_at
        leaves += [await recv_json(alice, timeout=HANG) for _ in range(2)]
        expected = [left(bob_id), left(olga_id), left(bob_id, "side")]
        assert sorted(leaves, key=lambda m: (m["room"], m["connection_id"])) == sorted(
            expected, key=lambda m: (m["room"], m["connection_id"])
        )
        assert elapsed >= NODE_TIMEOUT - 1.0, f"user_left after {elapsed:.1f}s, before the node timed out"
        await assert_no_message(alice)
    assert "counts as down" in first.output()


async def test_chat_under_uvicorn_workers_2_shares_rooms(redis_server: RedisServer, serve: Serve) -> None:
    server = serve(
        "chat_app",
        env={"QAKEAPI_REDIS_URL": redis_server.url, "QAKEAPI_NODE_ID": "chat-1"},
        args=("--workers", "2"),
    )
    async with AsyncExitStack() as stack:
        clients: list[tuple[ClientConnection, str]] = []
        instances: set[str] = set()
        # The kernel spreads connections over the two workers; connect until both hold some.
        # Everyone already in the room hears of each new member exactly once.
        while len(instances) < 2:
            assert len(clients) < 40, "every connection landed on one worker"
            ws, connection_id = await chatter(stack, server)
            for earlier, _ in clients:
                assert await recv_json(earlier) == joined(connection_id)
            await settle(ws, *(joined(earlier_id) for _, earlier_id in clients))
            clients.append((ws, connection_id))
            instances.add(connection_id[:12])
        sender, sender_id = clients[0]
        await sender.send('{"type": "chat_message", "room": "general", "message": "to both workers"}')
        for ws, _ in clients:
            assert await recv_json(ws) == said(sender_id, "to both workers")
        await assert_no_message(*(ws for ws, _ in clients))
    assert "Traceback" not in server.output()


async def test_memory_backend_under_workers_warns(serve: Serve) -> None:
    server = serve("chat_app", env={"QAKEAPI_REDIS_URL": "memory://chat"}, args=("--workers", "2"))
    async with connect(f"{server.ws_url}/ws") as ws:  # a connection starts a worker's manager for sure
        assert (await recv_json(ws))["type"] == "welcome"
    deadline = time.monotonic() + 5
    while "will NOT reach the other workers" not in server.output():
        assert time.monotonic() < deadline, server.output()
        await asyncio.sleep(0.05)


async def test_direct_messages_reach_every_socket_of_a_user_on_any_node(
    redis_server: RedisServer, serve: Serve
) -> None:
    env = {"QAKEAPI_REDIS_URL": redis_server.url, "QAKEAPI_SECRET_KEY": secrets.token_urlsafe(32)}
    first = serve("websocket_app", env={**env, "QAKEAPI_NODE_ID": "ws-1"})
    second = serve("websocket_app", env={**env, "QAKEAPI_NODE_ID": "ws-2"})
    alice_token = await generate_token(first, "alice")
    bob_token = await generate_token(second, "bob")

    async def user(stack: AsyncExitStack, node: Server, token: str) -> ClientConnection:
        ws = await stack.enter_async_context(
            connect(f"{node.ws_url}/ws", additional_headers={"Authorization": f"Bearer {token}"})
        )
        welcome: Any = await recv_json(ws)
        assert welcome["type"] == "welcome"
        return ws

    async with AsyncExitStack() as stack:
        alice_1 = await user(stack, first, alice_token)
        alice_2 = await user(stack, second, alice_token)
        bob = await user(stack, second, bob_token)
        await bob.send('{"type": "direct", "user": "alice", "message": "hello alice"}')
        for ws in (alice_1, alice_2):
            assert await recv_json(ws) == {"type": "direct", "from": "bob", "message": "hello alice"}
        await assert_no_message(alice_1, alice_2, bob)
