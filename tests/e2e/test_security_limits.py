"""Limits over the network: ``examples_app.auth_app`` under uvicorn, attacked by real clients.

A flooding client is closed with 1008 after its burst and logged once; at its second flood its
address is refused (HTTP 429, ``Retry-After``) for the penalty, and a bystander gets every reply, in order,
while one (or three) clients flood (its latency meanwhile: ``benchmarks/security.py``); the
per-IP cap refuses the connection past it; 20 deflate bombs (16 MiB of text, about 16 KiB on the
wire each) against ``--ws-max-size 1048576`` grow the server's RSS by less than 48 MiB (without
the transport limit each would be assembled: 16 MiB+).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from benchmarks.security import FLOODER
from tests.e2e.conftest import Serve, generate_token, recv_json
from tests.e2e.servers import Server

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

HANG = 10.0
"""Seconds that only catch a hang."""

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


async def echoes_in_order(ws: ClientConnection, count: int, user: str) -> None:
    """Send ``count`` numbered messages one at a time; each reply must be the echo of the one just sent."""
    for n in range(count):
        await ws.send(json.dumps(n))
        assert await recv_json(ws, timeout=HANG) == {"type": "message", "data": n, "user": user}
        await asyncio.sleep(0.002)


async def flood(server: Server, addresses: list[str], seconds: float) -> list[str]:
    """A bystander (from 127.0.0.1) talks while clients flood from ``addresses``; the flooders' output.

    The bystander starts before the flooders do, so its messages cover their first (and only)
    burst as well as their reconnects.
    """
    bystander_token = await generate_token(server, "bystander")
    async with connect(f"{server.ws_url}/ws?token={bystander_token}") as bystander:
        assert (await recv_json(bystander))["type"] == "welcome"
        flooders = [
            await asyncio.create_subprocess_exec(
                *(sys.executable, "-c", FLOODER, str(server.port), str(seconds), address),
                stdout=asyncio.subprocess.PIPE,
            )
            for address in addresses
        ]
        await echoes_in_order(bystander, 1000, "bystander")
    outputs = [(await asyncio.wait_for(f.communicate(), seconds + HANG))[0].decode() for f in flooders]
    return [line for output in outputs for line in output.splitlines()]


@pytest.mark.parametrize("flooders", [1, 3])
async def test_a_flood_is_closed_with_1008_then_refused_and_others_keep_every_reply(
    serve: Serve, flooders: int
) -> None:
    """A flooder gets two bursts: 1008 twice, then its address is refused (429, Retry-After)
    for the penalty, so reconnecting buys nothing more; meanwhile a bystander gets every reply,
    in order.

    How much the flood costs the bystander (its p99 round trip) is measured by
    ``python -m benchmarks.security --only flood`` and reported in docs/benchmarks.rst.
    """
    server = serve("auth_app", env={"QAKEAPI_AUTH_TIMEOUT": "none"})
    addresses = [f"127.0.0.{2 + n}" for n in range(flooders)]
    lines = await flood(server, addresses, seconds=4.0)
    # two bursts each (the address is refused at its second flood); the penalty (10 s) outlasts the flood
    assert lines.count("1008 rate limit exceeded") == 2 * flooders
    assert set(lines) == {"1008 rate limit exceeded", "status 429"}  # they did try again, and were refused

    with pytest.raises(InvalidStatus) as refused:  # any client from a penalized address, for the rest of it
        async with connect(f"{server.ws_url}/ws", local_addr=(addresses[0], 0)):
            pass
    assert refused.value.response.status_code == 429
    assert 1 <= int(refused.value.response.headers["Retry-After"]) <= 10
    server.stop()
    output = server.output()
    assert output.count("messages a second (bursts of 1000)") == flooders  # logged once per address
    assert output.count("exceeded the rate limit (HTTP 429, Retry-After)") == flooders


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
