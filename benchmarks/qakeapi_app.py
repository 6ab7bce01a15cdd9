"""The benchmark contract, written the way the guide teaches.

An :class:`~qakeapi.Application` with one :class:`~qakeapi.WebSocketHandler` per path:

- every connection gets ``{"type": "welcome", "message": "Connected!"}`` on connect;
- ``/ws`` answers every JSON text message with ``{"type": "echo", "data": <message>}``;
- ``/room`` broadcasts every JSON text message, as ``{"type": "chat_message", "message": <message>}``,
  to every connection on ``/room`` (the sender included) with the handler's own encode-once
  :meth:`~qakeapi.WebSocketHandler.broadcast`.

Run: ``uvicorn benchmarks.qakeapi_app:app``
"""

from __future__ import annotations

from typing import Any

from qakeapi import Application, WebSocket, WebSocketHandler
from qakeapi.core.limits import RateLimit

__all__ = ["UNLIMITED", "app", "echo_handler", "room_handler"]

app = Application()
# The load generator is one client on one IP opening up to 10,000 connections, each sending as
# fast as it can: above the default per-IP cap and per-connection rate. The rate limit stays on
# (a bucket far above the load), so its per-message cost is measured; the per-IP cap is off.
UNLIMITED = RateLimit(rate=1e9, burst=1_000_000_000)
echo_handler = WebSocketHandler(rate_limit=UNLIMITED, max_connections_per_ip=None)
room_handler = WebSocketHandler(rate_limit=UNLIMITED, max_connections_per_ip=None)

WELCOME = {"type": "welcome", "message": "Connected!"}


@echo_handler.on_connect
@room_handler.on_connect
async def welcome(websocket: WebSocket) -> None:
    await websocket.send_json(WELCOME)


@echo_handler.on_message
async def echo(websocket: WebSocket, message: Any) -> None:
    await websocket.send_json({"type": "echo", "data": message})


@room_handler.on_message
async def publish(websocket: WebSocket, message: Any) -> None:
    await room_handler.broadcast({"type": "chat_message", "message": message})


@app.websocket("/ws")
async def echo_endpoint(websocket: WebSocket) -> None:
    await echo_handler.handle_connection(websocket)


@app.websocket("/room")
async def room_endpoint(websocket: WebSocket) -> None:
    await room_handler.handle_connection(websocket)
