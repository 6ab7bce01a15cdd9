"""Security figures that tests must not assert: a bystander's latency under a flood, and revocation time.

The tests (``tests/e2e/test_security_limits.py``, ``test_security_auth.py``) assert what must
hold on any machine: a flooder is closed with 1008 and then refused with 429, the bystander gets
every reply in order, a revoked user's sockets close on every node. How *fast* is measured here,
in rounds, with the spread reported (the machine is shared: read the medians and the range):

- ``flood``: ``examples_app.auth_app`` under uvicorn; a bystander's round trip p99 unloaded,
  while N processes merely spin on the CPU (the scheduling floor of this machine), and while N
  clients flood it from other loopback addresses (:data:`FLOODER`);
- ``revoke``: two ``auth_app`` nodes on one Redis; the time from ``POST /api/revoke`` on node 1
  to the close frames (4003) of the user's sockets on both nodes.

Run from the repository root (Redis on 127.0.0.1:6379 for ``revoke``)::

    python -m benchmarks.security --rounds 5              # both, ~2 min
    python -m benchmarks.security --only flood --flooders 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from benchmarks.server import ROOT, _free_port

__all__ = ["FLOODER", "SPINNER", "main"]

FLOODER = r"""
import asyncio, base64, os, struct, sys

def frame(text):
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(text)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text))

async def main(port, seconds, address):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    burst = frame(b"x") * 5000
    key = base64.b64encode(os.urandom(16)).decode()
    handshake = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    while loop.time() < deadline:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
        writer.write(handshake)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1].decode()
        if status != "101":  # refused: ignore Retry-After, try again at once
            print("status", status, flush=True)
            writer.close()
            continue
        writer.write(burst)
        data, close = b"", None
        while close is None:  # the server's frames (never longer than 125 bytes here) up to its close
            chunk = await reader.read(65536)
            if not chunk:
                break
            data += chunk
            while len(data) >= 2 and len(data) >= 2 + (data[1] & 0x7F):
                opcode, size = data[0] & 0x0F, data[1] & 0x7F
                payload, data = data[2 : 2 + size], data[2 + size :]
                if opcode == 8:
                    close = struct.unpack("!H", payload[:2])[0], payload[2:].decode()
        if close is not None:
            print(*close, flush=True)
            writer.write(b"\x88\x82\0\0\0\0" + struct.pack("!H", close[0]))  # the closing handshake
        writer.close()

asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]))
"""
"""An attacker's tool (``python -c FLOODER PORT SECONDS ADDRESS``): for ``SECONDS``, from the local
``ADDRESS``, it connects to ``/ws``, writes 5,000 pre-encoded one-byte text frames at once, reads
until the server's close frame (prints its code and reason) and reconnects at once; a refused
handshake prints ``status <code>`` and it tries again at once, ignoring ``Retry-After``.
Pre-encoded frames on a raw socket model a tool written to flood, and keep the attacker's own CPU
use low on a shared machine."""

SPINNER = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end: pass"
"""A process that only burns a core for ``seconds``: a flooder's CPU contention, without the flood."""


