"""The slow-consumer policy over real sockets: one member that stops reading in a busy room.

With uvicorn's keepalive on (short intervals here, so that pings are in flight while the
member stalls): the member, once it reads again within the keepalive window, gets the room's
messages in order, then 1008 "slow consumer" (not uvicorn's 1011), nothing is logged at ERROR,
and the server's socket to it is gone once it reads. A member that never reads again cannot be
dropped through ASGI on uvicorn's own protocols (docs/servers.rst); on QakeAPI's
:data:`ABORTABLE` protocol its socket is reset after the slow-consumer close. Waits here are
bounds that catch a hang (:data:`HANG`); how soon these happen is the send policy's
``close_timeout``, a setting, not a figure a test can hold on a loaded machine.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.clients import StalledReader
from tests.e2e.servers import Server, uvicorn_server

MESSAGES = 1000
HANG = 15.0
"""Seconds that only catch a hang (the default close_timeout is 3 s)."""
KEEPALIVE = ("--ws-ping-interval", "1", "--ws-ping-timeout", "5")
"""uvicorn's keepalive, on: a ping every second, 5 s for the pong (the stalled member reads again before that)."""
ABORTABLE = "qakeapi.core.websockets.uvicorn_protocol:AbortableWebSocketProtocol"
"""QakeAPI's uvicorn protocol (``--ws`` takes an import string): it can abort a transport."""
PAYLOAD = "x" * 64_000  # large frames fill the stalled reader's buffers quickly


async def read_chat(ws: ClientConnection, count: int) -> list[str]:
    """Read until ``count`` chat messages arrived; return their texts."""
    texts: list[str] = []
    while len(texts) < count:
        data = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if data["type"] == "chat_message":
            texts.append(data["message"])
    return texts


@pytest.mark.e2e
@pytest.mark.asyncio
async def test_a_reader_that_stops_is_closed_with_1008_and_the_room_keeps_its_pace(tmp_path: Path) -> None:
    with uvicorn_server("examples_app.chat_app:app", tmp_path) as server:
        url = f"{server.ws_url}/ws"
        stalled = StalledReader(server)
        await stalled.open()
        async with connect(url, max_size=None) as sender, connect(url, max_size=None) as reader:
            for ws in (sender, reader):
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "welcome"
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "room_joined"
            bodies = [f"{n:04d}{PAYLOAD}" for n in range(MESSAGES)]
            readers = [asyncio.ensure_future(read_chat(ws, MESSAGES)) for ws in (sender, reader)]
            for body in bodies:
                await sender.send(json.dumps({"type": "chat_message", "room": "general", "message": body}))
            for task in readers:  # every reading member gets every message, in order
                assert await asyncio.wait_for(task, 60) == bodies

        await stalled.read_all()  # the stalled member reads again: a prefix of the room, then the close
        received = stalled.chat_messages()
        assert received == bodies[: len(received)]
        assert len(received) < MESSAGES
        close = stalled.close_frame()
        assert close is not None, "the server never closed the stalled connection"
        assert (close.code, close.reason) == (1008, "slow consumer")
        assert "closed as a slow consumer" in server.output()


def server_sockets(server_port: int, client_port: int) -> list[str]:
    """The TCP states (hex codes of /proc/net/tcp) of the server's sockets to ``client_port``,
    leaving out TIME_WAIT and CLOSE (nothing left in any process)."""
    states = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        ours = int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port
        if ours and state not in ("06", "07"):
            states.append(state)
    return states


