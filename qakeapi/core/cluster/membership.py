"""Who is where, across nodes: presence diffs, heartbeats, full-state sync, and nodes that go quiet.

This node's joins and leaves go out as numbered presence diffs; every ``heartbeat_interval`` a
heartbeat carries the latest version, so a node that missed a diff asks for the full state
(``sync`` → ``state``). A node that sends nothing for ``node_timeout`` seconds (killed, or cut
off) counts as down: its members leave here. Changes reach the presence hooks in order, from a
task of their own. The pure bookkeeping is :class:`~qakeapi.core.cluster.peers.Peers`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from qakeapi.core.cluster.envelope import Envelope, Kind
from qakeapi.core.cluster.inbox import Inbox
from qakeapi.core.cluster.peers import Peers
from qakeapi.core.cluster.publisher import Publisher
from qakeapi.core.presence import Member, Presence, PresenceDiff, PresenceReason

__all__ = ["Membership", "PresenceHook"]

logger = logging.getLogger("qakeapi.clustering")

PresenceHook = Callable[[PresenceDiff], Awaitable[Any]]
"""``async def hook(diff)`` — called for every presence change, local or remote, in order."""


@dataclass(eq=False)
class Membership:
    """Replicates this node's room memberships and follows the other nodes'.

    Args:
        presence: The replicated map of members.
        peers: The other instances this node hears.
        inbox: The sequence numbers heard from each instance.
        publisher: The way out to the other nodes.
        instance_id: This instance's id.
        node_id: This node's label.
        heartbeat_interval: Seconds between heartbeats.
        node_timeout: Seconds of silence after which a node counts as down.
        hearing_since: When the backend's reader last (re)connected (``None``: it is down).
    """

    presence: Presence
    peers: Peers
    inbox: Inbox
    publisher: Publisher
    instance_id: str
    node_id: str
    _: KW_ONLY
    heartbeat_interval: float
    node_timeout: float
    hearing_since: Callable[[], float | None]
    hooks: list[PresenceHook] = field(default_factory=list, init=False)
    version: int = field(default=0, init=False)
    _diffs: asyncio.Queue[PresenceDiff] | None = field(default=None, init=False)

    def open(self) -> None:
        """Get ready to run in the current event loop (before :meth:`notify`)."""
        self._diffs = asyncio.Queue()

    # -- this node's changes --------------------------------------------------------------

    def joined(self, room: str, member: Member) -> None:
        """Record and announce that ``member`` (of this node) joined ``room``."""
        diff = self.presence.add(room, member)
        if diff is not None:
            self._changed(diff, joins=[[room, member.connection_id, member.user_id]], leaves=[])

    def left(self, room: str, connection: str) -> None:
        """Record and announce that the connection with cluster id ``connection`` left ``room``."""
        diff = self.presence.remove(room, connection)
        if diff is not None:
            self._changed(diff, joins=[], leaves=[[room, diff.leaves[0].connection_id]])

    def _changed(self, diff: PresenceDiff, *, joins: list[Any], leaves: list[Any]) -> None:
        self.version += 1
        self.publisher.control(Kind.PRESENCE, {"version": self.version, "joins": joins, "leaves": leaves})
        self.emit((diff,))

    # -- heartbeats -----------------------------------------------------------------------

    async def run(self, on_beat: Callable[[], None]) -> None:
        """Every ``heartbeat_interval``: a heartbeat, silent nodes declared down, then ``on_beat()``."""
        while True:
            self.beat()
            self.expire_peers(time.monotonic())
            on_beat()
            await asyncio.sleep(self.heartbeat_interval)

    def beat(self) -> None:
        """Send a heartbeat (while the backend is down, only as a probe when nothing else waits)."""
        outbox = self.publisher.outbox
        if outbox.down_since is None:
            self.publisher.control(Kind.HEARTBEAT, {"version": self.version})
        elif not outbox:  # down, nothing waiting: a heartbeat probes for the way back
            self.publisher.control(Kind.HEARTBEAT, {"version": self.version}, force=True)

    def expire_peers(self, now: float) -> None:
        """Declare down the nodes that have been silent for ``node_timeout``."""
        for instance, peer in self.peers.dead(now, self.hearing_since()):
            self.forget(instance, PresenceReason.NODE_DOWN)
            logger.warning(
                "node %s: node %s (instance %s) sent no heartbeat for %.1fs; it counts as down",
                self.node_id,
                peer.node,
                instance,
                self.node_timeout,
            )

    def forget(self, instance: str, reason: PresenceReason) -> None:
        """Drop another instance and its members (they leave here)."""
        self.inbox.forget(instance)
        self.emit(self.peers.forget(instance, reason))

    # -- the other nodes' envelopes -------------------------------------------------------

    def heartbeat(self, envelope: Envelope, _missing: int) -> None:
        """A heartbeat: ask for the full state if its version shows a missed diff."""
        self.sync(
            envelope.instance, self.peers.heartbeat(envelope.instance, envelope.data["version"], time.monotonic())
        )

    def diff(self, envelope: Envelope, _missing: int) -> None:
        """Joins and leaves of another node."""
        data = envelope.data
        diffs, resync = self.peers.diff(
            envelope.instance, data["version"], data["joins"], data["leaves"], time.monotonic()
        )
        self.emit(diffs)
        self.sync(envelope.instance, resync)

    def sync_asked(self, envelope: Envelope, _missing: int) -> None:
        """Another node asks for the full state: answer if it asked this instance."""
        if envelope.data.get("to") == self.instance_id:
            mine = self.presence.of_instance(self.instance_id)
            members = [[room, m.connection_id, m.user_id] for room, m in mine]
            self.publisher.control(Kind.STATE, {"version": self.version, "members": members})

    def state(self, envelope: Envelope, _missing: int) -> None:
        """Another node's full state."""
        self.emit(self.peers.state(envelope.instance, envelope.data["version"], envelope.data["members"]))

    def bye(self, envelope: Envelope, _missing: int) -> None:
        """Another node is leaving: its members leave."""
        self.forget(envelope.instance, PresenceReason.NODE_LEFT)

    def on_missing(self, envelope: Envelope, _missing: int) -> None:
        """Messages of another node never arrived: its presence may be stale, ask for its full state."""
        self.sync(envelope.instance, self.peers.want_sync(envelope.instance, time.monotonic(), force=True))

    def sync(self, instance: str, wanted: bool) -> None:
        """Ask ``instance`` for its full state, if ``wanted``."""
        if wanted:
            self.publisher.control(Kind.SYNC, {"to": instance})

    # -- hooks ----------------------------------------------------------------------------

    def emit(self, diffs: Iterable[PresenceDiff]) -> None:
        """Queue ``diffs`` for the hooks (nothing when none is registered)."""
        if self.hooks and self._diffs is not None:
            for diff in diffs:
                self._diffs.put_nowait(diff)

    async def notify(self) -> None:
        """Call the hooks with each change, in order (a task of its own; a failing hook is logged)."""
        assert self._diffs is not None, "call open() first"
        while True:
            diff = await self._diffs.get()
            for hook in self.hooks:
                try:
                    await hook(diff)
                except Exception:
                    logger.exception("node %s: presence hook %s failed on %s", self.node_id, hook, diff)
