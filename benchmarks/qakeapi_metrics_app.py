"""The benchmark contract of :mod:`benchmarks.qakeapi_app`, with metrics on.

The same handlers, served by an application that exposes its metrics
(:meth:`~qakeapi.Application.expose_metrics`): its connections' hooks are timed, and
``GET /metrics`` serves the counters. :mod:`benchmarks.inproc` compares it with
:mod:`benchmarks.qakeapi_app` (the ``metrics_echo`` and ``metrics_fanout`` workloads).

Run: ``uvicorn benchmarks.qakeapi_metrics_app:app``
"""

from __future__ import annotations

from benchmarks.qakeapi_app import echo_handler, room_handler
from qakeapi import Application, WebSocket

__all__ = ["app"]

app = Application()
app.expose_metrics()


@app.websocket("/ws")
async def echo_endpoint(websocket: WebSocket) -> None:
    await echo_handler.handle_connection(websocket)


@app.websocket("/room")
async def room_endpoint(websocket: WebSocket) -> None:
    await room_handler.handle_connection(websocket)
