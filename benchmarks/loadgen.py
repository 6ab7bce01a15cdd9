"""WebSocket load generator for the benchmark apps (picows client on uvloop).

Run it on its own CPU, apart from the server: ``taskset -c 1 python -m benchmarks.loadgen MODE URL ...``.
It prints one JSON line with the figures (``hold`` prints a second one when it lets go).

Modes (the URL is the endpoint: ``ws://host:port/ws`` for echo and hold, ``/room`` for the others):

``echo``
    ``--conns`` connections, each a closed loop: send ``{"type": "message", "text": "Hello"}``,
    wait for the reply, send again. After ``--warmup`` seconds, replies are counted for
    ``--seconds``: messages per second and p50/p99 round-trip latency in ms.
``fanout``
    A room of ``--conns`` members, one of them the sender. The sender sends ``--messages``
    messages; every member (sender included) must receive every one. Reports deliveries per
    second (first send to last delivery) and ``delivered == expected``.
``hold``
    Opens ``--conns`` idle connections and waits for every welcome, prints a line, then holds
    them until stdin closes (or ``--seconds`` pass). Closes with RST so no TIME_WAIT piles up.
``slow``
    A room of ``--conns`` members that read, one member that stops reading after its welcome
    (reading paused on its transport, a 4 KiB receive buffer), and a sender publishing
    ``--messages`` messages of ``--size`` bytes. For ``--seconds`` it watches the readers'
    deliveries (rate, completeness, the longest stall) and the stuck member's TCP state; then it
    resumes reading on the stuck member to find whether the server closed it, and with which code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

__all__ = ["echo", "fanout", "hold", "main", "slow"]

MESSAGE = json.dumps({"type": "message", "text": "Hello"}, separators=(",", ":")).encode()
MAX_FRAME = 1 << 22
TCP_STATES = {1: "ESTABLISHED", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 11: "CLOSING", 4: "FIN_WAIT1"}


def _percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))] * 1e3, 3)


class Member(WSListener):  # type: ignore[misc]
    """A connection that checks the welcome, then counts text frames (validating the first one)."""

    def __init__(self, stats: Stats, expect: bytes) -> None:
        self.stats = stats
        self.expect = expect
        self.transport: WSTransport | None = None
        self.welcomed = False
        self.received = 0
        self.close_code: int | None = None
        self.disconnected_at: float | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected_at = time.perf_counter()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.TEXT:
            if not self.welcomed:
                self.welcomed = True
                if json.loads(frame.get_payload_as_utf8_text()).get("type") != "welcome":
                    self.stats.errors += 1
                self.stats.welcomed += 1
                self.on_welcome(transport)
                return
            if self.received == 0 and self.expect not in frame.get_payload_as_bytes():
                self.stats.errors += 1
            self.received += 1
            self.on_data(transport)
        elif kind == WSMsgType.CLOSE:
            self.close_code = int(frame.get_close_code())
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_welcome(self, transport: WSTransport) -> None:
        pass

    def on_data(self, transport: WSTransport) -> None:
        stats = self.stats
        stats.delivered += 1
        stats.last = time.perf_counter()


class Stats:
    def __init__(self) -> None:
        self.welcomed = 0
        self.delivered = 0
        self.errors = 0
        self.last = 0.0
        self.recording = False
        self.latencies: list[float] = []


class EchoMember(Member):
    """A closed loop: every reply triggers the next message."""

    def __init__(self, stats: Stats) -> None:
        super().__init__(stats, b'"echo"')
        self.sent_at = 0.0

    def start(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.send(WSMsgType.TEXT, MESSAGE)

    def on_data(self, transport: WSTransport) -> None:
        now = time.perf_counter()
        stats = self.stats
        if stats.recording:
            stats.delivered += 1
            stats.latencies.append(now - self.sent_at)
        self.sent_at = now
        transport.send(WSMsgType.TEXT, MESSAGE)


class StuckMember(Member):
    """Stops reading its socket as soon as the welcome arrives."""

    def on_welcome(self, transport: WSTransport) -> None:
        transport.underlying_transport.pause_reading()

    def on_data(self, transport: WSTransport) -> None:
        pass

    def tcp_state(self) -> str:
        assert self.transport is not None
        sock = self.transport.underlying_transport.get_extra_info("socket")
        try:
            state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
        except (OSError, AttributeError):
            return "GONE"
        return TCP_STATES.get(state, str(state))


def _small_buffer_socket(_url: Any) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # also turns receive autotuning off
    sock.setblocking(False)
    return sock


def _reset_on_close_socket(_url: Any) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.setblocking(False)
    return sock


async def _connect(
    factory: Callable[[], Member], url: str, n: int, *, concurrency: int = 200, socket_factory: Any = None
) -> tuple[list[Member], list[str]]:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> Member:
        async with gate:
            _, listener = await ws_connect(
                factory, url, max_frame_size=MAX_FRAME, socket_factory=socket_factory, websocket_handshake_timeout=30
            )
            return listener  # type: ignore[no-any-return]

    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    members = [r for r in results if isinstance(r, Member)]
    errors = [f"{type(r).__name__}: {r}" for r in results if not isinstance(r, Member)]
    return members, errors


async def _until(condition: Callable[[], bool], timeout: float, step: float = 0.005) -> bool:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(step)
    return True


def _close(members: list[Member]) -> None:
    for m in members:
        if m.transport is not None:
            m.transport.disconnect()


def server_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) the process ``pid`` has used so far, from ``/proc``; ``None`` without one."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def cpu_per(pid: int | None, before: float | None, count: int) -> float | None:
    """Microseconds of the server's CPU time per message since ``before``."""
    after = server_cpu(pid)
    if before is None or after is None or not count:
        return None
    return round((after - before) * 1e6 / count, 2)


