"""A minimal fake ASGI server in process, and the two workloads it drives: echo and fan-out.

No sockets and no server: :class:`Peer` is the server's side of one WebSocket connection (a
``receive`` fed from a queue, a ``send`` that records the frame); :func:`measure` runs an app's
lifespan, connects peers, queues the messages at once, times until every expected frame is
recorded, and then checks every frame each peer got. The runner is :mod:`benchmarks.inproc`.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import importlib
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ASGIApp", "Message", "Peer", "Result", "Workload", "load_app", "measure"]

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

SENT = {"type": "message", "text": "Hello"}
SENT_TEXT = json.dumps(SENT, separators=(",", ":"))
WELCOME = {"type": "welcome", "message": "Connected!"}


@dataclass(frozen=True)
class Workload:
    """One workload: which contract it drives, on which path, and the apps compared (the first is the base).

    Attributes:
        kind: ``"echo"`` or ``"fanout"``.
        path: The WebSocket path.
        apps: App name -> import string (``module:attribute``); ``None``: not available yet.
    """

    kind: str
    path: str
    apps: dict[str, str | None]


class Peer:
    """The fake server's side of one WebSocket connection: feeds ``receive``, records what is sent.

    Args:
        path: The request path.
        port: The client's port (each peer its own, all from ``127.0.0.1``).
    """

    __slots__ = ("close_code", "done", "frames", "inbox", "scope", "want")

    def __init__(self, path: str, port: int) -> None:
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:8000")],
            "client": ("127.0.0.1", port),
            "server": ("127.0.0.1", 8000),
            "subprotocols": [],
            "state": {},
            "extensions": {},
        }
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.frames: list[Message] = []
        self.want = 0
        self.done: asyncio.Future[None] | None = None
        self.close_code: int | None = None

    async def receive(self) -> Message:
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        if message["type"] == "websocket.send":
            frames = self.frames
            frames.append(message)
            if len(frames) == self.want and self.done is not None:
                self.done.set_result(None)
        elif message["type"] == "websocket.close":
            self.close_code = message.get("code", 1000)

    def expect(self, count: int) -> asyncio.Future[None]:
        """A future done once ``count`` frames in all have been sent to this peer."""
        self.want = count
        self.done = asyncio.get_running_loop().create_future()
        if len(self.frames) >= count:
            self.done.set_result(None)
        return self.done

    def texts(self) -> list[Any]:
        """Every frame sent so far, decoded."""
        return [json.loads(m["text"] if m.get("text") is not None else m["bytes"]) for m in self.frames]


@dataclass
class Result:
    """One timed run, checked.

    Attributes:
        wall_us: Wall-clock microseconds per message (echo) or per delivery (fan-out).
        cpu_us: This process's CPU microseconds, likewise.
        delivered: Frames every peer got after its welcome, all checked (echo: replies;
            fan-out: members x messages).
    """

    wall_us: float
    cpu_us: float
    delivered: int


class _Timer:
    """Times the burst, wall and CPU; given a profiler, profiles exactly the timed part too."""

    __slots__ = ("cpu", "profiler", "wall")

    def __init__(self, profiler: cProfile.Profile | None) -> None:
        self.profiler = profiler
        self.cpu = self.wall = 0.0

    def start(self) -> None:
        gc.collect()
        if self.profiler is not None:
            self.profiler.enable()
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def stop(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        if self.profiler is not None:
            self.profiler.disable()
        return wall, cpu


async def _lifespan(app: ASGIApp) -> tuple[asyncio.Task[None], asyncio.Queue[Message]]:
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    inbox.put_nowait({"type": "lifespan.startup"})
    started = asyncio.get_running_loop().create_future()

    async def send(message: Message) -> None:
        if message["type"].startswith("lifespan.startup") and not started.done():
            started.set_result(message["type"])

    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send))
    outcome = await asyncio.wait_for(started, 10)
    if outcome != "lifespan.startup.complete":
        raise RuntimeError(f"the app's startup failed: {outcome}")
    return task, inbox


async def _connect(app: ASGIApp, path: str, count: int) -> tuple[list[Peer], list[asyncio.Task[None]]]:
    peers = [Peer(path, 40000 + i) for i in range(count)]
    tasks = [asyncio.ensure_future(app(p.scope, p.receive, p.send)) for p in peers]
    await asyncio.wait_for(asyncio.gather(*(p.expect(1) for p in peers)), 30)  # every welcome
    for _ in range(3):  # let every hook that runs after the welcome finish
        await asyncio.sleep(0)
    return peers, tasks


async def _disconnect(peers: list[Peer], tasks: list[asyncio.Task[None]]) -> None:
    for peer in peers:
        peer.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    for outcome in done:
        if isinstance(outcome, BaseException):
            raise RuntimeError(f"an app task failed: {outcome!r}") from outcome


async def _echo(app: ASGIApp, path: str, n: int, timer: _Timer) -> Result:
    (peer,), tasks = await _connect(app, path, 1)
    done = peer.expect(1 + n)
    message: Message = {"type": "websocket.receive", "text": SENT_TEXT}
    timer.start()
    for _ in range(n):
        peer.inbox.put_nowait(message)
    await asyncio.wait_for(done, 120)
    wall, cpu = timer.stop()
    await _disconnect([peer], tasks)
    got = peer.texts()
    expected = [WELCOME] + [{"type": "echo", "data": SENT}] * n
    if got != expected:
        raise AssertionError(f"echo: {len(got)} frames, expected {len(expected)}, or their content differs")
    return Result(wall / n * 1e6, cpu / n * 1e6, len(got) - 1)


async def _fanout(app: ASGIApp, path: str, members: int, k: int, timer: _Timer) -> Result:
    peers, tasks = await _connect(app, path, members)
    done = [peer.expect(1 + k) for peer in peers]
    message: Message = {"type": "websocket.receive", "text": SENT_TEXT}
    sender = peers[0].inbox
    timer.start()
    for _ in range(k):
        sender.put_nowait(message)
    await asyncio.wait_for(asyncio.gather(*done), 120)
    wall, cpu = timer.stop()
    await _disconnect(peers, tasks)
    expected = [WELCOME] + [{"type": "chat_message", "message": SENT}] * k
    delivered = 0
    for i, peer in enumerate(peers):
        got = peer.texts()
        if got != expected:
            raise AssertionError(f"fan-out: member {i} got {len(got)} frames, expected {len(expected)}, or they differ")
        delivered += len(got) - 1
    return Result(wall / (members * k) * 1e6, cpu / (members * k) * 1e6, delivered)


async def measure(
    app: ASGIApp, workload: Workload, *, n: int, members: int, k: int, profiler: cProfile.Profile | None = None
) -> Result:
    """Run ``workload`` once against ``app`` in the running loop, lifespan included, and check every frame.

    Args:
        app: The ASGI app.
        workload: The workload.
        n: Echo messages.
        members: Fan-out members.
        k: Fan-out messages.
        profiler: Enabled during the timed part only, if given.

    Returns:
        The time per message (echo) or per delivery (fan-out).

    Raises:
        AssertionError: A peer got a frame too many, too few, or a wrong one.
    """
    life, inbox = await _lifespan(app)
    try:
        if workload.kind == "echo":
            return await _echo(app, workload.path, n, _Timer(profiler))
        return await _fanout(app, workload.path, members, k, _Timer(profiler))
    finally:
        inbox.put_nowait({"type": "lifespan.shutdown"})
        await asyncio.wait_for(life, 10)


def load_app(spec: str) -> ASGIApp:
    """Import ``module:attribute``."""
    module, _, attribute = spec.partition(":")
    app: ASGIApp = getattr(importlib.import_module(module), attribute or "app")
    return app
