"""Guide section "Common Patterns" over the network: ``examples_app.patterns`` under uvicorn.

The server's pool holds 1000 connections, so eviction (closing the oldest) is tested in process;
here the pool's broadcast and the queue's ordering travel real sockets.
"""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.conftest import Serve, assert_no_message, recv_json

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]


async def pool_member(ws: ClientConnection) -> str:
    welcome = await recv_json(ws)
    connection_id = welcome["connection_id"]
    assert isinstance(connection_id, str)
    assert welcome == {"type": "welcome", "connection_id": connection_id}
    return connection_id


async def test_pool_broadcast_reaches_every_member_once(serve: Serve) -> None:
    server = serve("patterns")
    url = f"{server.ws_url}/pool"
    async with connect(url) as first, connect(url) as second:
        first_id = await pool_member(first)
        second_id = await pool_member(second)
        async with connect(url) as third:
            third_id = await pool_member(third)
            assert len({first_id, second_id, third_id}) == 3

            hello = {"type": "pool_message", "from": first_id, "data": "hello"}
            n_1 = {"type": "pool_message", "from": third_id, "data": {"n": 1}}
            await first.send("hello")
            # Two clients' messages have no order between them until the server has one: third
            # sends once "hello" was broadcast (first got it), so every member gets hello, then n=1.
            assert await recv_json(first) == hello
            await third.send(json.dumps({"n": 1}))
            assert await recv_json(first) == n_1
            for ws in (second, third):
                assert [await recv_json(ws) for _ in range(2)] == [hello, n_1]
            await assert_no_message(first, second, third)

        # the closed member is gone from the pool; the others still get broadcasts
        await second.send("after close")
        for ws in (first, second):
            assert await recv_json(ws) == {"type": "pool_message", "from": second_id, "data": "after close"}
        await assert_no_message(first, second)


async def test_queue_delivers_in_order_to_its_room_only(serve: Serve) -> None:
    server = serve("patterns")
    async with (
        connect(f"{server.ws_url}/queue/general") as first,
        connect(f"{server.ws_url}/queue/general") as second,
        connect(f"{server.ws_url}/queue/other") as outsider,
    ):
        for ws, room in ((first, "general"), (second, "general"), (outsider, "other")):
            assert await recv_json(ws) == {"type": "welcome", "room": room}

        texts = ["one", "two", "three", *(f"message {n}" for n in range(50))]
        for text in texts:
            await first.send(text)
        await second.send(json.dumps({"last": True}))

        # one queue, one worker: both members get the same sequence, each sender's messages in order
        received = []
        for ws in (first, second):  # a plain loop: Python 3.10 has no nested async comprehensions
            received.append([await recv_json(ws) for _ in range(len(texts) + 1)])
        assert received[0] == received[1]
        by_sender: dict[str, list[object]] = {}
        for message in received[0]:
            assert set(message) == {"type", "room", "from", "data"}
            assert (message["type"], message["room"]) == ("queued_message", "general")
            by_sender.setdefault(message["from"], []).append(message["data"])
        assert sorted(by_sender.values(), key=len) == [[{"last": True}], texts]
        await assert_no_message(first, second, outsider)
