"""Cluster fan-out: QakeAPI vs python-socketio (``AsyncRedisManager``), 2 nodes x 100 clients, one Redis.

For each app, in interleaved rounds: a private ``redis-server``, two uvicorn nodes pinned to CPU 0,
and a picows load generator (this process) on CPU 1 with ``--clients`` connections per node. One
client of node 1 sends ``--messages`` messages, keeping at most ``--window`` messages ahead of the
slowest client; every client of both nodes must receive every one. The figure is deliveries per
second from the first send to the last delivery.

Both apps get the same raw WebSocket client: QakeAPI's speaks plain text; python-socketio's
speaks Engine.IO 4 / Socket.IO 5 over a WebSocket (``40`` to join the namespace, ``42[...]``
events, ``3`` answering pings), so the client costs the same for both.

Run from the repository root (needs ``pip install python-socketio picows uvloop``)::

    python -m benchmarks.cluster_fanout --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from benchmarks.loadgen import server_cpu

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
APPS = {
    "qakeapi": "benchmarks.cluster_qakeapi_app:app",
    "qakeapi-baseline": "benchmarks.cluster_qakeapi_app:app",
    "qakeapi-history": "benchmarks.cluster_qakeapi_app:app",
    "socketio": "benchmarks.cluster_socketio_app:app",
}
PATHS = {
    "qakeapi": "/ws",
    "qakeapi-baseline": "/ws",
    "qakeapi-history": "/ws",
    "socketio": "/socket.io/?EIO=4&transport=websocket",
}
ENV = {"qakeapi-history": {"QAKEAPI_BENCH_HISTORY": "1"}}
"""``qakeapi-history``: the same app with every message published to a room that keeps a history."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def process(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Member(WSListener):  # type: ignore[misc]
    """One client: waits until it is registered, then counts the messages it receives."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.transport: WSTransport | None = None
        self.ready = False
        self.received = 0
        self.last = 0.0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        data = frame.get_payload_as_bytes()
        if self.protocol == "socketio":
            if data.startswith(b"42"):
                self.received += 1
                self.last = time.perf_counter()
            elif data.startswith(b"0{"):
                transport.send(WSMsgType.TEXT, b"40")
            elif data.startswith(b"40"):
                self.ready = True
            elif data == b"2":
                transport.send(WSMsgType.TEXT, b"3")
        elif self.ready:
            self.received += 1
            self.last = time.perf_counter()
        else:
            self.ready = data == b"w"

    def send(self, n: int) -> None:
        assert self.transport is not None
        if self.protocol == "socketio":
            self.transport.send(WSMsgType.TEXT, b'42["msg","m%d"]' % n)
        else:
            self.transport.send(WSMsgType.TEXT, b"m%d" % n)


def nodes_cpu(pids: list[int]) -> float | None:
    """The CPU seconds the nodes have used so far, together (``None`` if one cannot be read)."""
    readings = [server_cpu(pid) for pid in pids]
    return None if None in readings else sum(r for r in readings if r is not None)


async def until(condition: Any, timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.002)
    return True


async def measure(
    protocol: str, ports: list[int], clients: int, messages: int, window: int, pids: list[int]
) -> dict[str, Any]:
    members: list[Member] = []
    for port in ports:
        for _ in range(clients):
            _, member = await ws_connect(lambda: Member(protocol), f"ws://127.0.0.1:{port}{PATHS[protocol]}")
            members.append(member)
    if not await until(lambda: all(m.ready for m in members), 30):
        raise RuntimeError(f"{sum(m.ready for m in members)} of {len(members)} clients registered")
    await asyncio.sleep(0.5)  # let the cluster settle (subscriptions, heartbeats)
    sender = members[0]
    expected = messages * len(members)
    start, cpu = time.perf_counter(), nodes_cpu(pids)
    for n in range(messages):
        if n >= window and not await until(lambda n=n: min(m.received for m in members) > n - window, 30):
            break
        sender.send(n)
    await until(lambda: sum(m.received for m in members) >= expected, 60)
    delivered = sum(m.received for m in members)
    used = nodes_cpu(pids)
    cpu_us = None if cpu is None or used is None or not delivered else round((used - cpu) * 1e6 / delivered, 2)
    end = max(m.last for m in members)
    for m in members:
        if m.transport is not None:
            m.transport.disconnect()
    return {
        "delivered": delivered,
        "expected": expected,
        "per_second": delivered / (end - start),
        "server_cpu_us": cpu_us,  # both nodes' CPU time (user + system) per delivery
    }


def run_one(app: str, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    redis_port = free_port()
    redis = shutil.which("redis-server")
    assert redis is not None, "redis-server is not on PATH"
    ports = [free_port(), free_port()]
    with process(
        ["taskset", "-c", "1", redis, "--port", str(redis_port), "--save", "", "--appendonly", "no"],
        logs / f"redis-{app}.log",
    ):
        wait_port(redis_port)
        url = f"redis://127.0.0.1:{redis_port}"
        path = args.baseline if app == "qakeapi-baseline" else args.qakeapi_path
        extra = {"PYTHONPATH": f"{path}:{ROOT}"} if path else {}
        extra.update(ENV.get(app, {}))
        uvicorn = [
            "taskset",
            "-c",
            args.server_cpu,
            sys.executable,
            "-m",
            "uvicorn",
            APPS[app],
            "--log-level",
            "warning",
        ]
        with contextlib.ExitStack() as stack:
            nodes = [
                stack.enter_context(
                    process(
                        [*uvicorn, "--port", str(port)],
                        logs / f"{app}-{n}.log",
                        {"QAKEAPI_REDIS_URL": url, "QAKEAPI_NODE_ID": f"node-{n}", **extra},
                    )
                )
                for n, port in enumerate(ports, start=1)
            ]
            for port in ports:
                wait_port(port)
            protocol = "socketio" if app == "socketio" else "qakeapi"
            pids = [node.pid for node in nodes]
            result = uvloop.run(measure(protocol, ports, args.clients, args.messages, args.window, pids))
            assert all(node.poll() is None for node in nodes)
            return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=100, help="clients per node")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--window", type=int, default=200, help="how far the sender may run ahead of the slowest")
    parser.add_argument(
        "--apps", default="qakeapi,socketio", help="of qakeapi, qakeapi-history, qakeapi-baseline, socketio"
    )
    parser.add_argument(
        "--baseline", default="", help="qakeapi-baseline: the QakeAPI checkout it serves (before a change)"
    )
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument(
        "--qakeapi-path", default="", help="a QakeAPI checkout to serve instead of this one (to compare versions)"
    )
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {int(args.client_cpu)})
    logs = Path(tempfile.mkdtemp(prefix="qakeapi-cluster-bench-"))
    results: dict[str, list[dict[str, Any]]] = {app: [] for app in args.apps.split(",")}
    apps = list(results)
    for round_ in range(args.rounds):
        shift = round_ % len(apps)
        for app in apps[shift:] + apps[:shift]:  # rotated: each app runs first in turn
            result = run_one(app, args, logs)
            results[app].append(result)
            print(json.dumps({"round": round_ + 1, "app": app, **result}), flush=True)
    medians = {app: statistics.median(r["per_second"] for r in runs) for app, runs in results.items()}
    cpu = {
        app: statistics.median(r["server_cpu_us"] for r in runs if r["server_cpu_us"] is not None)
        for app, runs in results.items()
        if any(r["server_cpu_us"] is not None for r in runs)
    }
    complete = {app: all(r["delivered"] == r["expected"] for r in runs) for app, runs in results.items()}
    print(
        json.dumps(
            {
                "median_deliveries_per_second": medians,
                "median_server_cpu_us_per_delivery": cpu,
                "complete": complete,
                "logs": str(logs),
            }
        )
    )
    for app in apps:
        for other in apps:
            if app != other and (app, other) in COMPARED:
                spread(app, other, results)


COMPARED = {("qakeapi", "socketio"), ("qakeapi", "qakeapi-baseline"), ("qakeapi-history", "qakeapi")}


def spread(app: str, other: str, results: dict[str, list[dict[str, Any]]]) -> None:
    """Print ``app``'s rate and CPU per delivery against ``other``'s, round by round: min / median / max."""
    pairs = list(zip(results[app], results[other], strict=True))
    rate = sorted(a["per_second"] / b["per_second"] for a, b in pairs)
    cpu = sorted(a["server_cpu_us"] / b["server_cpu_us"] for a, b in pairs if a["server_cpu_us"] and b["server_cpu_us"])
    print(
        f"{app} / {other}: deliveries/s {rate[0]:.2f} / {statistics.median(rate):.2f} / {rate[-1]:.2f}x"
        + (f"; CPU per delivery {cpu[0]:.2f} / {statistics.median(cpu):.2f} / {cpu[-1]:.2f}x" if cpu else "")
        + f" (min / median / max over {len(rate)} rounds)"
    )


if __name__ == "__main__":
    main()
