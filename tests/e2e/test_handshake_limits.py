"""The limits the documented run command turns on, over real sockets (issue 16).

The deployment how-to's uvicorn command (``docs/howto/deploy.rst``) is the one users copy; this
test reads its limit options from the page and runs ``examples_app.basic_app`` with them:

- a connection that sends nothing, or half a handshake, is closed once ``--timeout-keep-alive``
  has passed (:class:`~qakeapi.core.websockets.uvicorn_protocol.DeadlineH11Protocol`), while a
  WebSocket that completed its handshake in time lives on past it; plain uvicorn still holds the
  silent connection after the deadline, which is why the protocol exists;
- a message over ``--ws-max-size`` -- sent plainly, or as a deflate bomb that only grows past the
  limit when decompressed -- is refused with 1009 and the server goes on.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import socket
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import Serve, recv_json
from tests.e2e.servers import ROOT

DEPLOY = ROOT / "docs" / "howto" / "deploy.rst"
LIMITS = ("--http", "--ws", "--ws-max-size", "--timeout-keep-alive")
RELEASING = "qakeapi.core.websockets.uvicorn_protocol:ReleasingWSProtocol"


def documented_limits() -> dict[str, str]:
    """The limit options of the deployment how-to's uvicorn command (its first ``uvicorn main:app``)."""
    line = next(line for line in DEPLOY.read_text(encoding="utf-8").splitlines() if "$ uvicorn main:app" in line)
    words = shlex.split(line.split("$ ", 1)[1])
    options = {words[i]: words[i + 1] for i in range(len(words) - 1) if words[i] in LIMITS}
    assert set(options) == set(LIMITS), f"the documented command lacks a limit: {line}"
    return options


def arguments(options: dict[str, str]) -> tuple[str, ...]:
    return tuple(word for pair in options.items() for word in pair)


def closed_by_server(sock: socket.socket, bound: float) -> bool:
    """Wait up to ``bound`` seconds for the server to close ``sock``; whether it did."""
    sock.settimeout(bound)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_the_readme_and_the_scripts_run_the_documented_limits() -> None:
    options = documented_limits()
    assert options["--ws-max-size"] == "1048576"
    for path in (ROOT / "README.md", ROOT / "scripts" / "demo.sh", DEPLOY):
        text = re.sub(r"\\\n\s*", " ", path.read_text(encoding="utf-8"))  # join continued lines
        commands = [line for line in text.splitlines() if re.search(r"\buvicorn [\w.]+:app\b", line)]
        assert commands, path
        for command in commands:
            for option, value in options.items():
                assert f"{option} {value}" in command, f"{path}: {command!r} lacks {option} {value}"


@pytest.mark.asyncio
async def test_a_handshake_that_never_finishes_is_dropped_at_the_deadline(serve: Serve) -> None:
    options = documented_limits()
    deadline = float(options["--timeout-keep-alive"])
    server = serve("basic_app", args=arguments(options))
    plain = serve("basic_app")  # uvicorn as it comes

    async with connect(f"{server.ws_url}/ws") as ws:  # a handshake in time: not the deadline's
        assert (await recv_json(ws))["type"] == "welcome"
        started = time.monotonic()
        silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
        halves = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
        for sock in halves:
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        held = socket.create_connection(("127.0.0.1", plain.port))
        try:
            for sock in silent + halves:
                assert await asyncio.to_thread(closed_by_server, sock, deadline + 10), "still open past the deadline"
            assert time.monotonic() - started >= deadline - 0.5  # not before it
            assert not await asyncio.to_thread(closed_by_server, held, 1.0)  # plain uvicorn holds it
        finally:
            for sock in [*silent, *halves, held]:
                sock.close()
        await ws.send('"still here"')  # the live WebSocket outlived the deadline
        assert await recv_json(ws) == {"type": "echo", "data": "still here"}
    output = server.wait_for_output("that sent no complete request within")
    assert len(re.findall("sent no complete request within", output)) == 1  # one line, not one per socket


@pytest.mark.asyncio
@pytest.mark.parametrize("shape", ["plain", "deflate bomb"])
async def test_a_message_over_the_documented_size_is_refused(serve: Serve, shape: str) -> None:
    options = documented_limits()
    limit = int(options["--ws-max-size"])
    server = serve("basic_app", args=arguments(options))
    # The bomb: 4 MiB of one byte, about 4 KB once compressed; the plain one goes uncompressed.
    compression = "deflate" if shape == "deflate bomb" else None
    async with connect(f"{server.ws_url}/ws", compression=compression, max_size=None) as ws:
        assert (await recv_json(ws))["type"] == "welcome"
        await ws.send("x" * (limit + 1 if shape == "plain" else 4 * limit))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    async with connect(f"{server.ws_url}/ws") as ws:  # and the server goes on
        assert (await recv_json(ws))["type"] == "welcome"


def rss_mib(pid: int) -> float:
    """The resident memory of process ``pid``, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def deflate_bomb(url: str) -> None:
    """Send 16 MiB of one byte (about 16 KB compressed) and wait for the refusal."""
    async with connect(url, compression="deflate", max_size=None) as ws:
        await recv_json(ws)
        await ws.send("x" * 16 * 1024 * 1024)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 20)


@pytest.mark.asyncio
async def test_wsproto_lets_go_of_refused_messages_with_the_releasing_protocol(serve: Serve) -> None:
    # uvicorn's wsproto keeps a refused message's buffer until a cyclic GC (measured +209-257 MiB).
    limit = ("--ws-max-size", "1048576")
    plain = serve("basic_app", args=("--ws", "wsproto", *limit))
    releasing = serve("basic_app", args=("--ws", RELEASING, *limit))
    grown = {}
    for name, server in (("plain", plain), ("releasing", releasing)):
        before = rss_mib(server.process.pid)
        for _ in range(2):
            await asyncio.gather(*(deflate_bomb(f"{server.ws_url}/ws") for _ in range(10)))
        grown[name] = rss_mib(server.process.pid) - before
    assert grown["releasing"] < 48, grown
    assert grown["plain"] > 96, grown  # what the protocol is for: if uvicorn fixes it, this says so
