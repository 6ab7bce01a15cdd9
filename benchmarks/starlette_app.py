"""The benchmark contract in idiomatic Starlette, doing the same work as :mod:`benchmarks.qakeapi_app`.

The room loop is the one Starlette users write (and the reference figures used): ``send_json``
to each member in turn. :mod:`benchmarks.starlette_once_app` is the hand-optimised variant
that encodes once.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ["app"]

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
            for member in list(room):
                try:
                    await member.send_json({"type": "chat_message", "message": data})
                except Exception:  # a member whose send fails is dropped, whatever the server raised
                    room.discard(member)
    except WebSocketDisconnect:
        pass
    finally:
        room.discard(websocket)


app = Starlette(routes=[WebSocketRoute("/ws", echo), WebSocketRoute("/room", chat)])
