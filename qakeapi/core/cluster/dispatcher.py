"""Envelopes from the cluster channel, decoded once and handed to the one handler of their kind.

Every envelope a node receives goes through :meth:`Dispatcher.dispatch`: decoded (junk on the
channel is one warning line, never a traceback), its own ones skipped, duplicates dropped and
gaps counted by the :class:`~qakeapi.core.cluster.inbox.Inbox`, then looked up in a table from
:class:`~qakeapi.core.cluster.envelope.Kind` to handler. Where a kind of envelope is handled is
that table, :func:`~qakeapi.core.cluster.assembly.dispatch_table`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import KW_ONLY, dataclass, field

from qakeapi.core.broadcast.base import Event
from qakeapi.core.cluster.envelope import NUMBERED_KINDS, Envelope, Kind, decode_envelope
from qakeapi.core.cluster.inbox import Inbox
from qakeapi.core.cluster.peers import Peers
from qakeapi.core.cluster.signing import Signer
from qakeapi.core.counters import ClusterCounters

__all__ = ["REJECTION_REPORT_INTERVAL", "Dispatcher", "EnvelopeHandler"]

logger = logging.getLogger("qakeapi.clustering")

REJECTION_REPORT_INTERVAL = 60.0
"""Seconds between two log lines about dropped unauthenticated messages (the first is at once)."""

EnvelopeHandler = Callable[[Envelope, int], None]
"""``handler(envelope, missing)``: ``missing`` is how many numbered envelopes of its sender never arrived."""


@dataclass(eq=False)
class Dispatcher:
    """Decodes, filters and routes the envelopes of one cluster channel.

    Args:
        channel: The cluster channel (events of other channels are passed over).
        instance_id: This instance's id (its own envelopes come back and are skipped, but
            numbered history publications, which every node delivers).
        node_id: This node's label, for the log.
        inbox: Drops duplicates and counts gaps, per sender.
        peers: Told of every instance heard from.
        handlers: What handles each kind.
        on_missing: Called with ``(envelope, missing)`` when envelopes of its sender were lost.
        signer: Checks every envelope's MAC and age (``None``: the cluster has no secret).
        counts: Where envelopes received and their lag are counted.
    """

    channel: str
    instance_id: str
    node_id: str
    inbox: Inbox
    peers: Peers
    handlers: dict[Kind, EnvelopeHandler]
    _: KW_ONLY
    on_missing: tuple[EnvelopeHandler, ...] = ()
    signer: Signer | None = None
    counts: ClusterCounters = field(default_factory=ClusterCounters)
    rejected: dict[str, int] = field(default_factory=dict, init=False)  # "forged" / "replayed" -> how many were dropped
    _reported_at: float | None = field(default=None, init=False)  # when a rejection was last logged
    _unreported: int = field(default=0, init=False)

    async def run(self, events: AsyncIterator[Event]) -> None:
        """Dispatch every event of ``events`` (until the stream ends)."""
        async for event in events:
            if event.channel == self.channel:  # a backend may be shared with other channels
                self.receive(event.payload)

    def receive(self, payload: bytes) -> None:
        """Decode one message of the channel and dispatch it; junk and failures are logged, never raised."""
        signed = payload
        if self.signer is not None:
            if not payload.startswith(b"#"):
                self._reject("forged: the envelope is not signed")
                return
            payload = payload.partition(b"\n")[2]
        try:
            envelope = decode_envelope(payload)
        except ValueError as exc:
            logger.warning("node %s: ignoring a malformed message on %r: %s", self.node_id, self.channel, exc)
            return
        if envelope.instance == self.instance_id and envelope.kind is not Kind.HISTORY:
            return  # its own, read back: skipped unchecked (a forgery naming this instance is skipped too)
        if self.signer is not None:
            try:
                self.signer.verify(signed, time.time())
            except ValueError as exc:
                self._reject(str(exc))
                return
        try:
            self.dispatch(envelope)
        except (KeyError, TypeError, ValueError) as exc:  # fields missing or of the wrong shape
            logger.warning(
                "node %s: ignoring a malformed %s message from node %s (instance %s): %s: %s",
                self.node_id,
                envelope.kind.value,
                envelope.node,
                envelope.instance,
                type(exc).__name__,
                exc,
            )
        except Exception:
            logger.exception(
                "node %s: handling a %s message from node %s failed", self.node_id, envelope.kind.value, envelope.node
            )

    def _reject(self, why: str) -> None:
        cause = why.partition(":")[0]
        self.rejected[cause] = self.rejected.get(cause, 0) + 1
        now = time.monotonic()
        if self._reported_at is not None and now - self._reported_at < REJECTION_REPORT_INTERVAL:
            self._unreported += 1  # junk written to Redis must not flood the log: one line a minute
            return
        logger.warning(
            "node %s: dropped %d unauthenticated message(s) on %r (latest: %s); is something other than the "
            "nodes writing to the backend, or a node without the cluster secret?",
            self.node_id,
            self._unreported + 1,
            self.channel,
            why,
        )
        self._reported_at, self._unreported = now, 0

    def dispatch(self, envelope: Envelope) -> None:
        """Hand ``envelope``, another instance's, to the handler of its kind (after the duplicate and gap checks).

        :meth:`receive` has skipped this instance's own envelopes (all but the numbered history
        publications, which every node delivers).
        """
        if envelope.kind is Kind.HISTORY:  # numbered by the backend: every node delivers it, this one too
            self.handlers[Kind.HISTORY](envelope, 0)
            return
        if envelope.kind in NUMBERED_KINDS:
            missing = self.inbox.accept(envelope.instance, envelope.seq)
            if missing is None:  # a duplicate
                return
        else:
            missing = self.inbox.check(envelope.instance, envelope.seq)
        counts = self.counts
        counts.received += 1
        if envelope.sent_at is not None:  # the sender's clock: skew between machines adds to it
            counts.lag.observe(max(0.0, time.time() - envelope.sent_at))
        self.peers.heard(envelope.instance, envelope.node, time.monotonic())
        if missing:
            for tell in self.on_missing:
                tell(envelope, missing)
        handler = self.handlers.get(envelope.kind)
        if handler is not None:
            handler(envelope, missing)
