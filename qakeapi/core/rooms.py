"""Named groups of connections with encode-once broadcast."""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from typing import Any

from qakeapi.core.fanout import broadcast_in_order
from qakeapi.core.websockets.connection import WebSocket

__all__ = ["Room", "Rooms"]


class Room:
    """A named set of connections.

    Args:
        name: The room's name.
    """

    __slots__ = ("_registry", "members", "name")

    def __init__(self, name: str, registry: Rooms | None = None) -> None:
        self.name = name
        self.members: set[WebSocket] = set()
        self._registry = registry

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, websocket: object) -> bool:
        return websocket in self.members

    def __repr__(self) -> str:
        return f"<Room {self.name!r} members={len(self.members)}>"

    async def broadcast(self, message: Any, *, exclude: WebSocket | None = None) -> int:
        """Send ``message`` to every member (but ``exclude``), encoding it once.

        Closed members are removed from the room (and from its :class:`Rooms` registry).

        Args:
            message: ``str`` or ``bytes`` are sent as they are; anything else as JSON text.
            exclude: A member to leave out, typically the sender.

        Returns:
            How many members it was sent to.
        """
        sent, dead = await broadcast_in_order(message, self.members, exclude=exclude)
        for websocket in dead:
            if self._registry is not None:
                self._registry.leave(self.name, websocket)
            else:
                self.members.discard(websocket)
        return sent


class Rooms:
    """A registry of :class:`Room` objects, created on first join and dropped when empty."""

    def __init__(self) -> None:
        self._rooms: dict[str, Room] = {}
        self._memberships: dict[WebSocket, set[str]] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._rooms

    def __iter__(self) -> Iterator[Room]:
        return iter(list(self._rooms.values()))

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, name: str) -> Room | None:
        """Return the room called ``name``, or ``None`` if it has no members."""
        return self._rooms.get(name)

    def rooms_of(self, websocket: WebSocket) -> AbstractSet[str]:
        """Return the names of the rooms ``websocket`` is in."""
        return frozenset(self._memberships.get(websocket, ()))

    def join(self, name: str, websocket: WebSocket) -> Room:
        """Add ``websocket`` to room ``name``, creating the room if needed.

        Returns:
            The room.
        """
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = Room(name, self)
        room.members.add(websocket)
        self._memberships.setdefault(websocket, set()).add(name)
        return room

    def leave(self, name: str, websocket: WebSocket) -> Room | None:
        """Remove ``websocket`` from room ``name``.

        Returns:
            The room if ``websocket`` was in it (it may now be empty and unregistered), else ``None``.
        """
        room = self._rooms.get(name)
        if room is None or websocket not in room.members:
            return None
        room.members.discard(websocket)
        names = self._memberships.get(websocket)
        if names is not None:
            names.discard(name)
            if not names:
                del self._memberships[websocket]
        if not room.members:
            del self._rooms[name]
        return room

    def leave_all(self, websocket: WebSocket) -> list[Room]:
        """Remove ``websocket`` from every room.

        Returns:
            The rooms it was in.
        """
        return [room for name in sorted(self.rooms_of(websocket)) if (room := self.leave(name, websocket)) is not None]
