"""qakeapi.core.tasks: stopping tasks for sure, even when a library swallowed a cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from qakeapi.core.tasks import stop_tasks, supervise, where


async def absorbs_one_cancellation(stopped: asyncio.Event) -> None:
    """A loop around a call that, like redis-py's publish, can absorb the cancellation it gets."""
    wake = asyncio.Event()
    with contextlib.suppress(asyncio.CancelledError):  # absorbed: the call "completed"
        await asyncio.sleep(3600)
    try:
        while True:  # the loop goes on as if nothing happened
            wake.clear()
            await wake.wait()
    finally:
        stopped.set()


@pytest.mark.asyncio
async def test_a_task_that_absorbs_one_cancellation_is_cancelled_again_until_it_stops() -> None:
    stopped = asyncio.Event()
    task = asyncio.get_running_loop().create_task(absorbs_one_cancellation(stopped))
    await asyncio.sleep(0)
    assert await stop_tasks([task], timeout=10) == set()
    assert task.cancelled()
    assert stopped.is_set()


@pytest.mark.asyncio
async def test_a_task_that_never_stops_is_returned_with_where_it_waits() -> None:
    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.get_running_loop().create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    assert await stop_tasks([task], timeout=0.2) == {task}
    assert "in stubborn" in where(task)
    task.get_coro().close()  # a task that cannot be stopped: end its coroutine


@pytest.mark.asyncio
async def test_done_tasks_are_left_alone() -> None:
    async def finished() -> int:
        return 1

    task = asyncio.get_running_loop().create_task(finished())
    await task
    assert await stop_tasks([task], timeout=1) == set()
    assert task.result() == 1


@pytest.mark.asyncio
async def test_a_failing_loop_is_logged_at_once_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    done = asyncio.Event()

    async def loop() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise RuntimeError(f"failure {len(runs)}")
        done.set()

    with caplog.at_level(logging.ERROR, "test.supervise"):
        await asyncio.wait_for(supervise(loop, "the loop", logging.getLogger("test.supervise"), min_backoff=0.01), 10)
    assert done.is_set()
    assert runs == [0, 1, 2]
    failures = [record for record in caplog.records if record.name == "test.supervise"]
    assert [record.getMessage() for record in failures] == [
        "the loop failed; restarting it in 0.01s",
        "the loop failed; restarting it in 0.02s",
    ]
    assert all(record.exc_info is not None for record in failures)  # with the traceback


@pytest.mark.asyncio
async def test_a_supervised_loop_stops_when_cancelled() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.get_running_loop().create_task(supervise(forever, "forever", logging.getLogger("test")))
    await started.wait()
    assert await stop_tasks([task], timeout=10) == set()
    assert task.cancelled()
