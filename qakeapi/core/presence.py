"""Who is in which room, on every node: a replicated map of room members with join/leave diffs.

Each node owns the entries of its own connections and tells the others about every change; a
:class:`~qakeapi.core.clustering.ClusteredManager` keeps one :class:`Presence` per node up to
date (diffs, heartbeats, full-state sync, and dropping a dead node's entries). This module is
the map itself: pure, no I/O. Every change returns the :class:`PresenceDiff` it made.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from qakeapi.core.datastructures import discard_from

__all__ = ["Member", "Presence", "PresenceDiff", "PresenceReason"]


class PresenceReason(str, enum.Enum):
    """Why presence changed."""

    JOIN = "join"
    """A connection joined a room."""
    LEAVE = "leave"
    """A connection left a room (or closed)."""
    SYNC = "sync"
    """A node's full state arrived and differed from what this node knew."""
    NODE_DOWN = "node_down"
    """A node stopped sending heartbeats — its members left."""
    NODE_LEFT = "node_left"
    """A node shut down cleanly — its members left."""


@dataclass(frozen=True, slots=True)
class Member:
    """One connection in one room.

    Attributes:
        connection_id: The cluster-unique connection id.
        user_id: The authenticated user, if any.
        node_id: The label of the node the connection is on.
        instance_id: The instance the connection is on.
    """

    connection_id: str
    user_id: str | None
    node_id: str
    instance_id: str

    def as_message(self) -> dict[str, str | None]:
        """What a client sees of the member: ``{"connection", "user", "node"}``."""
        return {"connection": self.connection_id, "user": self.user_id, "node": self.node_id}


@dataclass(frozen=True, slots=True)
class PresenceDiff:
    """A change of one room's members.

    Attributes:
        room: The room.
        joins: The members that joined.
        leaves: The members that left.
        reason: Why.
    """

    room: str
    joins: tuple[Member, ...]
    leaves: tuple[Member, ...]
    reason: PresenceReason

    def as_message(self) -> dict[str, Any]:
        """The change as a message for the room's clients (what ``qakeapi.js`` reads).

        Returns:
            ``{"type": "presence", "room", "joins": [...], "leaves": [...], "reason"}``, each
            member as :meth:`Member.as_message` makes it.
        """
        return {
            "type": "presence",
            "room": self.room,
            "joins": [member.as_message() for member in self.joins],
            "leaves": [member.as_message() for member in self.leaves],
            "reason": self.reason.value,
        }


class Presence:
    """Room members across the cluster, indexed by room and by owning instance."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, Member]] = {}
        self._instances: dict[str, set[tuple[str, str]]] = {}

    def rooms(self) -> frozenset[str]:
        """The rooms that have members anywhere."""
        return frozenset(self._rooms)

    def members(self, room: str) -> Mapping[str, Member]:
        """The members of ``room`` by connection id (a read-only snapshot)."""
        return MappingProxyType(dict(self._rooms.get(room, {})))

    def connection_ids(self, room: str) -> frozenset[str]:
        """The connection ids in ``room``."""
        return frozenset(self._rooms.get(room, ()))

    def user_ids(self, room: str) -> frozenset[str]:
        """The user ids in ``room`` (anonymous members have none)."""
        return frozenset(m.user_id for m in self._rooms.get(room, {}).values() if m.user_id is not None)

    def of_instance(self, instance_id: str) -> list[tuple[str, Member]]:
        """The ``(room, member)`` entries owned by ``instance_id``, sorted."""
        entries = sorted(self._instances.get(instance_id, ()))
        return [(room, self._rooms[room][connection]) for room, connection in entries]

    def add(self, room: str, member: Member, reason: PresenceReason = PresenceReason.JOIN) -> PresenceDiff | None:
        """Put ``member`` in ``room``; ``None`` if it already was."""
        members = self._rooms.setdefault(room, {})
        if members.get(member.connection_id) == member:
            return None
        previous = members.get(member.connection_id)
        members[member.connection_id] = member
        if previous is not None:
            self._instances.get(previous.instance_id, set()).discard((room, member.connection_id))
        self._instances.setdefault(member.instance_id, set()).add((room, member.connection_id))
        return PresenceDiff(room, (member,), (previous,) if previous is not None else (), reason)

    def remove(
        self, room: str, connection_id: str, reason: PresenceReason = PresenceReason.LEAVE
    ) -> PresenceDiff | None:
        """Take ``connection_id`` out of ``room``; ``None`` if it was not there."""
        members = self._rooms.get(room)
        if members is None or connection_id not in members:
            return None
        member = members.pop(connection_id)
        if not members:
            del self._rooms[room]
        discard_from(self._instances, member.instance_id, (room, connection_id))
        return PresenceDiff(room, (), (member,), reason)

    def drop_instance(self, instance_id: str, reason: PresenceReason) -> list[PresenceDiff]:
        """Remove every entry of ``instance_id``; one diff per room affected."""
        return self.replace_instance(instance_id, (), reason)

    def replace_instance(
        self, instance_id: str, entries: Iterable[tuple[str, Member]], reason: PresenceReason
    ) -> list[PresenceDiff]:
        """Make ``entries`` the whole presence of ``instance_id``; one diff per room that changed."""
        wanted = {(room, member.connection_id): member for room, member in entries}
        current = {(room, member.connection_id): member for room, member in self.of_instance(instance_id)}
        joins: dict[str, list[Member]] = {}
        leaves: dict[str, list[Member]] = {}
        for key, member in current.items():
            if wanted.get(key) != member:
                self.remove(key[0], key[1], reason)
                leaves.setdefault(key[0], []).append(member)
        for key, member in wanted.items():
            if current.get(key) != member:
                self.add(key[0], member, reason)
                joins.setdefault(key[0], []).append(member)
        return [
            PresenceDiff(room, tuple(joins.get(room, ())), tuple(leaves.get(room, ())), reason)
            for room in sorted(set(joins) | set(leaves))
        ]
