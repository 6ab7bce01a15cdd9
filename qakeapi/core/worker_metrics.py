"""The metrics of a multi-process server: each worker's reading in a shared directory, added up at scrape.

Under ``uvicorn --workers N`` (or gunicorn with uvicorn workers) every worker process keeps its
own counters, and a scrape of ``/metrics`` reaches one of them. With a directory shared by the
workers, :class:`WorkerMetrics` makes any worker answer for all of them:

* each worker writes its reading (:func:`qakeapi.core.snapshot.take`) to ``<pid>.json`` in the
  directory once a second (atomically: a temporary file, then a rename) and once more when it
  stops;
* the worker answering a scrape takes its own reading fresh, reads the other files and adds
  them up (:func:`qakeapi.core.snapshot.merge`). Counters and histograms of workers that have
  stopped still count (totals never go back); their gauges (connections open now, buffers) do
  not: a worker that stops cleanly writes its last reading without gauges, and the gauges of
  a file whose process is gone (killed) are left out.

The other workers' figures are at most a second old. Empty the directory when the server
starts (as for prometheus-client's own multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``), or
the totals of a previous run are added in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path

from qakeapi.core.counters import default_node
from qakeapi.core.snapshot import Family, from_data, merge, take, to_data

__all__ = ["METRICS_DIR_VARIABLE", "WRITE_INTERVAL", "WorkerMetrics"]

logger = logging.getLogger("qakeapi.metrics")

METRICS_DIR_VARIABLE = "QAKEAPI_METRICS_DIR"
"""The environment variable naming the directory the workers share."""
WRITE_INTERVAL = 1.0
"""Seconds between two readings a worker writes."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class WorkerMetrics:
    """One worker's side of the shared directory.

    Args:
        directory: The directory the workers share (created if missing).
        interval: Seconds between two readings written.

    Attributes:
        node: The ``node`` label of the readings written (set by the first :meth:`read`,
            or given).
    """

    def __init__(self, directory: str | os.PathLike[str], interval: float = WRITE_INTERVAL, node: str = "") -> None:
        self.directory = Path(directory)
        self.interval = interval
        self.node = node
        self.pid = os.getpid()
        self._task: asyncio.Task[None] | None = None

    @property
    def path(self) -> Path:
        """This worker's file."""
        return self.directory / f"{os.getpid()}.json"

    def write(self, *, final: bool = False) -> None:
        """Write this worker's reading now (``final``: without gauges, it is stopping)."""
        families = take(self.node or default_node())
        if final:
            families = [family for family in families if family.kind != "gauge"]
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(to_data(families)))
        temporary.replace(path)

    def read(self, node: str) -> list[Family]:
        """This worker's reading, fresh, added to the other workers' latest ones."""
        self.node = node
        own = self.path
        readings = [take(node)]
        for path in sorted(self.directory.glob("*.json")):
            if path == own:
                continue
            try:
                families = from_data(json.loads(path.read_text()))
            except FileNotFoundError:  # removed while listing
                continue
            except ValueError as exc:  # a torn or foreign file: skip it, say so
                logger.warning("metrics: ignoring %s in the workers' metrics directory: %s", path, exc)
                continue
            if not path.stem.isdigit() or not _alive(int(path.stem)):
                families = [family for family in families if family.kind != "gauge"]
            readings.append(families)
        return merge(readings)

    async def start(self) -> None:
        """Write a reading now and then every ``interval`` seconds (a lifespan startup hook)."""
        self.write()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop writing and write the final reading (a lifespan shutdown hook)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.write(final=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.write()
            except OSError as exc:
                logger.warning("metrics: cannot write this worker's reading to %s: %s", self.directory, exc)
