"""Background tasks: kept alive while they should run, stopped for sure when they should not.

:func:`supervise` restarts a background loop that fails, logging it at once; :func:`keep` holds
a fire-and-forget task until it is done (the event loop keeps only weak references to tasks);
:func:`within` bounds an await without leaving the calling task.

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
import sys
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any

__all__ = ["keep", "stop_tasks", "supervise", "where", "within"]

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


_kept: set[asyncio.Task[Any]] = set()


def keep(task: asyncio.Task[Any]) -> None:
    """Hold a reference to ``task`` until it is done (a task nobody holds may be collected mid-run)."""
    if not task.done():
        _kept.add(task)
        task.add_done_callback(_kept.discard)


if sys.version_info >= (3, 11):

    async def within(seconds: float, awaitable: Coroutine[Any, Any, Any]) -> None:
        """Await ``awaitable`` in this task, raising :class:`TimeoutError` after ``seconds``."""
        async with asyncio.timeout(seconds):
            await awaitable

else:  # pragma: no cover - Python 3.10 has no asyncio.timeout

    async def within(seconds: float, awaitable: Coroutine[Any, Any, Any]) -> None:
        """Await ``awaitable`` in this task, raising :class:`TimeoutError` after ``seconds``."""
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(seconds, expire)
        try:
            await awaitable
        except asyncio.CancelledError:
            if expired:
                raise asyncio.TimeoutError from None
            raise
        finally:
            timer.cancel()
