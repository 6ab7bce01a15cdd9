"""How a cluster node is put together: its parts, wired once, and the table of envelope handlers.

:func:`dispatch_table` is where each kind of envelope from another node is handled — one table,
one hop from the :class:`~qakeapi.core.cluster.dispatcher.Dispatcher` to the handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from qakeapi.core.broadcast.base import BroadcastBackend
from qakeapi.core.cluster.directory import Directory
from qakeapi.core.cluster.dispatcher import Dispatcher, EnvelopeHandler
from qakeapi.core.cluster.envelope import Kind
from qakeapi.core.cluster.history import HistoryPolicy
from qakeapi.core.cluster.inbox import Inbox
from qakeapi.core.cluster.membership import Membership
from qakeapi.core.cluster.outbox import PublishBuffer
from qakeapi.core.cluster.peers import Peers
from qakeapi.core.cluster.publisher import Publisher
from qakeapi.core.cluster.recovery import HistoryRooms
from qakeapi.core.cluster.relay import ClusterRooms
from qakeapi.core.cluster.revocations import Revocations
from qakeapi.core.cluster.signing import Signer
from qakeapi.core.counters import ClusterCounters
from qakeapi.core.presence import Presence
from qakeapi.core.rooms import Rooms
from qakeapi.core.websockets.handler import WebSocketHandler

__all__ = ["Parts", "Settings", "assemble", "dispatch_table"]


@dataclass(frozen=True, slots=True)
class Settings:
    """What a node is told when it is made (see :class:`~qakeapi.core.clustering.ClusteredManager`)."""

    node_id: str
    instance_id: str
    channel: str
    buffer_seconds: float
    max_buffer: int
    heartbeat_interval: float
    node_timeout: float
    max_rooms_per_connection: int
    max_room_name_length: int
    on_lost: Callable[[int, str], Any] | None
    history: HistoryPolicy | None
    secret: str | bytes | None = None

    def __post_init__(self) -> None:
        if not self.node_id or "\n" in self.node_id:
            raise ValueError("node_id must be a non-empty string without newlines")
        if self.heartbeat_interval <= 0 or self.node_timeout <= self.heartbeat_interval:
            raise ValueError("heartbeat_interval must be positive and node_timeout larger than it")


@dataclass(frozen=True, slots=True)
class Parts:
    """The parts of one node, each with one job."""

    presence: Presence
    inbox: Inbox
    outbox: PublishBuffer
    peers: Peers
    rooms: Rooms
    publisher: Publisher
    directory: Directory
    membership: Membership
    history: HistoryRooms | None
    revocations: Revocations
    dispatcher: Dispatcher
    counts: ClusterCounters


def assemble(
    handler: WebSocketHandler, backend: BroadcastBackend, settings: Settings, start: Callable[[], Awaitable[None]]
) -> Parts:
    """Make and wire the parts of a node (no network: nothing runs until the facade starts it)."""
    s = settings
    presence, inbox = Presence(), Inbox()
    outbox = PublishBuffer(s.instance_id, s.node_id, max_age=s.buffer_seconds, max_size=s.max_buffer)
    peers = Peers(presence, s.node_timeout)
    signer = Signer(s.secret) if s.secret else None
    publisher = Publisher(backend, s.channel, outbox, s.node_id, signer)
    rooms = Rooms(max_rooms_per_connection=s.max_rooms_per_connection, max_room_name_length=s.max_room_name_length)
    directory = Directory(handler, rooms, s.instance_id, s.node_id, s.on_lost)
    membership = Membership(
        presence,
        peers,
        inbox,
        publisher,
        s.instance_id,
        s.node_id,
        heartbeat_interval=s.heartbeat_interval,
        node_timeout=s.node_timeout,
        hearing_since=lambda: backend.connected_since,
    )
    history = None
    if s.history is not None:
        history = HistoryRooms(s.history, backend, s.channel, directory, publisher, peers, s.instance_id, s.node_id)
    revocations = Revocations(publisher, s.node_id)
    rooms.relay = ClusterRooms(directory, membership, publisher, history, s.node_id, s.instance_id, start)
    dispatcher = Dispatcher(
        s.channel,
        s.instance_id,
        s.node_id,
        inbox,
        peers,
        dispatch_table(directory, membership, revocations, history),
        on_missing=(directory.on_missing, membership.on_missing),
        signer=signer,
        counts=ClusterCounters(),
    )
    return Parts(
        presence,
        inbox,
        outbox,
        peers,
        rooms,
        publisher,
        directory,
        membership,
        history,
        revocations,
        dispatcher,
        dispatcher.counts,
    )


def dispatch_table(
    directory: Directory, membership: Membership, revocations: Revocations, history: HistoryRooms | None
) -> dict[Kind, EnvelopeHandler]:
    """Where each kind of envelope is handled: the one table."""
    table: dict[Kind, EnvelopeHandler] = {
        Kind.ALL: directory.on_all,
        Kind.ROOM: directory.on_room,
        Kind.USER: directory.on_user,
        Kind.CONNECTION: directory.on_connection,
        Kind.LOST: directory.on_loss,
        Kind.HEARTBEAT: membership.heartbeat,
        Kind.PRESENCE: membership.diff,
        Kind.SYNC: membership.sync_asked,
        Kind.STATE: membership.state,
        Kind.BYE: membership.bye,
        Kind.REVOKE: revocations.receive,
        Kind.HISTORY: directory.on_publication if history is None else history.receive,
    }
    return table
