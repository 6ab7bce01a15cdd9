"""The room contract as a bare ASGI callable with the same limits QakeAPI applies by default.

What a careful hand-written server does for every message QakeAPI's
:class:`~qakeapi.WebSocketHandler` checks by default: a per-connection token bucket (200
messages a second, bursts of 1,000; close 1008 beyond), a per-address connection cap (1,024),
a message size limit (1 MiB; close 1009) and strict JSON (``NaN`` and the infinities are not
JSON; such text is passed on as text). Room as in :mod:`benchmarks.raw_asgi_app`: encoded once,
the same text written to every member in turn, closed members dropped.

The floor of the ``secure`` workload of :mod:`benchmarks.inproc`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any, NoReturn

__all__ = ["Bucket", "app", "decode"]

RATE, BURST = 200.0, 1000
MAX_SIZE = 1 << 20
MAX_PER_IP = 1024

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


decode = json.JSONDecoder(parse_constant=_no_constant).decode
WELCOME = _encode({"type": "welcome", "message": "Connected!"})

room: set[Any] = set()
per_ip: Counter[str] = Counter()


class Bucket:
    """A token bucket: ``RATE`` tokens a second, at most ``BURST``; a message takes one."""

    __slots__ = ("last", "tokens")

    def __init__(self, now: float) -> None:
        self.tokens = float(BURST)
        self.last = now

    def take(self, now: float) -> bool:
        tokens = self.tokens + (now - self.last) * RATE
        self.last = now
        if tokens > BURST:
            tokens = BURST
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind != "websocket" or scope["path"] != "/room":
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        return
    await receive()  # websocket.connect
    address = scope["client"][0]
    if per_ip[address] >= MAX_PER_IP:
        await send({"type": "websocket.close", "code": 1008})
        return
    per_ip[address] += 1
    await send({"type": "websocket.accept"})
    room.add(send)
    bucket = Bucket(time.monotonic())
    try:
        await send({"type": "websocket.send", "text": WELCOME})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if not bucket.take(time.monotonic()):
                await send({"type": "websocket.close", "code": 1008})
                return
            text = message.get("text")
            if text is None:
                if len(message["bytes"]) > MAX_SIZE:
                    await send({"type": "websocket.close", "code": 1009})
                    return
                continue  # the room contract is JSON text
            if len(text) * 4 > MAX_SIZE and len(text.encode()) > MAX_SIZE:
                await send({"type": "websocket.close", "code": 1009})
                return
            try:
                data: Any = decode(text)
            except ValueError:
                data = text
            frame = {"type": "websocket.send", "text": _encode({"type": "chat_message", "message": data})}
            for member in list(room):
                try:
                    await member(frame)
                except Exception:  # a member whose send fails is dropped, whatever the server raised
                    room.discard(member)
    finally:
        room.discard(send)
        per_ip[address] -= 1