async def echo(url: str, conns: int, seconds: float, warmup: float, pid: int | None = None) -> dict[str, Any]:
    """Closed-loop echo over ``conns`` connections."""
    stats = Stats()
    members, errors = await _connect(lambda: EchoMember(stats), url, conns)
    await _until(lambda: stats.welcomed >= len(members), 10)
    for m in members:
        assert isinstance(m, EchoMember)
        m.start()
    await asyncio.sleep(warmup)
    stats.recording = True
    start, cpu = time.perf_counter(), server_cpu(pid)
    await asyncio.sleep(seconds)
    stats.recording = False
    elapsed = time.perf_counter() - start
    cpu_us = cpu_per(pid, cpu, stats.delivered)
    _close(members)
    lat = sorted(stats.latencies)
    return {
        "mode": "echo",
        "conns": conns,
        "connected": len(members),
        "msgs_per_s": round(stats.delivered / elapsed),
        "server_cpu_us": cpu_us,
        "p50_ms": _percentile(lat, 0.50),
        "p99_ms": _percentile(lat, 0.99),
        "errors": stats.errors + len(errors),
    }


async def fanout(url: str, conns: int, messages: int, timeout: float = 60, pid: int | None = None) -> dict[str, Any]:
    """``messages`` broadcasts to a room of ``conns`` members (the sender is one of them)."""
    stats = Stats()
    members, errors = await _connect(lambda: Member(stats, b'"chat_message"'), url, conns)
    await _until(lambda: stats.welcomed >= len(members), 10)
    expected = len(members) * messages
    sender = members[-1].transport
    assert sender is not None
    start, cpu = time.perf_counter(), server_cpu(pid)
    for i in range(messages):
        sender.send(WSMsgType.TEXT, MESSAGE)
        if i % 10 == 9:
            await asyncio.sleep(0)
    complete = await _until(lambda: stats.delivered >= expected, timeout, 0.002)
    cpu_us = cpu_per(pid, cpu, stats.delivered)
    elapsed = (stats.last if stats.delivered else time.perf_counter()) - start
    _close(members)
    return {
        "mode": "fanout",
        "members": conns,
        "messages": messages,
        "delivered": stats.delivered,
        "expected": expected,
        "ok": complete and stats.delivered == expected and not errors and not stats.errors,
        "deliveries_per_s": round(stats.delivered / elapsed) if elapsed > 0 else None,
        "server_cpu_us": cpu_us,
        "seconds": round(elapsed, 3),
        "errors": stats.errors + len(errors),
    }


async def hold(url: str, conns: int, seconds: float | None) -> dict[str, Any]:
    """Hold ``conns`` idle connections until stdin closes (or ``seconds`` pass)."""
    stats = Stats()
    start = time.perf_counter()
    members, errors = await _connect(
        lambda: Member(stats, b""), url, conns, concurrency=500, socket_factory=_reset_on_close_socket
    )
    await _until(lambda: stats.welcomed >= len(members), 30, 0.05)
    ready = {
        "mode": "hold",
        "requested": conns,
        "connected": len(members),
        "welcomed": stats.welcomed,
        "open": sum(1 for m in members if m.disconnected_at is None),
        "connect_seconds": round(time.perf_counter() - start, 2),
        "errors": errors[:3],
        "error_count": len(errors),
    }
    print(json.dumps(ready), flush=True)
    if seconds is not None:
        await asyncio.sleep(seconds)
    else:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    still_open = sum(1 for m in members if m.disconnected_at is None)
    _close(members)
    await asyncio.sleep(0.2)
    return {"mode": "hold", "still_open_at_release": still_open}


