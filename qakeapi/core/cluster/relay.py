"""The cluster side of rooms: what a node's :class:`~qakeapi.core.rooms.Rooms` tells the other nodes.

A :class:`ClusterRooms` is the :class:`~qakeapi.core.rooms.RoomRelay` of a cluster manager's
``rooms``: joins and leaves become presence diffs, a broadcast becomes one envelope for the
other nodes (local members already got it, directly), and a room with history hands its
broadcasts to :class:`~qakeapi.core.cluster.recovery.HistoryRooms` to be numbered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from qakeapi.core.cluster.directory import Directory
from qakeapi.core.cluster.envelope import Kind
from qakeapi.core.cluster.membership import Membership
from qakeapi.core.cluster.publisher import Publisher
from qakeapi.core.cluster.recovery import HistoryRooms
from qakeapi.core.presence import Member
from qakeapi.core.websockets.connection import WebSocket

__all__ = ["ClusterRooms"]


@dataclass(eq=False)
class ClusterRooms:
    """Relays one node's room changes and broadcasts to the cluster.

    Args:
        directory: This node's connections.
        membership: Presence across nodes.
        publisher: The way out to the other nodes.
        history: The rooms with history (``None``: no room keeps one).
        node_id: This node's label.
        instance_id: This instance's id.
        start: Starts the cluster manager (a numbered publication needs the backend's loop).
    """

    directory: Directory
    membership: Membership
    publisher: Publisher
    history: HistoryRooms | None
    node_id: str
    instance_id: str
    start: Callable[[], Awaitable[None]]

    def connection_id(self, websocket: WebSocket) -> str:
        """The cluster-unique id of ``websocket``."""
        return self.directory.connection_id(websocket)

    def room_joined(self, room: str, websocket: WebSocket) -> None:
        """Record and announce that ``websocket`` joined ``room``."""
        member = Member(self.connection_id(websocket), websocket.user_id, self.node_id, self.instance_id)
        self.membership.joined(room, member)

    def room_left(self, room: str, websocket: WebSocket) -> None:
        """Record and announce that ``websocket`` left ``room``."""
        if self.history is not None:
            self.history.left(room, websocket)
        self.membership.left(room, self.connection_id(websocket))

    def room_broadcast(self, room: str, frame: str | bytes, exclude: WebSocket | None) -> None:
        """Publish ``frame`` for the members of ``room`` on the other nodes.

        Raises:
            qakeapi.exceptions.ClusterUnavailableError: The other nodes cannot be reached.
        """
        data: dict[str, Any] = {"room": room}
        if exclude is not None:
            data["exclude"] = self.connection_id(exclude)
        self.publisher.publish(Kind.ROOM, data, frame)

    def sequenced(self, room: str) -> bool:
        """Whether ``room`` keeps a history (its publications are numbered by the backend)."""
        return self.history is not None and self.history.keeps(room)

    async def room_publish(self, room: str, message: Any, exclude: WebSocket | None) -> int:
        """Publish ``message`` to a room with history: numbered by the backend, delivered by every
        node in offset order (see :mod:`qakeapi.core.cluster.recovery`).

        Returns:
            How many members of this node it is for.

        Raises:
            TypeError: ``message`` is bytes (a history keeps JSON).
            qakeapi.exceptions.ClusterUnavailableError: It had to go unnumbered, and the
                other nodes cannot be reached.
        """
        assert self.history is not None, "room_publish is for rooms with history (see sequenced())"
        await self.start()
        return await self.history.publish(room, message, exclude)