@asynccontextmanager
async def a_stalled_member(server: Server) -> AsyncIterator[tuple[StalledReader, int, ClientConnection, list[str]]]:
    """A member of the chat that stopped reading, and a member that sent 400 messages of 64 KB to
    the room (more than the kernel buffers and the queue, 256, hold) until the server closed the
    first as a slow consumer; yields the stalled member, its port, the sender and the texts."""
    stalled = StalledReader(server)
    await stalled.open()
    client_port = stalled.writer.get_extra_info("sockname")[1]
    async with connect(f"{server.ws_url}/ws", max_size=None) as sender:
        for _ in range(2):  # welcome, room_joined
            await asyncio.wait_for(sender.recv(), 5)
        bodies = [f"{n:04d}{PAYLOAD}" for n in range(400)]
        for body in bodies:
            await sender.send(json.dumps({"type": "chat_message", "room": "general", "message": body}))
        await asyncio.to_thread(server.wait_for_output, "closed as a slow consumer")
        yield stalled, client_port, sender, bodies


@pytest.mark.e2e
@pytest.mark.asyncio
@pytest.mark.parametrize("implementation", ["websockets-sansio", "wsproto", ABORTABLE])
async def test_with_keepalive_on_the_evicted_member_gets_1008_and_its_socket_goes(
    tmp_path: Path, implementation: str
) -> None:
    args = ("--ws", implementation, *KEEPALIVE)
    with uvicorn_server("examples_app.chat_app:app", tmp_path, args=args) as server:
        async with a_stalled_member(server) as (stalled, client_port, _sender, bodies):
            assert server_sockets(server.port, client_port) == ["01"]  # ESTABLISHED: it holds what it was not sent
            await asyncio.sleep(1.5)  # a keepalive ping is in flight, unanswered

            await stalled.read_all()  # reads again: a prefix of the room, the ping, then the close
            read_at = time.monotonic()
            close = stalled.close_frame()
            assert close is not None, "the server never closed the stalled connection"
            assert (close.code, close.reason) == (1008, "slow consumer")
            received = stalled.chat_messages()
            assert received == bodies[: len(received)]
            while server_sockets(server.port, client_port):
                assert time.monotonic() - read_at < HANG, server_sockets(server.port, client_port)
                await asyncio.sleep(0.05)
        output = server.output()
        assert "closed as a slow consumer" in output
        assert "ERROR" not in output
        assert "Traceback" not in output


async def read_until_the_end(stalled: StalledReader) -> None:
    while await asyncio.wait_for(stalled.reader.read(1 << 20), 10):
        pass


CLOSE_TIMEOUT = 3.0
"""The default send policy's ``close_timeout``: the abort comes after it."""


@pytest.mark.e2e
@pytest.mark.asyncio
@pytest.mark.parametrize("implementation", [ABORTABLE, "websockets-sansio"])
async def test_a_member_that_never_reads_again_is_aborted_on_the_abortable_protocol(
    tmp_path: Path, implementation: str
) -> None:
    args = ("--ws", implementation)  # uvicorn's default keepalive (20 s): it plays no part here
    with uvicorn_server("examples_app.chat_app:app", tmp_path, args=args) as server:
        async with a_stalled_member(server) as (stalled, client_port, sender, _bodies):
            closed_at = time.monotonic()
            if implementation == ABORTABLE:
                while server_sockets(server.port, client_port):
                    assert time.monotonic() - closed_at < HANG, server_sockets(server.port, client_port)
                    await asyncio.sleep(0.05)
                await asyncio.to_thread(server.wait_for_output, "aborting its transport")
                with pytest.raises(ConnectionResetError):  # what the member finds when it reads at last
                    await read_until_the_end(stalled)
            else:  # uvicorn's own protocol cannot drop it: the socket holds on with its unsent megabytes
                await asyncio.sleep(CLOSE_TIMEOUT + 1.5)  # past the close_timeout, when the abortable one resets
                assert server_sockets(server.port, client_port) == ["01"]
            stalled.close_socket()
            await sender.send(json.dumps({"type": "chat_message", "room": "general", "message": "still here"}))
            while json.loads(await asyncio.wait_for(sender.recv(), 10)).get("message") != "still here":
                pass  # the room goes on for the others
        output = server.output()
        assert "ERROR" not in output
        assert "Traceback" not in output
        assert output.count("aborting its transport") == (implementation == ABORTABLE)
