"""Starting and stopping a cluster node: the backend, and the node's supervised loops.

A start never waits for the backend's server (a node with Redis down starts at once and joins
the cluster when Redis answers); concurrent starts share one; a start during a close waits for
it. A close says goodbye (``bye``), flushes the buffer for a bounded time, stops the loops (for
sure: see :func:`~qakeapi.core.tasks.stop_tasks`) and disconnects.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from qakeapi.core.broadcast.base import BroadcastBackend
from qakeapi.core.cluster.assembly import Parts, Settings
from qakeapi.core.cluster.envelope import Kind
from qakeapi.core.cluster.identity import worker_hint
from qakeapi.core.tasks import stop_tasks, supervise, where

__all__ = ["STOP_TIMEOUT", "Lifecycle"]

logger = logging.getLogger("qakeapi.clustering")

STOP_TIMEOUT = 5.0
"""Seconds a close waits for a start, and for the loops to stop, before it goes on."""


@dataclass(eq=False)
class Lifecycle:
    """Starts and stops one node.

    Args:
        backend: The broadcast backend.
        parts: The node's parts.
        settings: What the node was told when it was made (its label and instance id name
            its tasks and log lines).
    """

    backend: BroadcastBackend
    parts: Parts
    settings: Settings
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False)
    _starting: asyncio.Task[None] | None = field(default=None, init=False)
    _closing: asyncio.Future[None] | None = field(default=None, init=False)

    async def start(self) -> None:
        """Start once (see the module docstring); a failed start is not kept, the next call retries."""
        while self._closing is not None:
            await asyncio.wait((self._closing,))
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._start())
        starting = self._starting
        try:
            await asyncio.shield(starting)
        except Exception:
            if self._starting is starting:
                self._starting = None
            raise

    async def _start(self) -> None:
        parts = self.parts
        _warn_if_memory_in_workers(self.backend, self.settings.node_id)
        _warn_if_unauthenticated(self.backend, self.settings.node_id, parts.publisher.signer is not None)
        await self.backend.connect()
        await self.backend.subscribe(parts.dispatcher.channel)
        parts.publisher.open()
        parts.membership.open()
        loop, name = asyncio.get_running_loop(), f"{self.settings.node_id}/{self.settings.instance_id}"
        self._tasks = [  # supervised: a loop that fails is logged at once and restarted
            loop.create_task(supervise(run, f"{label} {name}", logger), name=f"{label} {name}")
            for run, label in (
                (lambda: parts.dispatcher.run(self.backend.events()), "qakeapi cluster dispatcher"),
                (parts.publisher.run, "qakeapi cluster sender"),
                (lambda: parts.membership.run(self._on_beat), "qakeapi cluster heartbeat"),
                (parts.membership.notify, "qakeapi cluster presence"),
            )
        ]
        logger.info(
            "node %s (instance %s) started on channel %r",
            self.settings.node_id,
            self.settings.instance_id,
            parts.dispatcher.channel,
        )

    def _on_beat(self) -> None:
        if self.parts.history is not None:  # gaps are recorded from the heartbeat, once the buffer is through
            self.parts.history.mark_gaps_when_due(self.parts.outbox)

    async def close(self, flush_timeout: float) -> None:
        """Say goodbye, flush (at most ``flush_timeout`` seconds), stop the loops, disconnect. Idempotent."""
        starting, self._starting = self._starting, None
        if starting is None:
            return
        self._closing = closing = asyncio.get_running_loop().create_future()
        parts = self.parts
        try:
            await asyncio.wait((starting,), timeout=STOP_TIMEOUT)
            if not starting.done():  # a start that hangs must not hang the close too
                starting.cancel()
                await asyncio.wait((starting,), timeout=STOP_TIMEOUT)
            if starting.done() and not starting.cancelled() and starting.exception() is None:
                parts.publisher.control(Kind.BYE, {})
                await parts.publisher.flush(flush_timeout)
                if parts.outbox:
                    logger.warning(
                        "node %s: closing with %d publishes not sent to the cluster",
                        self.settings.node_id,
                        len(parts.outbox),
                    )
            tasks, self._tasks = self._tasks, []
            marking = parts.history.stop() if parts.history is not None else None
            await self._stop([*tasks, *([marking] if marking is not None else [])])
            await self.backend.disconnect()
            parts.peers.clear()
        finally:
            self._closing = None
            closing.set_result(None)

    async def _stop(self, tasks: list[asyncio.Task[None]]) -> None:
        for task in await stop_tasks(tasks, STOP_TIMEOUT):  # cancelled until they stop
            logger.warning(
                "node %s: task %r did not stop within %.0fs of being cancelled; left to finish; it waits in:\n%s",
                self.settings.node_id,
                task.get_name(),
                STOP_TIMEOUT,
                where(task),
            )
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                logger.error(
                    "node %s: task %r had failed", self.settings.node_id, task.get_name(), exc_info=task.exception()
                )


def _warn_if_unauthenticated(backend: BroadcastBackend, node_id: str, signed: bool) -> None:
    from qakeapi.core.broadcast.memory import MemoryBackend

    if not signed and not isinstance(backend, MemoryBackend):
        logger.warning(
            "node %s: cluster envelopes are not authenticated: anyone who can write to %s can send any client "
            "a message or revoke any user on every node. Give every node the same secret: the environment "
            "variable QAKEAPI_CLUSTER_SECRET (or ClusteredManager(secret=...)), e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
            node_id,
            getattr(backend, "safe_url", type(backend).__name__),
        )


def _warn_if_memory_in_workers(backend: BroadcastBackend, node_id: str) -> None:
    from qakeapi.core.broadcast.memory import MemoryBackend

    hint = worker_hint()
    if isinstance(backend, MemoryBackend) and hint is not None:
        logger.warning(
            "node %s uses the in-process memory:// broadcast backend but this process looks like one of "
            "several workers (%s): broadcasts, rooms and presence will NOT reach the other workers' "
            "connections. Use redis:// for more than one process.",
            node_id,
            hint,
        )
