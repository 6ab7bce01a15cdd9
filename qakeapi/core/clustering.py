"""A cluster of nodes: broadcasts, rooms, users, connections and presence across processes.

Each process runs a :class:`ClusteredManager` around its
:class:`~qakeapi.core.websockets.handler.WebSocketHandler`. A node delivers to its own
connections directly, at once, and publishes one envelope (see
:mod:`qakeapi.core.cluster.envelope`) for the other nodes, which deliver it to theirs and
ignore their own envelopes: each connection gets each message exactly once, and a slow or
absent backend never delays or loses same-node delivery.

Publishing goes through a bounded, numbered buffer (:mod:`qakeapi.core.cluster.outbox`): an
outage of the backend shorter than ``buffer_seconds`` loses nothing (the buffer is flushed, in
order, when it is back; receivers drop duplicates by sequence number); past the bound the
losses are counted and the affected clients on the other nodes receive :func:`lost_event`.

Presence (:mod:`qakeapi.core.presence`) is replicated with join/leave diffs, heartbeats every
``heartbeat_interval`` seconds, and full-state sync when a node sees a gap. A node that sends no
heartbeat for ``node_timeout`` seconds (killed, or cut off) is declared down: its members
leave on every other node. The guarantees and timings are in the clustering topic of the docs.

The manager is a facade; the work is done by parts with one job each, in
:mod:`qakeapi.core.cluster`: the :class:`~qakeapi.core.cluster.publisher.Publisher` (the publish
buffer and the loop that sends it), the :class:`~qakeapi.core.cluster.dispatcher.Dispatcher`
(each envelope to the handler of its kind: the table is ``ClusteredManager._handlers``), the
:class:`~qakeapi.core.cluster.directory.Directory` (this node's connections, and local delivery),
the :class:`~qakeapi.core.cluster.membership.Membership` (presence and heartbeats) and, for rooms
with history, :class:`~qakeapi.core.cluster.recovery.HistoryRooms`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from qakeapi.core.broadcast import BroadcastBackend, create_backend
from qakeapi.core.cluster.assembly import Settings, assemble
from qakeapi.core.cluster.envelope import Kind
from qakeapi.core.cluster.history import HistoryPolicy, Position, Recovery
from qakeapi.core.cluster.identity import instance_of, new_instance_id
from qakeapi.core.cluster.lifecycle import Lifecycle
from qakeapi.core.cluster.membership import PresenceHook
from qakeapi.core.cluster.outbox import DEFAULT_BUFFER_SECONDS, DEFAULT_MAX_BUFFER
from qakeapi.core.cluster.revocations import RevocationHook
from qakeapi.core.cluster.signing import SECRET_VARIABLE
from qakeapi.core.counters import observed
from qakeapi.core.rooms import DEFAULT_MAX_ROOM_NAME_LENGTH, DEFAULT_MAX_ROOMS_PER_CONNECTION
from qakeapi.core.websockets.connection import WebSocket
from qakeapi.core.websockets.fanout import as_frame, deliver
from qakeapi.core.websockets.handler import WebSocketHandler

__all__ = [
    "DEFAULT_CHANNEL",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_NODE_TIMEOUT",
    "ClusteredManager",
    "PresenceHook",
    "RevocationHook",
    "create_cluster_backend",
    "create_clustered_manager",
    "lost_event",
]

logger = logging.getLogger("qakeapi.clustering")

DEFAULT_CHANNEL = "qakeapi:broadcast"
DEFAULT_HEARTBEAT_INTERVAL = 1.0
DEFAULT_NODE_TIMEOUT = 5.0


def lost_event(count: int, node: str) -> dict[str, Any]:
    """The message a client receives when messages meant for it were lost between nodes.

    Args:
        count: How many messages were lost (``0``: unknown).
        node: The label of the node they came from.

    Returns:
        ``{"type": "cluster_lost", "recovered": False, "lost": count, "node": node}``.
    """
    return {"type": "cluster_lost", "recovered": False, "lost": count, "node": node}


class ClusteredManager:
    """Runs a handler's connections and addresses them across nodes: the facade of the cluster.

    Creating it touches no network; it starts on first use (or :meth:`start`) and stops with
    :meth:`close` (register both as lifespan hooks). Starting never waits for the backend: a
    node with Redis down starts at once, serves its own clients and joins the cluster when
    Redis answers. The parts that do the work are listed in the module's docstring.

    Args:
        handler: The handler whose connections this node holds.
        backend: The broadcast backend shared by the nodes.
        node_id: This node's label (several processes may share one; :attr:`instance_id` is
            unique).
        channel: The backend channel the cluster uses.
        buffer_seconds: How long a publish may wait for an unreachable backend.
        max_buffer: How many publishes may wait.
        heartbeat_interval: Seconds between heartbeats.
        node_timeout: Seconds without a heartbeat after which a node counts as down.
        max_rooms_per_connection: See :class:`~qakeapi.core.rooms.Rooms`.
        max_room_name_length: See :class:`~qakeapi.core.rooms.Rooms`.
        on_lost: Makes the message sent to clients whose messages were lost
            (:func:`lost_event` by default; ``None`` sends nothing).
        history: Which rooms keep a history their members can recover from, and how much
            (see :mod:`qakeapi.core.cluster.history`); ``None``: no room does.
        secret: The secret the nodes share to authenticate their envelopes (at least 16
            bytes; see :mod:`qakeapi.core.cluster.signing`). ``None``: the environment variable
            ``QAKEAPI_CLUSTER_SECRET``, if set; without either, anyone who can write to the
            backend can speak for any node (one warning at start-up says so).

    Raises:
        ValueError: A bad setting, or ``history`` with a backend that keeps none.

    Attributes:
        instance_id: This process's unique id in the cluster.
        rooms: Cluster-wide rooms of this node's connections.
        presence: Who is in which room, on every node.
        peers: The other instances this node hears (see :class:`~qakeapi.core.cluster.peers.Peers`).
        outbox: The publish buffer (see :class:`~qakeapi.core.cluster.outbox.PublishBuffer`).
        inbox: The sequence numbers heard from each instance.
        history: Which rooms keep a history (``None``: none).
        counts: What this node counts for its metrics (envelopes received, their lag, history
            recoveries; see :mod:`qakeapi.core.metrics`).
    """

    def __init__(
        self,
        handler: WebSocketHandler,
        backend: BroadcastBackend,
        node_id: str,
        *,
        channel: str = DEFAULT_CHANNEL,
        buffer_seconds: float = DEFAULT_BUFFER_SECONDS,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        node_timeout: float = DEFAULT_NODE_TIMEOUT,
        max_rooms_per_connection: int = DEFAULT_MAX_ROOMS_PER_CONNECTION,
        max_room_name_length: int = DEFAULT_MAX_ROOM_NAME_LENGTH,
        on_lost: Callable[[int, str], Any] | None = lost_event,
        history: HistoryPolicy | None = None,
        secret: str | bytes | None = None,
    ) -> None:
        if history is not None and not backend.supports_history:
            raise ValueError(f"{type(backend).__name__} keeps no room history; use redis:// (streams) or memory://")
        self.handler, self.backend, self.history = handler, backend, history
        self.node_id, self.instance_id = node_id, new_instance_id()
        self.heartbeat_interval, self.node_timeout = heartbeat_interval, node_timeout
        settings = Settings(
            node_id,
            self.instance_id,
            channel,
            buffer_seconds,
            max_buffer,
            heartbeat_interval,
            node_timeout,
            max_rooms_per_connection,
            max_room_name_length,
            on_lost,
            history,
            secret if secret is not None else os.environ.get(SECRET_VARIABLE) or None,
        )
        parts = assemble(handler, backend, settings, self.start)
        self.presence, self.inbox, self.outbox, self.peers = parts.presence, parts.inbox, parts.outbox, parts.peers
        self.rooms = parts.rooms
        self._publisher, self._directory, self._membership = parts.publisher, parts.directory, parts.membership
        self._history, self._revocations, self._dispatcher = parts.history, parts.revocations, parts.dispatcher
        self._lifecycle = Lifecycle(backend, parts, settings)
        self.counts = parts.counts
        observed.clusters.add(self)  # weakly: its metrics are read at scrape time

    def __repr__(self) -> str:
        return f"<ClusteredManager node={self.node_id!r} instance={self.instance_id} connections={self.connections}>"

    @property
    def connections(self) -> int:
        """How many connections this node holds."""
        return len(self.handler.connections)

    @property
    def nodes(self) -> dict[str, str]:
        """The other live instances this node knows, as ``{instance_id: node_id}``."""
        return self.peers.nodes()

    @property
    def channel(self) -> str:
        """The backend channel the cluster uses (set it before the manager starts)."""
        return self._dispatcher.channel

    @channel.setter
    def channel(self, channel: str) -> None:
        self._publisher.channel = self._dispatcher.channel = channel
        if self._history is not None:
            self._history.channel = channel

    @property
    def rejected(self) -> dict[str, int]:
        """Envelopes dropped as unauthenticated, by cause (``"forged"``, ``"replayed"``)."""
        return self._dispatcher.rejected

    def outage_seconds(self, now: float) -> float:
        """Seconds publishing to the backend has been impossible since the start, the current outage included.

        Args:
            now: ``time.monotonic()``.
        """
        backoff = self._publisher.backoff
        current = 0.0 if backoff.down_since is None else max(0.0, now - backoff.down_since)
        return backoff.down_seconds + current

    @property
    def delivered(self) -> int:
        """How many frames this node wrote for envelopes from other nodes."""
        return self._directory.delivered

    def connection_id(self, websocket: WebSocket) -> str:
        """The cluster-unique id of ``websocket``: :attr:`instance_id` followed by ``websocket.id``."""
        return self._directory.connection_id(websocket)

    def on_presence(self, hook: PresenceHook) -> PresenceHook:
        """Register ``async def hook(diff)`` for every presence change (usable as a decorator)."""
        self._membership.hooks.append(hook)
        return hook

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the backend and this node's tasks, without waiting for the backend's server.

        Idempotent, and safe to call concurrently: every caller waits for the one start. A
        start during a :meth:`close` waits for the close, then starts again. After
        :meth:`close` it may be started again (in another event loop, too).
        """
        await self._lifecycle.start()

    async def close(self, *, flush_timeout: float = 1.0) -> None:
        """Say goodbye to the other nodes, flush the buffer (bounded), stop. Idempotent.

        Args:
            flush_timeout: How long to wait for buffered publishes to go out, in seconds.
        """
        await self._lifecycle.close(flush_timeout)

    async def handle_connection(self, websocket: WebSocket) -> None:
        """Start the manager if needed, run ``websocket`` through the handler, then take it out of its rooms.

        Args:
            websocket: The connection.
        """
        await self.start()
        self.rooms.serve(websocket)  # a join into another Rooms() is refused, loudly
        try:
            await self.handler.handle_connection(websocket)
        finally:
            self.rooms.leave_all(websocket)
            self.rooms.release(websocket)

    # -- addressing ---------------------------------------------------------------------

    async def broadcast(self, message: Any, *, exclude: WebSocket | None = None) -> int:
        """Send ``message`` to every connection of the handler on every node, this one first.

        Args:
            message: ``str`` or ``bytes`` are sent as they are; anything else as JSON text.
            exclude: A connection of this node to leave out.

        Returns:
            How many connections of this node it was sent to.

        Raises:
            qakeapi.exceptions.ClusterUnavailableError: The other nodes cannot be reached (the backend has been
                down longer than ``buffer_seconds``, or the buffer is full). Local connections
                got the message.
        """
        await self.start()
        frame = as_frame(message)
        recipients = [ws for ws in self.handler.connections if ws is not exclude]
        sent = len(recipients) - len(deliver(frame, recipients))
        data = {"exclude": self.connection_id(exclude)} if exclude is not None else {}
        self._publisher.publish(Kind.ALL, data, frame)
        return sent

    async def send_to_user(self, user_id: str, message: Any) -> int:
        """Send ``message`` to every connection of ``user_id``, on every node.

        Returns:
            How many connections of this node it was sent to.

        Raises:
            qakeapi.exceptions.ClusterUnavailableError: As for :meth:`broadcast`.
        """
        await self.start()
        frame = as_frame(message)
        recipients = self._directory.of_user(user_id)
        sent = len(recipients) - len(deliver(frame, recipients))
        self._publisher.publish(Kind.USER, {"user": user_id}, frame)
        return sent

    async def send_to_connection(self, connection: str, message: Any) -> bool:
        """Send ``message`` to the one connection with cluster-unique id ``connection``.

        Returns:
            ``True`` if it was written here or handed to the cluster for another node; ``False``
            if it belongs to this node and is not connected (or the id is malformed).

        Raises:
            qakeapi.exceptions.ClusterUnavailableError: As for :meth:`broadcast`.
        """
        await self.start()
        owner = instance_of(connection)
        if owner is None:
            return False
        frame = as_frame(message)
        if owner == self.instance_id:
            websocket = self._directory.get(connection)
            return websocket is not None and not deliver(frame, (websocket,))
        self._publisher.publish(Kind.CONNECTION, {"connection": connection}, frame)
        return True

    # -- revocations (a RevocationTransport for qakeapi.security.sessions.AuthSessions) --

    async def publish_revocation(self, user_id: str, reason: str, revoked_at: float) -> None:
        """Send a revocation to every other node (:class:`~qakeapi.security.sessions.RevocationTransport`).

        Args:
            user_id: The user whose connections close.
            reason: The close reason.
            revoked_at: The revocation time (Unix seconds).

        Raises:
            qakeapi.exceptions.ClusterUnavailableError: The backend has been down
                longer than ``buffer_seconds`` (or the buffer is full): the other nodes will not
                get this revocation, and the caller has to retry it.
        """
        await self.start()
        self._revocations.publish(user_id, reason, revoked_at)

    def subscribe_revocations(self, apply: RevocationHook) -> None:
        """Call ``apply(user_id, reason, revoked_at)`` for each revocation from another node.

        Args:
            apply: Typically :meth:`AuthSessions.revoke_local <qakeapi.security.sessions.AuthSessions.revoke_local>`
                (``WebSocketAuthMiddleware(..., transport=manager)`` registers it).
        """
        self._revocations.hooks.append(apply)

    # -- rooms with history ---------------------------------------------------------------

    async def join(self, room: str, websocket: WebSocket, *, since: Position | None = None) -> Recovery | None:
        """Add ``websocket`` to ``room``; given its last ``since`` position, replay what it missed first.

        With a position, either every publication after it is sent to ``websocket`` (in order,
        before any live one, without duplicates), or none is.

        Args:
            room: The room.
            websocket: The connection.
            since: The last position the client saw (``None``: just join).

        Returns:
            ``None`` without a position; else the :class:`~qakeapi.core.cluster.history.Recovery`
            (tell the client: :meth:`Recovery.as_message
            <qakeapi.core.cluster.history.Recovery.as_message>`).

        Raises:
            qakeapi.exceptions.RoomLimitError: The join was refused.
        """
        await self.start()
        self.rooms.join(room, websocket)
        if since is None:
            return None
        if self._history is None:
            return Recovery(False, 0, None, "the room keeps no history")
        recovery = await self._history.join(room, websocket, since)
        result = "recovered" if recovery.recovered else "failed"
        self.counts.history_recoveries[result] = self.counts.history_recoveries.get(result, 0) + 1
        return recovery


