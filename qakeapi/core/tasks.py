"""Stopping background tasks for sure, even when a library swallowed a cancellation.

A task is stopped by cancelling it; but a library the task awaits may absorb that one
cancellation (redis-py's publish path can finish its command and return normally after its task
was cancelled), and a task in a ``while True`` loop then goes on as if nothing happened. Like
anyio's cancel scopes, which cancel again on every turn of the loop until the task is gone,
:func:`stop_tasks` repeats the cancellation until each task has stopped or the time is up.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Collection
from typing import Any

__all__ = ["stop_tasks", "where"]

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
