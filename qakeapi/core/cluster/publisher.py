"""The way out to the other nodes: the publish buffer and the loop that sends it.

Everything a node tells the others (client messages, presence, heartbeats, revocations) is put
in its :class:`~qakeapi.core.cluster.outbox.PublishBuffer` and published by :meth:`Publisher.run`, in
order, in batches. While the backend is unreachable the buffer keeps what it may (bounded in
age and size), the loop retries with backoff, and only the changes of state are logged: down
once, back once, and what was lost and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from qakeapi.core.backoff import Backoff
from qakeapi.core.broadcast.base import BroadcastBackend
from qakeapi.core.cluster.envelope import Kind, encode_envelope
from qakeapi.core.cluster.outbox import PublishBuffer
from qakeapi.core.cluster.signing import Signer
from qakeapi.exceptions import BroadcastError

__all__ = ["BATCH", "Publisher"]

logger = logging.getLogger("qakeapi.clustering")

BATCH = 512
"""The most envelopes published in one round trip."""

_MIN_BACKOFF = 0.02
_MAX_BACKOFF = 0.5


@dataclass(eq=False)
class Publisher:
    """Publishes one instance's envelopes on the cluster channel, in order.

    Args:
        backend: The broadcast backend shared by the nodes.
        channel: The cluster channel.
        outbox: The instance's publish buffer.
        node_id: The node's label, for the log.
        signer: Signs every envelope (``None``: no cluster secret).
    """

    backend: BroadcastBackend
    channel: str
    outbox: PublishBuffer
    node_id: str
    signer: Signer | None = None
    _wake: asyncio.Event | None = field(default=None, init=False)
    _idle: asyncio.Event | None = field(default=None, init=False)
    backoff: Backoff = field(init=False)

    def __post_init__(self) -> None:
        self.backoff = Backoff(
            f"node {self.node_id}: the cluster publisher", logger, _MIN_BACKOFF, _MAX_BACKOFF, (BroadcastError,)
        )

    def open(self) -> None:
        """Get ready to run in the current event loop (before :meth:`run`)."""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        if self.outbox:
            self._wake.set()

    def publish(self, kind: Kind, data: dict[str, Any], frame: str | bytes) -> None:
        """Buffer a client message for the other nodes.

        Raises:
            qakeapi.exceptions.ClusterUnavailableError: It cannot be buffered (see
                :meth:`PublishBuffer.put <qakeapi.core.cluster.outbox.PublishBuffer.put>`).
        """
        try:
            self.outbox.put(kind, data, frame, time.monotonic())
        finally:
            self._kick()

    def control(self, kind: Kind, data: dict[str, Any], *, force: bool = False) -> None:
        """Buffer a control envelope (refused quietly while the backend is down, unless ``force``)."""
        if self.outbox.put_control(kind, data, time.monotonic(), force=force):
            self._kick()

    def _kick(self) -> None:
        """Something was buffered: wake the loop (and the buffer is not idle any more)."""
        if self._wake is not None and self._idle is not None and self.outbox:
            self._idle.clear()
            self._wake.set()

    async def flush(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until the buffer is empty, unless the backend is down."""
        if self.outbox.down_since is None and self._idle is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)

    async def run(self) -> None:
        """Publish the buffer in order; on failure keep it, retry with backoff, log state changes only."""
        assert self._wake is not None, "call open() first"
        assert self._idle is not None
        outbox = self.outbox
        while True:
            if not outbox:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            now = time.monotonic()
            outbox.expire(now)
            batch = outbox.batch(BATCH)
            if not batch:
                continue
            try:
                payloads = [encode_envelope(envelope) for envelope in batch]
                if self.signer is not None:
                    payloads = [self.signer.sign(payload) for payload in payloads]
                await self.backend.publish_many(self.channel, payloads)
            except Exception as exc:
                outbox.failed(now)
                self.backoff.failed(exc, f"buffering publishes for up to {outbox.max_age:.1f}s")
                await self.backoff.wait()
                continue
            self._sent(len(batch))

    def _sent(self, count: int) -> None:
        outbox = self.outbox
        waiting = len(outbox)
        outbox.sent(count)
        if outbox.down_since is not None:
            loss = outbox.recovered()
            self.backoff.succeeded(
                lambda: (
                    f"{waiting} buffered publishes flushed, {0 if loss is None else loss.count} dropped"
                    + ("" if loss is None else f" ({loss.describe(outbox.max_age)})")
                )
            )
        else:
            self.backoff.succeeded()
            if (loss := outbox.take_loss()) is not None:
                logger.warning(
                    "node %s: %d publishes were dropped: %s", self.node_id, loss.count, loss.describe(outbox.max_age)
                )
        if loss is not None:  # the affected clients on the other nodes are told
            self.control(Kind.LOST, loss.as_data())
