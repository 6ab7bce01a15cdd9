"""The benchmark contract as a bare ASGI 3 callable: the floor every framework adds to.

Same work as :mod:`benchmarks.qakeapi_app`: compact JSON, the room message encoded once and the
same text written to every member in turn, closed members dropped.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["app"]

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
WELCOME = _encode({"type": "welcome", "message": "Connected!"})

room: set[Any] = set()


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
    if kind != "websocket" or scope["path"] not in ("/ws", "/room"):
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    is_room = scope["path"] == "/room"
    if is_room:
        room.add(send)
    try:
        await send({"type": "websocket.send", "text": WELCOME})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            data = json.loads(text if text is not None else message["bytes"])
            if is_room:
                frame = {"type": "websocket.send", "text": _encode({"type": "chat_message", "message": data})}
                for member in list(room):
                    try:
                        await member(frame)
                    except Exception:  # a member whose send fails is dropped, whatever the server raised
                        room.discard(member)
            else:
                await send({"type": "websocket.send", "text": _encode({"type": "echo", "data": data})})
    finally:
        room.discard(send)
