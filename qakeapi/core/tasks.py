"""Background tasks: kept alive while they should run, stopped for sure when they should not.

:func:`supervise` restarts a background loop that fails, logging it at once.

A task is stopped by cancelling it; but a library the task awaits may absorb that one
cancellation (redis-py's publish path can finish its command and return normally after its task
was cancelled), and a task in a ``while True`` loop then goes on as if nothing happened. Like
anyio's cancel scopes, which cancel again on every turn of the loop until the task is gone,
:func:`stop_tasks` repeats the cancellation until each task has stopped or the time is up.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

__all__ = ["stop_tasks", "supervise", "where"]

RECANCEL_INTERVAL = 0.05
"""Seconds between two cancellations of a task that is still running."""


async def stop_tasks(tasks: Collection[asyncio.Task[Any]], timeout: float) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait for them, cancelling again those that keep running.

    Args:
        tasks: The tasks to stop (done ones are left as they are).
        timeout: How long to try, in seconds.

    Returns:
        The tasks still running when ``timeout`` ran out (log them with :func:`where`).
    """
    pending = {task for task in tasks if not task.done()}
    deadline = asyncio.get_running_loop().time() + timeout
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_INTERVAL, left))
    return pending


def where(task: asyncio.Task[Any]) -> str:
    """Where ``task`` is suspended, innermost frame last (for a log line about a task that will not stop).

    Args:
        task: The task.

    Returns:
        Its stack, as :meth:`asyncio.Task.print_stack` prints it.
    """
    stream = io.StringIO()
    task.print_stack(limit=30, file=stream)
    return stream.getvalue()


async def supervise(
    run: Callable[[], Awaitable[None]],
    name: str,
    log: logging.Logger,
    *,
    min_backoff: float = 0.05,
    max_backoff: float = 5.0,
) -> None:
    """Run ``run()`` until cancelled, restarting it whenever it fails.

    A background loop that raises is logged at once (ERROR, with its traceback), not when the
    application shuts down, and started again after a backoff that doubles while it keeps
    failing. One that returns is done (it had nothing left to do).

    Args:
        run: Starts the loop (called again for each restart).
        name: What it is, for the log.
        log: Where to log.
        min_backoff: The first wait before a restart, in seconds.
        max_backoff: The longest wait.
    """
    delay = min_backoff
    while True:
        started = asyncio.get_running_loop().time()
        try:
            await run()
            return
        except Exception:
            if asyncio.get_running_loop().time() - started > max_backoff:
                delay = min_backoff  # it ran fine for a while: a fresh failure, not a crash loop
            log.exception("%s failed; restarting it in %.2fs", name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff)
