"""Delivery on every supported ASGI server, behind the middleware users put around ``send``.

For each server and each way of wrapping ``send`` (see :mod:`tests.e2e.compat_app`): three
reading members and one member that never reads share a room; one reader sends 200 messages of
64 KB. Every reader must get every message exactly once, in order. The member that never reads
is handled as the server allows:

- servers that apply backpressure (uvicorn, hypercorn, granian): the send policy closes it with
  1008 "slow consumer" (it gets an in-order prefix, then the close, once it reads again); with
  a per-send deadline in middleware, the deadline fails *its* send and only its connection is
  dropped (logged once);
- daphne never applies backpressure: it buffers everything for the non-reader, which gets all
  200 messages when it reads (documented in docs/servers.rst).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.clients import StalledReader
from tests.e2e.servers import SERVERS, asgi_server

MIDDLEWARE = ("plain", "asgi", "anyio-group", "anyio-deadline", "asyncio-timeout", "contextvar")
DEADLINES = frozenset({"anyio-deadline", "asyncio-timeout"})
NO_BACKPRESSURE = frozenset({"daphne"})
MESSAGES = 200
BODY = "x" * 64_000  # 12.8 MB in all: more than the kernel buffers (up to 4 MB) take


async def read_all(ws: ClientConnection) -> list[int]:
    """Read the room's messages until the last one; return their numbers in arrival order."""
    seen: list[int] = []
    while not seen or seen[-1] != MESSAGES - 1:
        seen.append(json.loads(await asyncio.wait_for(ws.recv(), 20))["n"])
    return seen


@pytest.mark.e2e
@pytest.mark.parametrize("middleware", MIDDLEWARE)
@pytest.mark.parametrize("server_name", SERVERS)
@pytest.mark.asyncio
async def test_every_reader_gets_every_message_once_in_order(server_name: str, middleware: str, tmp_path: Path) -> None:
    env = {"QAKEAPI_COMPAT_MIDDLEWARE": middleware}
    with asgi_server(server_name, "tests.e2e.compat_app:app", tmp_path, env=env) as server:
        stalled = StalledReader(server, "/ws")
        await stalled.open()
        url = f"{server.ws_url}/ws"
        async with connect(url, max_size=None) as a, connect(url, max_size=None) as b, connect(url, max_size=None) as c:
            for ws in (a, b, c):
                assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "welcome"}
            readers = [asyncio.ensure_future(read_all(ws)) for ws in (a, b, c)]
            for n in range(MESSAGES):
                await a.send(json.dumps({"n": n, "body": BODY}))
            for task in readers:
                assert await asyncio.wait_for(task, 60) == list(range(MESSAGES))

        if server_name in NO_BACKPRESSURE:
            # Everything was buffered for the member that never read: it gets it all now.
            await stalled.read_texts(MESSAGES + 1)
            numbers = [json.loads(text).get("n") for text in stalled.texts()[1:]]
            assert numbers == list(range(MESSAGES))
            output = server.output()
            assert "slow consumer" not in output
            stalled.close_socket()
        elif middleware == "anyio-group":
            # The queue bound is above the burst here (see compat_app.MAX_QUEUE): it is kept.
            await stalled.read_texts(MESSAGES + 1, limit=30)
            numbers = [json.loads(text).get("n") for text in stalled.texts()[1:]]
            assert numbers == list(range(MESSAGES))
            stalled.close_socket()
        elif middleware in DEADLINES:
            # The deadline fired in the stuck member's own send: only its connection was dropped.
            output = await asyncio.to_thread(server.wait_for_output, "sending failed")
            assert output.count("sending failed") == 1, output
            assert "TimeoutError" in output
            stalled.close_socket()
        else:
            await stalled.read_all()
            numbers = [json.loads(text)["n"] for text in stalled.texts()[1:]]
            assert numbers == list(range(len(numbers)))  # an in-order prefix ...
            assert len(numbers) < MESSAGES - 32
            close = stalled.close_frame()
            assert close is not None, "the server never closed the member that did not read"
            assert (close.code, close.reason) == (1008, "slow consumer")
            output = server.output()
            assert output.count("closed as a slow consumer") == 1, output
        assert "Traceback" not in server.output(), server.output()


SENDERS = 3
EACH = 200
CHAT = "y" * 16_000


async def send_and_read(ws: ClientConnection, sender: int) -> list[tuple[int, int]]:
    """Send :data:`EACH` chat messages as fast as the socket takes them while reading the room."""

    async def send() -> None:
        for n in range(EACH):
            await ws.send(json.dumps({"s": sender, "n": n, "body": CHAT}))

    sending = asyncio.ensure_future(send())
    seen: list[tuple[int, int]] = []
    try:
        while len(seen) < SENDERS * EACH:
            message = json.loads(await asyncio.wait_for(ws.recv(), 20))
            seen.append((message["s"], message["n"]))
    finally:
        await sending
    return seen


@pytest.mark.e2e
@pytest.mark.parametrize("server_name", SERVERS)
@pytest.mark.asyncio
async def test_readers_that_keep_up_are_never_dropped_when_the_server_is_the_bottleneck(
    server_name: str, tmp_path: Path
) -> None:
    """Three members send 16 KB messages as fast as they can into a room of 3 readers and 1 non-reader.

    With the default send policy (256 frames), the senders must feel the backpressure (their
    receive loop waits while the readers' outboxes drain), never the readers: each reader gets
    all 600 messages, each sender's in order; only the member that never reads may be dropped.
    """
    env = {"QAKEAPI_COMPAT_MAX_QUEUE": "256"}
    with asgi_server(server_name, "tests.e2e.compat_app:app", tmp_path, env=env) as server:
        stalled = StalledReader(server, "/ws")
        await stalled.open()
        url = f"{server.ws_url}/ws"
        async with connect(url, max_size=None) as a, connect(url, max_size=None) as b, connect(url, max_size=None) as c:
            for ws in (a, b, c):
                assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "welcome"}
            got = await asyncio.wait_for(asyncio.gather(*(send_and_read(ws, n) for n, ws in enumerate((a, b, c)))), 120)
        for seen in got:
            assert sorted(seen) == [(s, n) for s in range(SENDERS) for n in range(EACH)]
            for s in range(SENDERS):
                assert [n for sender, n in seen if sender == s] == list(range(EACH))
        stalled.close_socket()
        output = server.output()
        assert output.count("closed as a slow consumer") <= 1, output
        assert "Traceback" not in output, output
