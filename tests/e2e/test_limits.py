"""Message size limits over the network: an oversized frame closes its connection with 1009
(message too big) and the server keeps serving everyone else."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError
from websockets.frames import CloseCode

from tests.e2e.conftest import Serve, assert_no_message, recv_json

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

WELCOME = {"type": "welcome", "message": "Connected!"}


async def closed_by_server(ws: ClientConnection) -> tuple[int, str]:
    """Wait (bounded) until the server closes ``ws``; return the close code and reason it sent."""
    with pytest.raises(ConnectionClosedError) as closed:
        await recv_json(ws)
    assert closed.value.rcvd is not None, "the server dropped the connection without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def assert_echoes(ws: ClientConnection, text: str) -> None:
    await ws.send(json.dumps({"text": text}))
    assert await recv_json(ws) == {"type": "echo", "data": {"text": text}}


async def test_uvicorn_ws_max_size_closes_with_1009_and_the_server_keeps_serving(serve: Serve) -> None:
    server = serve("basic_app", args=("--ws-max-size", "1024"))
    async with connect(f"{server.ws_url}/ws") as bystander, connect(f"{server.ws_url}/ws") as ws:
        for session in (bystander, ws):
            assert await recv_json(session) == WELCOME
        await assert_echoes(ws, "x" * 900)  # under the limit
        await ws.send("x" * 1025)
        code, _reason = await closed_by_server(ws)
        assert code == CloseCode.MESSAGE_TOO_BIG
        await assert_echoes(bystander, "still served")
        await assert_no_message(bystander)
    async with connect(f"{server.ws_url}/ws") as fresh:
        assert await recv_json(fresh) == WELCOME
        await assert_echoes(fresh, "new connection")
    assert server.process.poll() is None


async def test_handler_max_message_size_closes_with_1009_and_the_server_keeps_serving(serve: Serve) -> None:
    server = serve("basic_app")  # uvicorn's own limit (16 MiB) is above the handler's 1 MiB
    limit = 1 << 20
    async with connect(f"{server.ws_url}/ws", max_size=None) as ws:
        assert await recv_json(ws) == WELCOME
        await ws.send("x" * (limit + 1))
        assert await closed_by_server(ws) == (CloseCode.MESSAGE_TOO_BIG, f"message exceeds {limit} bytes")
    async with connect(f"{server.ws_url}/ws") as fresh:
        assert await recv_json(fresh) == WELCOME
        await assert_echoes(fresh, "new connection")
    assert server.process.poll() is None
