"""The ASGI lifespan: the hooks an application runs when the server starts and stops."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from qakeapi.types import Receive, Send

__all__ = ["Lifespan", "LifespanHook"]

logger = logging.getLogger("qakeapi.application")

LifespanHook = Callable[[], Awaitable[Any] | Any]
"""The type of startup and shutdown hooks (plain or ``async`` functions without arguments)."""


class Lifespan:
    """Startup and shutdown hooks, run in the order they were registered.

    A startup hook that raises stops the startup: the server is told
    (``lifespan.startup.failed``, with the error) and the traceback is logged. Every shutdown
    hook runs even when one before it raised; each failure is logged.

    Attributes:
        startup: The hooks run when the server starts.
        shutdown: The hooks run when the server stops.
    """

    def __init__(self) -> None:
        self.startup: list[LifespanHook] = []
        self.shutdown: list[LifespanHook] = []

    async def __call__(self, receive: Receive, send: Send) -> None:
        """Answer the server's ``lifespan`` messages until it has shut down."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    for hook in self.startup:
                        await _run(hook)
                except Exception as exc:
                    logger.exception("startup hook failed")
                    await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                failed = False
                for hook in self.shutdown:
                    try:
                        await _run(hook)
                    except Exception:
                        failed = True
                        logger.exception("shutdown hook %s failed", getattr(hook, "__qualname__", hook))
                kind = "lifespan.shutdown.failed" if failed else "lifespan.shutdown.complete"
                await send({"type": kind, "message": "a shutdown hook failed"} if failed else {"type": kind})
                return


async def _run(hook: LifespanHook) -> None:
    result = hook()
    if inspect.isawaitable(result):
        await result
