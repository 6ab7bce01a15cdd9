"""Limits over the network: ``examples_app.auth_app`` under uvicorn, attacked by real clients.

Figures: a flooding client is closed with 1008 after its burst and logged once, and a bystander
is served throughout (its p99 round trip is measured, not asserted: on this 2-core machine the
three flooder processes compete for the CPU with the server, and uvicorn keeps parsing a
flooder's frames after the close until the client answers it, which no ASGI app can shorten);
the per-IP cap refuses the connection past it; 20 deflate bombs
(16 MiB of text, about 16 KiB on the wire each) against ``--ws-max-size 1048576`` grow the
server's RSS by less than 48 MiB (without the transport limit each would be assembled: 16 MiB+).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from tests.e2e.conftest import Serve, recv_json
from tests.e2e.servers import Server

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

AUTH_REQUIRED = {"type": "auth_required", "message": "Please authenticate", "reason": "missing"}


async def closed_by_server(ws: ClientConnection, timeout: float = 5.0) -> tuple[int, str]:
    """Read (bounded) until the server closes ``ws``; return the code and reason it sent."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosedError) as closed:  # noqa: PT012 - messages may come first
        while True:
            await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
    assert closed.value.rcvd is not None, "the server dropped the connection without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


def rss_kib(server: Server) -> int:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def round_trips(ws: ClientConnection, count: int) -> list[float]:
    times = []
    for n in range(count):
        started = time.perf_counter()
        await ws.send(json.dumps(n))
        assert await recv_json(ws) == {"type": "error", "message": "Authentication required"}
        times.append(time.perf_counter() - started)
        await asyncio.sleep(0.002)
    return times


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


FLOODER = """
import asyncio, sys
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

async def main(url, seconds):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        async with connect(url) as ws:
            await ws.recv()
            try:
                for _ in range(5000):
                    await ws.send("x")
                while True:
                    await ws.recv()
            except ConnectionClosed as exc:
                if exc.rcvd is not None:
                    print(exc.rcvd.code, exc.rcvd.reason, flush=True)

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""
"""A client process that, for ``seconds``, floods ``url`` with 5,000 messages at once, then reads
until the server closes the connection, prints the close code and reason, and reconnects."""


async def test_a_flood_is_closed_with_1008_logged_once_and_others_are_served(serve: Serve) -> None:
    server = serve("auth_app", env={"QAKEAPI_AUTH_TIMEOUT": "none"})
    async with connect(f"{server.ws_url}/ws") as bystander:
        assert await recv_json(bystander) == AUTH_REQUIRED
        await round_trips(bystander, 50)  # warm up
        unloaded = p99(await round_trips(bystander, 300))
        flooders = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", FLOODER, f"{server.ws_url}/ws", "4", stdout=asyncio.subprocess.PIPE
            )
            for _ in range(3)
        ]
        await asyncio.sleep(0.5)  # the floods are under way
        loaded = p99(await round_trips(bystander, 300))
        outputs = [(await asyncio.wait_for(f.communicate(), 15))[0].decode() for f in flooders]
    closes = {line for output in outputs for line in output.splitlines()}
    assert closes == {"1008 rate limit exceeded"}
    print(f"bystander p99: {unloaded * 1000:.1f} ms unloaded, {loaded * 1000:.1f} ms while 3 clients flood")
    server.stop()
    assert server.output().count("messages a second (bursts of 1000)") == 1  # one client address: one line


async def test_connections_per_ip_are_capped(serve: Serve) -> None:
    server = serve("auth_app", env={"QAKEAPI_MAX_CONNECTIONS_PER_IP": "3"})
    url = f"{server.ws_url}/ws"
    async with connect(url) as one, connect(url) as two, connect(url) as three:
        for ws in (one, two, three):
            assert await recv_json(ws) == AUTH_REQUIRED
        for _ in range(5):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url):
                    pass
            assert refused.value.response.status_code == 429
        await one.close()
        async with connect(url) as four:
            assert await recv_json(four) == AUTH_REQUIRED
    server.stop()
    assert server.output().count("(max_connections_per_ip)") == 1


@pytest.mark.parametrize("implementation", ["websockets-sansio", "websockets"])
async def test_deflate_bombs_are_stopped_at_the_transport(serve: Serve, implementation: str) -> None:
    server = serve("auth_app", args=("--ws", implementation, "--ws-max-size", str(1 << 20)))
    async with connect(f"{server.ws_url}/ws") as warm:
        assert await recv_json(warm) == AUTH_REQUIRED
    baseline = rss_kib(server)
    bomb = "x" * (16 << 20)
    for _ in range(20):
        async with connect(f"{server.ws_url}/ws", compression="deflate", max_size=None) as ws:
            assert await recv_json(ws) == AUTH_REQUIRED
            await ws.send(bomb)
            code, _reason = await closed_by_server(ws)
            assert code == 1009
    growth_mib = (rss_kib(server) - baseline) / 1024
    print(f"{implementation}: RSS grew by {growth_mib:.1f} MiB under 20 deflate bombs")
    assert growth_mib < 48, f"RSS grew by {growth_mib:.0f} MiB"
    async with connect(f"{server.ws_url}/ws") as after:
        assert await recv_json(after) == AUTH_REQUIRED
