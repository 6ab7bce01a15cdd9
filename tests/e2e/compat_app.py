"""The delivery-compatibility app: a broadcast room, served behind the middleware named in the environment.

``QAKEAPI_COMPAT_MIDDLEWARE`` picks what wraps the ASGI ``send`` of every connection:

``plain``           nothing;
``asgi``            a pure ASGI middleware that passes messages through;
``anyio-group``     an anyio task group entered and exited around each ``send``;
``anyio-deadline``  ``anyio.fail_after`` around each ``send``;
``asyncio-timeout`` ``asyncio.timeout`` around each ``send``;
``contextvar``      a contextvar set before and reset after each ``send``.

Every connection gets a welcome; every message received is broadcast (encoded once) to every
connection, the sender included, by :meth:`~qakeapi.WebSocketHandler.broadcast`.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from typing import Any

import anyio

from qakeapi import Application, WebSocket, WebSocketHandler
from qakeapi.core.websockets import SendPolicy
from qakeapi.types import Message, Receive, Scope, Send

__all__ = ["DEADLINE", "MAX_QUEUE", "MIDDLEWARE", "app", "inner", "room"]
MIDDLEWARE = os.environ.get("QAKEAPI_COMPAT_MIDDLEWARE", "plain")
"""What wraps ``send`` in this process."""
DEADLINE = 0.5
"""Seconds a deadline middleware allows one ``send``."""
MAX_QUEUE = int(
    os.environ.get("QAKEAPI_COMPAT_MAX_QUEUE")
    or (10_000 if MIDDLEWARE in ("anyio-deadline", "asyncio-timeout", "anyio-group") else 32)
)
"""Frames that may wait for a slow reader before the policy closes it.

Behind a deadline: more than the test sends, so that the deadline is what drops the member that
does not read. Behind a task group: every write then costs several turns of the event loop, so
readers that are merely behind a burst would be dropped with a queue of 32 (see docs/servers.rst).
``QAKEAPI_COMPAT_MAX_QUEUE`` sets it (the many-senders test runs with the default policy's 256).
"""

inner = Application()
room = WebSocketHandler(send_policy=SendPolicy(max_queue=MAX_QUEUE))


@room.on_connect
async def welcome(websocket: WebSocket) -> None:
    await websocket.send_json({"type": "welcome"})


@room.on_message
async def relay(websocket: WebSocket, message: Any) -> None:
    await room.broadcast(message)


@inner.websocket("/ws")
async def endpoint(websocket: WebSocket) -> None:
    await room.handle_connection(websocket)


_sending: contextvars.ContextVar[bool] = contextvars.ContextVar("_sending", default=False)


def _wrap(send: Send, kind: str) -> Send:
    if kind == "anyio-group":

        async def wrapped(message: Message) -> None:
            async with anyio.create_task_group() as group:
                group.start_soon(anyio.sleep, 0)
                await send(message)

    elif kind == "anyio-deadline":

        async def wrapped(message: Message) -> None:
            with anyio.fail_after(DEADLINE):
                await send(message)

    elif kind == "asyncio-timeout":

        async def wrapped(message: Message) -> None:
            async with asyncio.timeout(DEADLINE):  # type: ignore[attr-defined,unused-ignore]  # Python >= 3.11
                await send(message)

    elif kind == "contextvar":

        async def wrapped(message: Message) -> None:
            token = _sending.set(True)
            try:
                await send(message)
            finally:
                _sending.reset(token)

    else:

        async def wrapped(message: Message) -> None:
            await send(message)

    return wrapped


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The room, with ``send`` wrapped as :data:`MIDDLEWARE` says."""
    if MIDDLEWARE == "plain":
        await inner(scope, receive, send)
    else:
        await inner(scope, receive, _wrap(send, MIDDLEWARE))