@contextmanager
def auth_app(env: dict[str, str], logs: Path) -> Iterator[int]:
    """``examples_app.auth_app`` under uvicorn on a free port; yields the port."""
    port = _free_port()
    environment = {**os.environ, **env, "PYTHONPATH": ROOT}
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "examples_app.auth_app:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with (logs / f"auth-{port}.log").open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
                break
            except OSError as exc:
                if getattr(exc, "code", None):  # an HTTP error status: it is serving
                    break
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"auth_app did not start; see {logs}") from exc
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def token(port: int, user: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/token",
        data=json.dumps({"name": user}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        value: str = json.load(response)["token"]
        return value


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


async def round_trips(ws: ClientConnection, count: int) -> list[float]:
    times = []
    for n in range(count):
        started = time.perf_counter()
        await ws.send(json.dumps(n))
        await ws.recv()
        times.append(time.perf_counter() - started)
        await asyncio.sleep(0.002)
    return times


async def bystander_p99(port: int, count: int, during: list[asyncio.subprocess.Process] | None = None) -> float:
    async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.recv()  # auth_required
        await round_trips(ws, 50)
        value = p99(await round_trips(ws, count))
    for process in during or []:
        await process.communicate()
    return value


async def flood_round(port: int, flooders: int, round_number: int) -> dict[str, float]:
    """One round: the bystander's p99 unloaded, while ``flooders`` processes spin, while they flood."""
    unloaded = await bystander_p99(port, 300)
    spinners = [await asyncio.create_subprocess_exec(sys.executable, "-c", SPINNER, "1.5") for _ in range(flooders)]
    spinning = await bystander_p99(port, 300, spinners)
    attackers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            FLOODER,
            str(port),
            "4",
            f"127.0.{1 + round_number}.{2 + n}",
            stdout=asyncio.subprocess.DEVNULL,
        )
        for n in range(flooders)
    ]
    flooded = await bystander_p99(port, 1000, attackers)
    return {"unloaded_ms": unloaded * 1000, "spinning_ms": spinning * 1000, "flooded_ms": flooded * 1000}


async def revoke_round(ports: tuple[int, int], user: str) -> float:
    """Seconds from ``POST /api/revoke`` on the first node to the last close frame, on both nodes."""
    credential = token(ports[0], user)
    sockets = [await connect(f"ws://127.0.0.1:{port}/ws?token={credential}") for port in (*ports, ports[1])]
    for ws in sockets:
        await ws.recv()  # the welcome

    async def closed(ws: ClientConnection) -> float:
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            return time.perf_counter()

    waits = [asyncio.ensure_future(closed(ws)) for ws in sockets]
    started = time.perf_counter()
    request = urllib.request.Request(
        f"http://127.0.0.1:{ports[0]}/api/revoke", method="POST", headers={"Authorization": f"Bearer {credential}"}
    )
    await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=10).close())
    ends = await asyncio.wait_for(asyncio.gather(*waits), 30)
    return max(ends) - started


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} (range {min(values):.2f}-{max(values):.2f}, n={len(values)})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--flooders", type=int, default=1)
    parser.add_argument("--only", choices=["flood", "revoke"])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--json", type=Path, help="also write every round here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="qakeapi-bench-security-") as scratch, ExitStack() as stack:
        logs = Path(scratch)
        if args.only in (None, "flood"):
            port = stack.enter_context(auth_app({"QAKEAPI_AUTH_TIMEOUT": "none"}, logs))
            rounds = []
            for n in range(args.rounds):
                # a fresh address per round and flooder: the last round's penalty must not carry over
                rounds.append(asyncio.run(flood_round(port, args.flooders, n)))
                print(f"flood round {n + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in rounds[-1].items()), flush=True)
            results["flood"] = rounds
            for key in ("unloaded_ms", "spinning_ms", "flooded_ms"):
                print(f"bystander p99 {key}: {spread([r[key] for r in rounds])}")
            ratios = [r["flooded_ms"] / max(r["unloaded_ms"], r["spinning_ms"]) for r in rounds]
            print(f"flooded / max(unloaded, spinning): {spread(ratios)}")
        if args.only in (None, "revoke"):
            env = {"QAKEAPI_REDIS_URL": args.redis, "QAKEAPI_SECRET_KEY": secrets.token_urlsafe(32)}
            ports = (
                stack.enter_context(auth_app({**env, "QAKEAPI_NODE_ID": "bench-1"}, logs)),
                stack.enter_context(auth_app({**env, "QAKEAPI_NODE_ID": "bench-2"}, logs)),
            )
            times = [asyncio.run(revoke_round(ports, f"user-{n}")) * 1000 for n in range(args.rounds)]
            results["revoke_ms"] = times
            print(f"revocation on 2 nodes, ms: {spread(times)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
