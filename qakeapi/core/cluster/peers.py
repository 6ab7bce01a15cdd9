"""The other instances a node knows: when each was last heard, and how far its presence is applied.

Each instance numbers its presence changes (its *presence version*). Diffs are applied in
order; a diff that does not follow the last one applied, a heartbeat announcing another
version, or missing client messages mean this node's copy may be wrong, and it asks that
instance for its whole state (at most every ``sync_retry`` seconds unless forced). An instance
not heard for ``node_timeout`` seconds — counted from when this node itself was last able to
hear anyone — is dead: its entries leave :class:`~qakeapi.core.presence.Presence`. Pure: the
clock is passed in; the caller publishes the sync requests this returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from qakeapi.core.presence import Member, Presence, PresenceDiff, PresenceReason

__all__ = ["DEFAULT_SYNC_RETRY", "Peer", "Peers"]

DEFAULT_SYNC_RETRY = 2.0


@dataclass(slots=True)
class Peer:
    """What is known of one other instance.

    Attributes:
        node: Its label.
        last_seen: When (the caller's clock) it was last heard.
        version: The presence version applied from it, ``None`` until its state arrives.
        sync_requested: When its state was last asked for, while the answer is awaited.
    """

    node: str
    last_seen: float
    version: int | None = None
    sync_requested: float | None = None


class Peers:
    """The instances this node hears, and their share of ``presence``.

    Args:
        presence: The presence map their entries live in.
        node_timeout: Seconds without a word after which an instance is dead.
        sync_retry: The least number of seconds between two (unforced) state requests to one instance.
    """

    def __init__(self, presence: Presence, node_timeout: float, *, sync_retry: float = DEFAULT_SYNC_RETRY) -> None:
        self.presence = presence
        self.node_timeout = node_timeout
        self.sync_retry = sync_retry
        self._peers: dict[str, Peer] = {}

    def __contains__(self, instance: object) -> bool:
        return instance in self._peers

    def nodes(self) -> dict[str, str]:
        """The live instances, as ``{instance_id: node_id}``."""
        return {instance: peer.node for instance, peer in self._peers.items()}

    def synced(self, instance: str) -> bool:
        """Whether ``instance``'s presence is known here (its diffs now apply one by one)."""
        peer = self._peers.get(instance)
        return peer is not None and peer.version is not None

    def heard(self, instance: str, node: str, now: float) -> Peer:
        """``instance`` said something: note it (a new instance starts unknown)."""
        peer = self._peers.get(instance)
        if peer is None:
            peer = self._peers[instance] = Peer(node, now)
        peer.last_seen = now
        return peer

    def want_sync(self, instance: str, now: float, *, force: bool = False) -> bool:
        """Whether to ask ``instance`` for its state now (its diffs are ignored until it arrives)."""
        peer = self._peers[instance]
        if not force and peer.sync_requested is not None and now - peer.sync_requested < self.sync_retry:
            return False
        peer.sync_requested = now
        peer.version = None
        return True

    def heartbeat(self, instance: str, version: int, now: float) -> bool:
        """A heartbeat at presence ``version``; returns whether to ask for the state."""
        return self._peers[instance].version != version and self.want_sync(instance, now)

    def diff(
        self,
        instance: str,
        version: int,
        joins: Iterable[Sequence[Any]],
        leaves: Iterable[Sequence[Any]],
        now: float,
    ) -> tuple[list[PresenceDiff], bool]:
        """Apply diff ``version`` (joins ``[room, connection, user]``, leaves ``[room, connection]``).

        Returns:
            The changes made, and whether to ask for the state (the diff did not follow on).
        """
        peer = self._peers[instance]
        if peer.version is None or version != peer.version + 1:
            return [], self.want_sync(instance, now)
        peer.version = version
        diffs = []
        for room, connection, user in joins:
            made = self.presence.add(room, Member(connection, user, peer.node, instance))
            if made is not None:
                diffs.append(made)
        for room, connection in leaves:
            made = self.presence.remove(room, connection)
            if made is not None:
                diffs.append(made)
        return diffs, False

    def state(self, instance: str, version: int, members: Iterable[Sequence[Any]]) -> list[PresenceDiff]:
        """Make ``members`` (``[room, connection, user]``) the whole presence of ``instance`` at ``version``."""
        peer = self._peers[instance]
        entries = [(room, Member(connection, user, peer.node, instance)) for room, connection, user in members]
        peer.version = version
        peer.sync_requested = None
        return self.presence.replace_instance(instance, entries, PresenceReason.SYNC)

    def forget(self, instance: str, reason: PresenceReason) -> list[PresenceDiff]:
        """``instance`` is gone (``reason``): drop it and its entries."""
        self._peers.pop(instance, None)
        return self.presence.drop_instance(instance, reason)

    def dead(self, now: float, hearing_since: float | None) -> list[tuple[str, Peer]]:
        """The instances silent for ``node_timeout`` seconds, counted from ``hearing_since`` at the earliest.

        Args:
            now: The time.
            hearing_since: Since when this node has been able to hear anyone; ``None`` (it
                cannot now) declares nobody dead.
        """
        if hearing_since is None:
            return []
        return [
            (instance, peer)
            for instance, peer in self._peers.items()
            if now - max(peer.last_seen, hearing_since) > self.node_timeout
        ]

    def clear(self) -> None:
        """Forget every instance (this node stops) without touching presence."""
        self._peers.clear()
