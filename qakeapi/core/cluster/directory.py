"""This node's connections, found by cluster id, by user and by room, and written to.

The local end of every delivery: an envelope from another node (or a publication read back
from the backend) becomes frames for this node's connections here, and nowhere else. Lookups by
connection id and by user go through the handler's index (no scan); the index follows a
connection whose user changes (it authenticates, or re-authenticates in band, after it was
accepted).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qakeapi.core.cluster.envelope import Envelope
from qakeapi.core.cluster.history import publication_frame
from qakeapi.core.cluster.identity import connection_id, instance_of, local_of
from qakeapi.core.rooms import Rooms
from qakeapi.core.websockets.connection import WebSocket
from qakeapi.core.websockets.fanout import as_frame, deliver
from qakeapi.core.websockets.handler import WebSocketHandler

__all__ = ["Directory"]

logger = logging.getLogger("qakeapi.clustering")


@dataclass(eq=False)
class Directory:
    """Finds and writes to this instance's connections.

    Args:
        handler: The handler whose connections this node holds.
        rooms: The node's room registry.
        instance_id: This instance's id (the prefix of its connections' cluster ids).
        node_id: This node's label, for the log.
        on_lost: Makes the message for clients whose messages were lost (``None``: nothing).

    Attributes:
        delivered: How many frames were written for other nodes' envelopes.
    """

    handler: WebSocketHandler
    rooms: Rooms
    instance_id: str
    node_id: str
    on_lost: Callable[[int, str], Any] | None
    delivered: int = field(default=0, init=False)

    def connection_id(self, websocket: WebSocket) -> str:
        """The cluster-unique id of ``websocket``."""
        return connection_id(self.instance_id, websocket.id)

    def get(self, connection: object) -> WebSocket | None:
        """The local connection with cluster id ``connection`` (``None``: another node's, gone, or not an id)."""
        if not isinstance(connection, str) or instance_of(connection) != self.instance_id:
            return None
        local = local_of(connection)
        if not local.isdigit():
            return None
        return self.handler.connection(int(local))

    def of_user(self, user_id: str) -> list[WebSocket]:
        """The local connections authenticated as ``user_id`` now."""
        return self.handler.connections_of(user_id)

    # -- envelopes from other nodes (the dispatcher's handlers of the data kinds) -----------

    def on_all(self, envelope: Envelope, _missing: int) -> None:
        """A broadcast to every connection."""
        if envelope.frame is not None:
            self.to_all(envelope.frame, envelope.data.get("exclude"))

    def on_room(self, envelope: Envelope, _missing: int) -> None:
        """A broadcast to a room's members."""
        if envelope.frame is not None:
            self.to_room(envelope.data["room"], envelope.frame, envelope.data.get("exclude"))

    def on_user(self, envelope: Envelope, _missing: int) -> None:
        """A message to a user's connections."""
        if envelope.frame is not None:
            self.to_user(envelope.data["user"], envelope.frame)

    def on_connection(self, envelope: Envelope, _missing: int) -> None:
        """A message to one connection."""
        if envelope.frame is not None:
            self.to_connection(envelope.data["connection"], envelope.frame)

    def on_publication(self, envelope: Envelope, _missing: int) -> None:
        """A numbered room publication, on a node that keeps no history itself.

        Its members get the publication as every other node's do (a node may join a cluster
        before it is given a history policy); they cannot recover from it here.
        """
        fields = envelope.data
        name, offset, epoch, data = fields.get("room"), fields.get("o"), fields.get("e"), envelope.frame
        if not (isinstance(name, str) and isinstance(offset, int) and isinstance(epoch, str) and isinstance(data, str)):
            raise ValueError("a publication needs a room, an offset, an epoch and a text frame")
        self.to_room(name, publication_frame(name, epoch, offset, data), fields.get("exclude"))

    # -- delivery -------------------------------------------------------------------------

    def to_all(self, frame: str | bytes, exclude: object = None) -> int:
        """Write ``frame`` to every local connection but the one with cluster id ``exclude``."""
        skip = self.get(exclude)
        return self.write(frame, [ws for ws in self.handler.connections if ws is not skip])

    def to_room(self, name: str, frame: str | bytes, exclude: object = None) -> int:
        """Write ``frame`` to the local members of room ``name`` (but ``exclude``)."""
        room = self.rooms.get(name)
        if room is None:
            return 0
        skip = self.get(exclude)
        return self.write(frame, [ws for ws in room.members if ws is not skip])

    def to_user(self, user_id: str, frame: str | bytes) -> int:
        """Write ``frame`` to the local connections of ``user_id``."""
        return self.write(frame, self.of_user(user_id))

    def to_connection(self, connection: object, frame: str | bytes) -> int:
        """Write ``frame`` to the local connection with cluster id ``connection``, if it is here."""
        websocket = self.get(connection)
        return 0 if websocket is None else self.write(frame, (websocket,))

    def write(self, frame: str | bytes, recipients: Collection[WebSocket]) -> int:
        """Write ``frame`` to ``recipients``; closed ones leave their rooms. Returns how many got it."""
        dead = deliver(frame, tuple(recipients))
        for websocket in dead:
            for name in self.rooms.rooms_of(websocket):
                self.rooms.leave(name, websocket)
        sent = len(recipients) - len(dead)
        self.delivered += sent
        return sent

    def tell_lost(self, count: int, node: str, connections: Iterable[WebSocket]) -> None:
        """Tell ``connections`` that ``count`` messages from ``node`` were lost (see ``on_lost``)."""
        if self.on_lost is not None:
            deliver(as_frame(self.on_lost(count, node)), tuple(connections))

    def on_missing(self, envelope: Envelope, missing: int) -> None:
        """Messages of another node never arrived: tell every local connection (it cannot know whose)."""
        logger.warning(
            "node %s: %d messages from node %s (instance %s) never arrived",
            self.node_id,
            missing,
            envelope.node,
            envelope.instance,
        )
        self.tell_lost(missing, envelope.node, self.handler.connections)

    def on_loss(self, envelope: Envelope, _missing: int) -> None:
        """Another node dropped messages during an outage: tell the local connections they were for."""
        affected = self.affected_by(envelope.data)
        count = int(envelope.data.get("count", 0))
        logger.warning(
            "node %s: node %s dropped %d messages during an outage; telling %d affected connections",
            self.node_id,
            envelope.node,
            count,
            len(affected),
        )
        self.tell_lost(count, envelope.node, affected)

    def affected_by(self, loss: Mapping[str, Any]) -> set[WebSocket]:
        """The local connections a :attr:`~qakeapi.core.cluster.envelope.Kind.LOST` envelope's data concerns."""
        if loss.get("everyone"):
            return set(self.handler.connections)
        affected: set[WebSocket] = set()
        for name in loss.get("rooms", ()):
            room = self.rooms.get(name)
            if room is not None:
                affected.update(room.members)
        users = set(loss.get("users", ()))
        if users:
            affected.update(ws for ws in self.handler.connections if ws.user_id in users)
        for connection in loss.get("connections", ()):
            websocket = self.get(connection)
            if websocket is not None:
                affected.add(websocket)
        return affected
