"""Room history across processes: ``examples_app.history_app`` as two uvicorn nodes on a private
``redis-server``; clients over real sockets.

A member whose node is killed (``kill -9``) comes back on the other node with the last position
it saw and gets exactly the publications it missed, then the live ones, each once; a position
older than the retention window, or from before a Redis restart (which loses the history: this
Redis keeps nothing on disk), gets ``recovered: false`` and no replay at all.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.conftest import Serve, assert_no_message, recv_json
from tests.e2e.servers import Server
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]


def start(serve: Serve, redis_server: RedisServer, count: int, **env: str) -> list[Server]:
    return [
        serve("history_app", env={"QAKEAPI_REDIS_URL": redis_server.url, "QAKEAPI_NODE_ID": f"history-{n}", **env})
        for n in range(1, count + 1)
    ]


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def member(stack: AsyncExitStack, node: Server, since: dict[str, Any] | None = None) -> ClientConnection:
    """Connect to ``node`` and join ``lobby`` (plainly: the answer is read here)."""
    ws = await stack.enter_async_context(connect(f"{node.ws_url}/ws"))
    await send(ws, {"type": "join", "room": "lobby"})
    assert await recv_json(ws) == {"type": "joined", "room": "lobby"}
    return ws


async def publications(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    received = [await recv_json(ws) for _ in range(count)]
    assert [p["type"] for p in received] == ["publication"] * count, received
    return received


async def test_a_member_of_a_killed_node_recovers_exactly_what_it_missed_on_the_other_node(
    serve: Serve, redis_server: RedisServer
) -> None:
    first, second = start(serve, redis_server, 2)
    async with AsyncExitStack() as stack:
        publisher = await member(stack, second)
        leaver = await member(stack, first)
        for n in range(3):
            await send(publisher, {"type": "publish", "room": "lobby", "data": {"n": n}})
        seen = await publications(leaver, 3)
        assert await publications(publisher, 3) == seen
        epoch, last = seen[-1]["epoch"], seen[-1]["offset"]

        first.process.kill()  # kill -9: the leaver's socket dies with its node
        for n in range(3, 7):
            await send(publisher, {"type": "publish", "room": "lobby", "data": {"n": n}})
        await publications(publisher, 4)

        back = await stack.enter_async_context(connect(f"{second.ws_url}/ws"))
        await send(back, {"type": "join", "room": "lobby", "since": {"epoch": epoch, "offset": last}})
        replay = await publications(back, 4)
        assert [(p["offset"], p["data"]) for p in replay] == [(last + 1 + i, {"n": 3 + i}) for i in range(4)]
        assert await recv_json(back) == {
            "type": "recovery",
            "room": "lobby",
            "recovered": True,
            "replayed": 4,
            "epoch": epoch,
            "offset": last + 4,
            "reason": None,
        }
        await send(publisher, {"type": "publish", "room": "lobby", "data": "live"})
        [live] = await publications(back, 1)
        assert (live["offset"], live["data"]) == (last + 5, "live")
        await publications(publisher, 1)
        await assert_no_message(back, publisher)
    assert "Traceback" not in second.output()


async def test_past_the_retention_or_after_a_redis_restart_nothing_is_replayed(
    serve: Serve, redis_server: RedisServer
) -> None:
    (node,) = start(serve, redis_server, 1, QAKEAPI_HISTORY_SIZE="5")
    async with AsyncExitStack() as stack:
        publisher = await member(stack, node)
        for n in range(10):
            await send(publisher, {"type": "publish", "room": "lobby", "data": n})
        got = await publications(publisher, 10)
        epoch = got[0]["epoch"]

        late = await stack.enter_async_context(connect(f"{node.ws_url}/ws"))
        await send(late, {"type": "join", "room": "lobby", "since": {"epoch": epoch, "offset": 2}})
        answer = await recv_json(late)  # 3 and 4 are gone: no partial replay of 5 to 10
        assert (answer["type"], answer["recovered"], answer["replayed"], answer["offset"]) == (
            "recovery",
            False,
            0,
            10,
        )
        assert "no longer reaches back" in answer["reason"]

        just_enough = await stack.enter_async_context(connect(f"{node.ws_url}/ws"))
        await send(just_enough, {"type": "join", "room": "lobby", "since": {"epoch": epoch, "offset": 5}})
        assert [p["data"] for p in await publications(just_enough, 5)] == [5, 6, 7, 8, 9]
        assert (await recv_json(just_enough))["recovered"] is True

        redis_server.stop()
        redis_server.start()  # empty: the history is gone
        await send(publisher, {"type": "publish", "room": "lobby", "data": "after"})
        [after] = await publications(publisher, 1)
        print("AFTER", after)
        for ws in (late, just_enough):  # one that could not recover is a member all the same
            print("GOT", await ws.recv())
        assert after["epoch"] != epoch  # a new epoch, numbered from 1 again
        assert after["offset"] == 1
        again = await stack.enter_async_context(connect(f"{node.ws_url}/ws"))
        await send(again, {"type": "join", "room": "lobby", "since": {"epoch": epoch, "offset": 10}})
        answer = await recv_json(again)
        assert (answer["recovered"], answer["epoch"], answer["reason"]) == (
            False,
            after["epoch"],
            "the history was reset (another epoch)",
        )
        await assert_no_message(late, again, just_enough)


async def test_bad_requests_get_an_error_and_the_connection_goes_on(serve: Serve, redis_server: RedisServer) -> None:
    (node,) = start(serve, redis_server, 1)
    async with connect(f"{node.ws_url}/ws") as ws:
        for bad, reason in (
            ({"type": "join", "room": "lobby", "since": {"epoch": 3}}, "a position is"),
            ({"type": "publish", "room": "lobby", "data": 1}, "join 'lobby' first"),
            ({"type": "join", "room": "x" * 500}, "room name of 500 characters"),
            ({"type": "dance", "room": "lobby"}, "unknown message type"),
            ({"room": 1}, "expected"),
        ):
            await send(ws, bad)
            answer = await recv_json(ws)
            assert answer["type"] == "error"
            assert reason in answer["message"]
        await send(ws, {"type": "join", "room": "lobby"})
        assert await recv_json(ws) == {"type": "joined", "room": "lobby"}
