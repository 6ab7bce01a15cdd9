"""The benchmark contract in idiomatic FastAPI, doing the same work as :mod:`benchmarks.qakeapi_app`.

As in :mod:`benchmarks.starlette_app`, the room loop calls ``send_json`` for each member.
"""

from __future__ import annotations

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

__all__ = ["app"]

WELCOME = {"type": "welcome", "message": "Connected!"}

app = FastAPI()
room: set[WebSocket] = set()


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(WELCOME)
    try:
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"type": "echo", "data": data})
    except WebSocketDisconnect:
        pass


@app.websocket("/room")
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