async def slow(
    url: str, conns: int, messages: int, size: int, seconds: float, stuck_member: bool = True
) -> dict[str, Any]:
    """Broadcast to ``conns`` readers plus one member that never reads.

    With ``stuck_member=False`` the same workload runs without it: the readers' baseline rate.
    """
    stats = Stats()
    payload = json.dumps({"type": "message", "text": "x" * max(0, size - 30)}, separators=(",", ":")).encode()
    readers, errors = await _connect(lambda: Member(stats, b'"chat_message"'), url, conns)
    stuck_stats = Stats()
    stuck_list, stuck_errors = await _connect(
        lambda: StuckMember(stuck_stats, b""), url, 1 if stuck_member else 0, socket_factory=_small_buffer_socket
    )
    sender_stats = Stats()
    sender_list, sender_errors = await _connect(lambda: Member(sender_stats, b'"chat_message"'), url, 1)
    await _until(
        lambda: stats.welcomed >= len(readers) and stuck_stats.welcomed >= len(stuck_list) and sender_stats.welcomed,
        10,
    )
    stuck = stuck_list[0] if stuck_list else None
    assert stuck is None or isinstance(stuck, StuckMember)
    sender = sender_list[0].transport
    assert sender is not None
    expected = len(readers) * messages

    # Deliveries are sampled every 10 ms: the longest run of samples without progress is the stall.
    start = time.perf_counter()
    for i in range(messages):
        sender.send(WSMsgType.TEXT, payload)
        if i % 10 == 9:
            await asyncio.sleep(0)
    deadline = start + seconds
    last_count, last_progress, max_stall = 0, start, 0.0
    complete_at: float | None = None
    stuck_closed_at: float | None = None if stuck is not None else start
    stuck_tcp = "ESTABLISHED" if stuck is not None else "-"
    while True:
        now = time.perf_counter()
        if stats.delivered != last_count:
            max_stall = max(max_stall, now - last_progress)
            last_count, last_progress = stats.delivered, now
        if complete_at is None and stats.delivered >= expected:
            complete_at = stats.last
        if stuck_closed_at is None and stuck is not None:
            stuck_tcp = stuck.tcp_state()
            if stuck_tcp != "ESTABLISHED":
                stuck_closed_at = now
        if now >= deadline or (complete_at is not None and stuck_closed_at is not None):
            break
        await asyncio.sleep(0.01)
    end = time.perf_counter()
    if complete_at is None:
        max_stall = max(max_stall, end - last_progress)
    delivered_in_window = stats.delivered

    # Read what the stuck member was sent, to learn whether (and how) the server closed it.
    if stuck is not None:
        assert stuck.transport is not None
        stuck.transport.underlying_transport.resume_reading()
        await _until(lambda: stuck.close_code is not None or stuck.disconnected_at is not None, 2.0, 0.01)
    result = {
        "mode": "slow",
        "readers": conns,
        "messages": messages,
        "size": len(payload),
        "window_s": seconds,
        "delivered": delivered_in_window,
        "expected": expected,
        "complete": complete_at is not None,
        "complete_s": round(complete_at - start, 3) if complete_at is not None else None,
        "deliveries_per_s": round(delivered_in_window / ((complete_at or end) - start)),
        "max_stall_ms": round(max_stall * 1e3, 1),
        "stuck_received": stuck.received if stuck else None,
        "stuck_tcp_state": stuck_tcp,
        "stuck_closed_s": round(stuck_closed_at - start, 3) if stuck and stuck_closed_at is not None else None,
        "stuck_disconnected": (stuck.disconnected_at is not None or stuck.close_code is not None) if stuck else None,
        "stuck_close_code": stuck.close_code if stuck else None,
        "sender_received": sender_list[0].received,
        "errors": stats.errors + len(errors) + len(stuck_errors) + len(sender_errors),
    }
    _close(readers + stuck_list + sender_list)
    return result


def main(argv: list[str] | None = None) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["echo", "fanout", "hold", "slow"])
    ap.add_argument("url")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--size", type=int, default=1024, help="slow: bytes per published message")
    ap.add_argument("--no-stuck", action="store_true", help="slow: without the member that stops reading")
    ap.add_argument("--server-pid", type=int, default=None, help="echo, fanout: report this process's CPU per message")
    a = ap.parse_args(argv)
    if a.mode == "echo":
        coro = echo(a.url, a.conns, a.seconds or 3.0, a.warmup, a.server_pid)
    elif a.mode == "fanout":
        coro = fanout(a.url, a.conns, a.messages, pid=a.server_pid)
    elif a.mode == "hold":
        coro = hold(a.url, a.conns, a.seconds)
    else:
        coro = slow(a.url, a.conns, a.messages, a.size, a.seconds or 8.0, stuck_member=not a.no_stuck)
    print(json.dumps(uvloop.run(coro)), flush=True)


if __name__ == "__main__":
    main()
