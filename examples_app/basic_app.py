"""Guide section "Basic WebSocket Setup": a WebSocket echo server.

Run: ``uvicorn examples_app.basic_app:app``
"""

from __future__ import annotations

from typing import Any

from qakeapi import Application, WebSocket, WebSocketHandler

__all__ = ["app", "ws_handler"]

app = Application()
app.expose_metrics()  # Prometheus metrics at GET /metrics (the metrics extra)
ws_handler = WebSocketHandler()


@ws_handler.on_connect
async def handle_connect(websocket: WebSocket) -> None:
    await websocket.send_json({"type": "welcome", "message": "Connected!"})


@ws_handler.on_message
async def handle_message(websocket: WebSocket, message: Any) -> None:
    await websocket.send_json({"type": "echo", "data": message})


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await ws_handler.handle_connection(websocket)