def create_cluster_backend(url: str, **options: Any) -> BroadcastBackend:
    """Create the backend a cluster uses for ``url``, without connecting it.

    The same as :func:`qakeapi.core.broadcast.create_backend` (one table of schemes): ``redis://``
    and its Sentinel, Cluster and TLS forms are Redis Streams (a node that reconnects misses
    nothing still in the stream), ``memory://[name]`` is one process.

    Raises:
        ValueError: The scheme is not supported.
    """
    return create_backend(url, **options)


def create_clustered_manager(
    handler: WebSocketHandler,
    redis_url: str = "redis://localhost:6379",
    node_id: str = "node-1",
    *,
    channel: str = DEFAULT_CHANNEL,
    **options: Any,
) -> ClusteredManager:
    """Create a :class:`ClusteredManager` for ``handler`` without touching the network.

    Args:
        handler: The handler whose connections this node holds.
        redis_url: ``redis://...`` for a cluster (see :func:`create_cluster_backend`),
            ``memory://`` for one process.
        node_id: This node's label.
        channel: The channel (for Redis, the stream key) the cluster uses.
        **options: The other keyword arguments of :class:`ClusteredManager`.

    Returns:
        The manager.
    """
    return ClusteredManager(handler, create_cluster_backend(redis_url), node_id, channel=channel, **options)
