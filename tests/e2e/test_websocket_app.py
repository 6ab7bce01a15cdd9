"""The combined guide app (``examples_app.websocket_app``) over the network, and the guide's load test.

The "Performance Testing" workload runs as a functional test: 100 concurrent clients each get
their welcome, send one message and get exactly their own echo back. Nothing is timed.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.conftest import Serve, assert_no_message, generate_token, recv_json

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

CLIENTS = 100


async def welcomed(ws: ClientConnection, user: str | None = None) -> str:
    """Read the welcome; return the connection id."""
    welcome = await recv_json(ws)
    connection_id = welcome["connection_id"]
    assert isinstance(connection_id, str)
    greeting = f"Welcome, {user}!" if user is not None else "Connected!"
    assert welcome == {"type": "welcome", "message": greeting, "connection_id": connection_id, "user": user}
    return connection_id


async def send_json(ws: ClientConnection, message: Any) -> None:
    await ws.send(json.dumps(message))


async def test_anonymous_echo_and_authenticated_message(serve: Serve) -> None:
    server = serve("websocket_app")
    token = await generate_token(server, "123")
    async with (
        connect(f"{server.ws_url}/ws") as anon,
        connect(f"{server.ws_url}/ws", additional_headers={"Authorization": f"Bearer {token}"}) as user,
    ):
        await welcomed(anon)
        await welcomed(user, "123")
        hello = {"type": "message", "text": "Hello"}
        await send_json(anon, hello)
        await send_json(user, hello)
        assert await recv_json(anon) == {"type": "echo", "data": hello}
        assert await recv_json(user) == {"type": "message", "data": hello, "user": "123"}
        await assert_no_message(anon, user)


async def test_chat_rooms_and_errors(serve: Serve) -> None:
    server = serve("websocket_app")
    token = await generate_token(server, "alice")
    async with connect(f"{server.ws_url}/ws?token={token}") as alice, connect(f"{server.ws_url}/ws") as bob:
        alice_id = await welcomed(alice, "alice")
        bob_id = await welcomed(bob)

        await send_json(alice, {"type": "join_room", "room": "general"})
        assert await recv_json(alice) == {"type": "room_joined", "room": "general"}
        await send_json(bob, {"type": "join_room", "room": "general"})
        assert await recv_json(bob) == {"type": "room_joined", "room": "general"}
        assert await recv_json(alice) == {"type": "user_joined", "connection_id": bob_id, "room": "general"}

        await send_json(alice, {"type": "chat_message", "room": "general", "message": "Hello everyone!"})
        expected = {"type": "chat_message", "connection_id": alice_id, "room": "general", "message": "Hello everyone!"}
        assert await recv_json(alice) == expected
        assert await recv_json(bob) == expected

        await send_json(bob, {"type": "invalid_type"})
        assert await recv_json(bob) == {"type": "error", "message": "Unknown message type: invalid_type"}
        await bob.send("not json")
        assert await recv_json(bob) == {
            "type": "error",
            "message": "Invalid message: expected a JSON object with a 'type'",
        }
        await send_json(bob, {"type": "message", "text": "still here"})
        assert await recv_json(bob) == {"type": "echo", "data": {"type": "message", "text": "still here"}}
        await assert_no_message(alice)

        await bob.close()
        assert await recv_json(alice) == {"type": "user_left", "connection_id": bob_id, "room": "general"}
        await assert_no_message(alice)


async def test_performance_workload_100_concurrent_clients(serve: Serve) -> None:
    server = serve("websocket_app")
    sent = 0
    received = 0

    async def client(stack: AsyncExitStack) -> tuple[ClientConnection, str]:
        ws = await stack.enter_async_context(connect(f"{server.ws_url}/ws"))
        return ws, await welcomed(ws)

    async def send(index: int, ws: ClientConnection) -> None:
        nonlocal sent
        await send_json(ws, {"type": "message", "text": f"Message {index}"})
        sent += 1

    async def receive(index: int, ws: ClientConnection) -> None:
        nonlocal received
        assert await recv_json(ws, timeout=15) == {
            "type": "echo",
            "data": {"type": "message", "text": f"Message {index}"},
        }
        received += 1

    async with AsyncExitStack() as stack:
        connections = await asyncio.gather(*(client(stack) for _ in range(CLIENTS)))
        assert len({connection_id for _, connection_id in connections}) == CLIENTS
        sockets = [ws for ws, _ in connections]
        await asyncio.gather(*(send(index, ws) for index, ws in enumerate(sockets)))
        assert sent == CLIENTS
        await asyncio.gather(*(receive(index, ws) for index, ws in enumerate(sockets)))
        assert received == CLIENTS
        await assert_no_message(*sockets)
    assert server.process.poll() is None
