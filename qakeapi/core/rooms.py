"""Named groups of connections with encode-once broadcast, on one node or across a cluster.

A plain :class:`Rooms` holds this process's connections. Given a :class:`RoomRelay` (a
:class:`~qakeapi.core.clustering.ClusteredManager` is one, as ``manager.rooms``), every join,
leave and broadcast is also told to the other nodes: members on every node get each broadcast
exactly once, local members first and directly.

Limits protect a node from a client that joins without end: ``max_rooms_per_connection``
(default 100) and ``max_room_name_length`` (default 200 characters). A join past them raises
:class:`~qakeapi.exceptions.RoomLimitError`; the first refusal of a connection is logged as a warning naming it,
later ones of the same connection at debug level (until it leaves all its rooms).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

from qakeapi.core.counters import counters
from qakeapi.core.datastructures import discard_from
from qakeapi.core.websockets.connection import WebSocket
from qakeapi.core.websockets.fanout import as_frame, deliver, deliver_in_order, recipients
from qakeapi.exceptions import RoomLimitError, UnlinkedRoomsError

__all__ = [
    "DEFAULT_MAX_ROOMS_PER_CONNECTION",
    "DEFAULT_MAX_ROOM_NAME_LENGTH",
    "Room",
    "RoomRelay",
    "Rooms",
]

logger = logging.getLogger("qakeapi.rooms")

_served_by: dict[WebSocket, Rooms] = {}
"""Connection -> the registry its rooms must live in (see :meth:`Rooms.serve`)."""

DEFAULT_MAX_ROOMS_PER_CONNECTION = 100
DEFAULT_MAX_ROOM_NAME_LENGTH = 200


class RoomRelay(Protocol):
    """Where a :class:`Rooms` registry reports its changes and sends its broadcasts for other nodes."""

    def connection_id(self, websocket: WebSocket) -> str:
        """The cluster-unique id of ``websocket``."""

    def room_joined(self, room: str, websocket: WebSocket) -> None:
        """``websocket`` joined ``room`` on this node."""

    def room_left(self, room: str, websocket: WebSocket) -> None:
        """``websocket`` left ``room`` on this node."""

    def room_broadcast(self, room: str, frame: str | bytes, exclude: WebSocket | None) -> None:
        """Send ``frame`` to the members of ``room`` on the other nodes.

        Raises:
            BroadcastError: The other nodes cannot be reached (local members already got it).
        """

    def sequenced(self, room: str) -> bool:
        """Whether ``room`` keeps a history: its broadcasts go through :meth:`room_publish`."""

    async def room_publish(self, room: str, message: Any, exclude: WebSocket | None) -> int:
        """Publish ``message`` to ``room`` through its history, on every node this one included.

        Returns:
            How many members of this node it is for.
        """


class Room:
    """A named set of connections (on a cluster: this node's members of the room).

    Args:
        name: The room's name.
        registry: The :class:`Rooms` it belongs to.
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
        """Send ``message`` to every member (but ``exclude``) on every node, encoding it once.

        Local members get it directly, before anything goes to the other nodes. Closed
        members are removed from the room (and from its :class:`Rooms` registry). A room that
        keeps a history on a cluster (:meth:`RoomRelay.sequenced`) is the exception: its
        messages are numbered by the backend first and every member, local ones included, gets
        them as publications in offset order (see :mod:`qakeapi.core.cluster.history`).

        Args:
            message: ``str`` or ``bytes`` are sent as they are; anything else as JSON text.
            exclude: A member to leave out, typically the sender.

        Returns:
            How many members of this node it was sent to.

        Raises:
            BroadcastError: On a cluster, when the other nodes cannot be reached (see
                :class:`~qakeapi.exceptions.ClusterUnavailableError`); local members
                got the message.
            ValueError: ``message`` could not be sent to anyone (``NaN``, a lone surrogate: see
                :func:`~qakeapi.core.websockets.fanout.as_frame`); no member and no other node got it.
        """
        relay = self._registry.relay if self._registry is not None else None
        if relay is not None and relay.sequenced(self.name):
            return await relay.room_publish(self.name, message, exclude)
        frame = as_frame(message)
        to = recipients(self.members, exclude)
        sent = self._forget(to, await deliver_in_order(frame, to))
        if relay is not None:
            relay.room_broadcast(self.name, frame, exclude)
        return sent

    def broadcast_local(self, message: Any, *, exclude: WebSocket | None = None) -> int:
        """Send ``message`` to this node's members only (each node reacting to a cluster event itself).

        Returns:
            How many members it was sent to.

        Raises:
            ValueError: ``message`` could not be sent to anyone (see :func:`~qakeapi.core.websockets.fanout.as_frame`).
        """
        return self._deliver(as_frame(message), exclude)

    def _deliver(self, frame: str | bytes, exclude: WebSocket | None) -> int:
        to = recipients(self.members, exclude)
        return self._forget(to, deliver(frame, to))

    def _forget(self, recipients: tuple[WebSocket, ...], dead: list[WebSocket]) -> int:
        """Drop the members found closed; return how many recipients were sent to."""
        for websocket in dead:
            if self._registry is not None:
                self._registry.leave(self.name, websocket)
            else:
                self.members.discard(websocket)
        return len(recipients) - len(dead)


class Rooms:
    """A registry of :class:`Room` objects, created on first join and dropped when empty.

    Args:
        relay: Where joins, leaves and broadcasts go for the other nodes (``None``: this node only).
        max_rooms_per_connection: How many rooms one connection may be in.
        max_room_name_length: The longest room name, in characters.
        local_only: Rooms meant for this node only, even for connections a cluster serves
            (otherwise joining them refuses such a connection: see :meth:`serve`).
    """

    def __init__(
        self,
        relay: RoomRelay | None = None,
        *,
        max_rooms_per_connection: int = DEFAULT_MAX_ROOMS_PER_CONNECTION,
        max_room_name_length: int = DEFAULT_MAX_ROOM_NAME_LENGTH,
        local_only: bool = False,
    ) -> None:
        self.relay = relay
        self.local_only = local_only
        self.max_rooms_per_connection = max_rooms_per_connection
        self.max_room_name_length = max_room_name_length
        self._rooms: dict[str, Room] = {}
        self._memberships: dict[WebSocket, set[str]] = {}
        self._refused: set[WebSocket] = set()

    def __contains__(self, name: object) -> bool:
        return name in self._rooms

    def __iter__(self) -> Iterator[Room]:
        return iter(list(self._rooms.values()))

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, name: str) -> Room | None:
        """Return the room called ``name``, or ``None`` if it has no members on this node."""
        return self._rooms.get(name)

    def rooms_of(self, websocket: WebSocket) -> AbstractSet[str]:
        """Return the names of the rooms ``websocket`` is in."""
        return frozenset(self._memberships.get(websocket, ()))

    def connection_id(self, websocket: WebSocket) -> str:
        """The id to show others for ``websocket``: cluster-unique with a relay, else ``str(websocket.id)``."""
        return self.relay.connection_id(websocket) if self.relay is not None else str(websocket.id)

    def join(self, name: str, websocket: WebSocket) -> Room:
        """Add ``websocket`` to room ``name``, creating the room if needed.

        Returns:
            The room.

        Raises:
            RoomLimitError: ``name`` is empty or longer than ``max_room_name_length``, or
                ``websocket`` is already in ``max_rooms_per_connection`` other rooms.
            qakeapi.exceptions.UnlinkedRoomsError: ``websocket`` is served by a cluster whose
                registry this is not (the broadcasts would miss the other nodes).
        """
        served_by = _served_by.get(websocket)
        if served_by is not None and served_by is not self and not self.local_only:
            raise UnlinkedRoomsError(
                f"connection {websocket.id} is served by a cluster, but joined {name!r} in a Rooms() of its own, "
                "whose broadcasts reach this node's members only. Join the cluster's rooms instead: "
                "manager.rooms.join(name, websocket) (manager = create_clustered_manager(...)); "
                "or, for rooms meant for this node only, Rooms(local_only=True)."
            )
        joined = self._memberships.get(websocket, set())
        if name not in joined:
            self._check(name, websocket, len(joined))
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = Room(name, self)
        if websocket not in room.members:
            room.members.add(websocket)
            self._memberships.setdefault(websocket, set()).add(name)
            if self.relay is not None:
                self.relay.room_joined(name, websocket)
        return room

    def serve(self, websocket: WebSocket) -> None:
        """Declare this registry the one ``websocket``'s rooms live in, until :meth:`release`.

        A cluster manager calls it for each connection it serves, so that joining another
        registry (which would reach this node only) raises
        :class:`~qakeapi.exceptions.UnlinkedRoomsError`
        instead of silently delivering to fewer members.
        """
        _served_by[websocket] = self

    def release(self, websocket: WebSocket) -> None:
        """Undo :meth:`serve` (the connection ended)."""
        if _served_by.get(websocket) is self:
            del _served_by[websocket]

    def _check(self, name: str, websocket: WebSocket, joined: int) -> None:
        problem = None
        if not name:
            problem = "a room name must not be empty"
        elif len(name) > self.max_room_name_length:
            problem = f"room name of {len(name)} characters exceeds the limit of {self.max_room_name_length}"
        elif joined >= self.max_rooms_per_connection:
            problem = f"connection is already in {joined} rooms, the limit"
        if problem is not None:
            counters.count(counters.limit_refusals, "room_limit")
            # Once per connection at WARNING: a client hammering the limit must not flood the log.
            level = logging.DEBUG if websocket in self._refused else logging.WARNING
            self._refused.add(websocket)
            logger.log(
                level,
                "refused a join (connection=%s path=%s user=%s): %s",
                websocket.id,
                websocket.path,
                websocket.user_id,
                problem,
            )
            raise RoomLimitError(problem)

    def leave(self, name: str, websocket: WebSocket) -> Room | None:
        """Remove ``websocket`` from room ``name``.

        Returns:
            The room if ``websocket`` was in it (it may now be empty and unregistered), else ``None``.
        """
        room = self._rooms.get(name)
        if room is None or websocket not in room.members:
            return None
        room.members.discard(websocket)
        discard_from(self._memberships, websocket, name)
        if not room.members:
            del self._rooms[name]
        if self.relay is not None:
            self.relay.room_left(name, websocket)
        return room

    def leave_all(self, websocket: WebSocket) -> list[Room]:
        """Remove ``websocket`` from every room.

        Returns:
            The rooms it was in.
        """
        self._refused.discard(websocket)
        return [room for name in sorted(self.rooms_of(websocket)) if (room := self.leave(name, websocket)) is not None]
