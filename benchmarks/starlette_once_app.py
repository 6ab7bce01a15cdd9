"""Starlette hand-optimised: the room message is encoded once and sent with ``send_text``.

Not what the Starlette docs show (see :mod:`benchmarks.starlette_app`), but the fairest
comparison for QakeAPI's encode-once broadcast.
"""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ["app"]

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
WELCOME = {"type": "welcome", "message": "Connected!"}

room: set[WebSocket] = set()


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(WELCOME)
    try:
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"type": "echo", "data": data})
    except WebSocketDisconnect:
        pass


async def chat(websocket: WebSocket) -> None:
    await websocket.accept()
    room.add(websocket)
    try:
        await websocket.send_json(WELCOME)
        while True:
            data = await websocket.receive_json()
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


app = Starlette(routes=[WebSocketRoute("/ws", echo), WebSocketRoute("/room", chat)])
