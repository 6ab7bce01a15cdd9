"""Guide section "Basic WebSocket Setup" over the network: ``examples_app.basic_app`` under uvicorn."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.e2e.conftest import Serve, assert_no_message, recv_json

WELCOME = {"type": "welcome", "message": "Connected!"}

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]


@pytest.mark.parametrize(
    "payload",
    [
        {"text": "hi"},
        {"type": "message", "nested": {"list": [1, 2.5, None, True]}, "unicode": "héllo ✓"},
        [1, "two", {"three": 3}],
    ],
)
async def test_echoes_json(serve: Serve, payload: Any) -> None:
    server = serve("basic_app")
    async with connect(f"{server.ws_url}/ws") as ws:
        assert await recv_json(ws) == WELCOME
        await ws.send(json.dumps(payload))
        assert await recv_json(ws) == {"type": "echo", "data": payload}
        await assert_no_message(ws)


async def test_echoes_plain_text(serve: Serve) -> None:
    server = serve("basic_app")
    async with connect(f"{server.ws_url}/ws") as ws:
        assert await recv_json(ws) == WELCOME
        await ws.send("plain text")
        assert await recv_json(ws) == {"type": "echo", "data": "plain text"}
        await ws.send("{not json")
        assert await recv_json(ws) == {"type": "echo", "data": "{not json"}
        await assert_no_message(ws)


async def test_each_connection_gets_only_its_own_echoes_in_order(serve: Serve) -> None:
    server = serve("basic_app")
    async with connect(f"{server.ws_url}/ws") as first, connect(f"{server.ws_url}/ws") as second:
        assert await recv_json(first) == WELCOME
        assert await recv_json(second) == WELCOME
        for n in range(20):
            await first.send(json.dumps({"n": n}))
        await second.send("only mine")
        assert [await recv_json(first) for _ in range(20)] == [{"type": "echo", "data": {"n": n}} for n in range(20)]
        assert await recv_json(second) == {"type": "echo", "data": "only mine"}
        await assert_no_message(first, second)
