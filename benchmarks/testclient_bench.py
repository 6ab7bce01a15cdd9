"""The guide's "Performance Testing" workload, timed with in-process test clients.

Workload (as in ``docs/guide/websockets.rst``): open N WebSocket connections with a test client,
each sends one ``{"type": "message", "text": "Message <i>"}`` and receives its reply, then
every connection is closed. ``examples_app.websocket_app`` greets every connection first, so
each client reads the welcome and then the ``echo`` reply (both are checked).

Compared, for N = 100 and 1000:

``qakeapi``
    :class:`qakeapi.testing.TestClient` (async, one event loop) against
    ``examples_app.websocket_app:app``.
``starlette``
    ``starlette.testclient.TestClient`` (sync; one portal thread per WebSocket session) against
    :data:`starlette_app`, a Starlette app answering the same messages the same way.
``qakeapi_client_on_starlette``
    :class:`qakeapi.testing.TestClient` against the same Starlette app: separates the client's
    cost from the app's.

Reported per N: total seconds (connect + send/receive + close) and the guide's timed section
(send all, then receive all). Run: ``python -m benchmarks.testclient_bench [--n 100,1000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import warnings
from typing import Any

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ["run_qakeapi", "run_starlette", "starlette_app"]

_ids = iter(range(1, 1 << 62))


async def _starlette_ws(websocket: WebSocket) -> None:
    # Mirrors examples_app.websocket_app for an anonymous connection: token lookup, welcome, echo.
    token = websocket.query_params.get("token")
    await websocket.accept()
    user = None if token is None else token
    await websocket.send_json(
        {"type": "welcome", "message": "Connected!", "connection_id": str(next(_ids)), "user": user}
    )
    try:
        while True:
            message = await websocket.receive_json()
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                await websocket.send_json({"type": "error", "message": "Invalid message"})
            elif message["type"] == "message":
                await websocket.send_json({"type": "echo", "data": message})
            else:
                await websocket.send_json({"type": "error", "message": f"Unknown message type: {message['type']}"})
    except WebSocketDisconnect:
        pass


starlette_app = Starlette(routes=[WebSocketRoute("/ws", _starlette_ws)])


def _check(welcome: Any, reply: Any, i: int) -> None:
    expected = {"type": "echo", "data": {"type": "message", "text": f"Message {i}"}}
    if welcome.get("type") != "welcome" or reply != expected:
        raise AssertionError(f"unexpected replies: {welcome!r}, {reply!r}")


async def _qakeapi_workload(app: Any, n: int) -> dict[str, float]:
    from qakeapi.testing import TestClient

    start = time.perf_counter()
    client = TestClient(app)
    sessions = [await client.websocket_connect("/ws") for _ in range(n)]
    welcomes = [await ws.receive_json() for ws in sessions]
    timed = time.perf_counter()
    for i, ws in enumerate(sessions):
        await ws.send_json({"type": "message", "text": f"Message {i}"})
    replies = [await ws.receive_json() for ws in sessions]
    timed = time.perf_counter() - timed
    for ws in sessions:
        await ws.close()
    total = time.perf_counter() - start
    for i, (welcome, reply) in enumerate(zip(welcomes, replies, strict=True)):
        _check(welcome, reply, i)
    return {"total_s": total, "messages_s": timed}


def run_qakeapi(app: Any, n: int) -> dict[str, float]:
    """Time the workload with QakeAPI's async TestClient (in a fresh event loop)."""
    return asyncio.run(_qakeapi_workload(app, n))


def run_starlette(app: Any, n: int) -> dict[str, float]:
    """Time the workload with Starlette's sync TestClient."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette 1.x deprecates httpx for its TestClient; not what we measure
        from starlette.testclient import TestClient

    start = time.perf_counter()
    client = TestClient(app)
    contexts = [client.websocket_connect("/ws") for _ in range(n)]
    sessions = [cm.__enter__() for cm in contexts]
    welcomes = [ws.receive_json() for ws in sessions]
    timed = time.perf_counter()
    for i, ws in enumerate(sessions):
        ws.send_json({"type": "message", "text": f"Message {i}"})
    replies = [ws.receive_json() for ws in sessions]
    timed = time.perf_counter() - timed
    for cm in contexts:
        cm.__exit__(None, None, None)
    total = time.perf_counter() - start
    for i, (welcome, reply) in enumerate(zip(welcomes, replies, strict=True)):
        _check(welcome, reply, i)
    return {"total_s": total, "messages_s": timed}


def bench(ns: list[int], rounds: int) -> dict[str, Any]:
    """Interleaved rounds of every client at every N; return medians (seconds) and ratios."""
    from examples_app.websocket_app import app as qakeapi_app

    runs: dict[str, dict[int, list[dict[str, float]]]] = {}
    cases = {
        "qakeapi": lambda n: run_qakeapi(qakeapi_app, n),
        "starlette": lambda n: run_starlette(starlette_app, n),
        "qakeapi_client_on_starlette": lambda n: run_qakeapi(starlette_app, n),
    }
    for _ in range(rounds):
        for n in ns:
            for name, case in cases.items():
                runs.setdefault(name, {}).setdefault(n, []).append(case(n))
    result: dict[str, Any] = {}
    for name, by_n in runs.items():
        result[name] = {
            str(n): {k: round(statistics.median(r[k] for r in rs), 4) for k in ("total_s", "messages_s")}
            for n, rs in by_n.items()
        }
    for n in ns:
        q, s = result["qakeapi"][str(n)], result["starlette"][str(n)]
        result.setdefault("speedup_vs_starlette", {})[str(n)] = {
            k: round(s[k] / q[k], 2) if q[k] else None for k in ("total_s", "messages_s")
        }
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="100,1000")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    print(json.dumps(bench([int(x) for x in a.n.split(",")], a.rounds)))


if __name__ == "__main__":
    main()
