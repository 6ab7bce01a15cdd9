"""The room contract in Starlette with the limits QakeAPI applies by default, written by hand.

The same checks as :mod:`benchmarks.raw_secure_app` (its token bucket and strict decoder):
a per-address connection cap, a token bucket per connection, a message size limit and strict
JSON. The room loop encodes once and writes the text with ``send_text`` (the fair comparison
for an encode-once broadcast).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from benchmarks.raw_secure_app import MAX_PER_IP, MAX_SIZE, Bucket, decode

__all__ = ["app"]

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
WELCOME = {"type": "welcome", "message": "Connected!"}

room: set[WebSocket] = set()
per_ip: Counter[str] = Counter()


async def chat(websocket: WebSocket) -> None:
    address = websocket.client.host if websocket.client else ""
    if per_ip[address] >= MAX_PER_IP:
        await websocket.close(1008)
        return
    per_ip[address] += 1
    await websocket.accept()
    room.add(websocket)
    bucket = Bucket(time.monotonic())
    try:
        await websocket.send_json(WELCOME)
        while True:
            text = await websocket.receive_text()
            if not bucket.take(time.monotonic()):
                await websocket.close(1008)
                return
            if len(text) * 4 > MAX_SIZE and len(text.encode()) > MAX_SIZE:
                await websocket.close(1009)
                return
            try:
                data: Any = decode(text)
            except ValueError:
                data = text
            frame = _encode({"type": "chat_message", "message": data})
            for member in list(room):
                try:
                    await member.send_text(frame)
                except Exception:  # a member whose send fails is dropped, whatever the server raised
                    room.discard(member)
    except WebSocketDisconnect:
        pass
    finally:
        room.discard(websocket)
        per_ip[address] -= 1


app = Starlette(routes=[WebSocketRoute("/room", chat)])
