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
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from qakeapi.core.broadcast import BroadcastBackend
from qakeapi.core.cluster.envelope import (
    NUMBERED_KINDS,
    Envelope,
    Kind,
    decode_envelope,
    encode_envelope,
    encode_header,
)
from qakeapi.core.cluster.history import HistoryPolicy, Position, Recovery, history_keys, new_epoch, publication_frame
from qakeapi.core.cluster.identity import connection_id, instance_of, local_of, new_instance_id, worker_hint
from qakeapi.core.cluster.inbox import Inbox
from qakeapi.core.cluster.outbox import DEFAULT_BUFFER_SECONDS, DEFAULT_MAX_BUFFER, ClusterUnavailableError, Outbox
from qakeapi.core.cluster.peers import Peers
from qakeapi.core.codec import encode_json
from qakeapi.core.fanout import as_frame, deliver, deliver_in_order
from qakeapi.core.presence import Member, Presence, PresenceDiff, PresenceReason
from qakeapi.core.rooms import DEFAULT_MAX_ROOM_NAME_LENGTH, DEFAULT_MAX_ROOMS_PER_CONNECTION, Rooms
from qakeapi.core.tasks import stop_tasks, supervise, where
from qakeapi.core.websockets.connection import WebSocket
from qakeapi.core.websockets.handler import WebSocketHandler
from qakeapi.exceptions import BroadcastError

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
_BATCH = 512
_REDIS_SCHEMES = frozenset(
    {"redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"}
)

PresenceHook = Callable[[PresenceDiff], Awaitable[Any]]
"""``async def hook(diff)`` — called for every presence change, local or remote, in order."""

RevocationHook = Callable[[str, str, float], object]
"""``hook(user_id, reason, revoked_at)`` — applies a revocation from another node."""


def lost_event(count: int, node: str) -> dict[str, Any]:
    """The message a client receives when messages meant for it were lost between nodes.

    Args:
        count: How many messages were lost (``0``: unknown).
        node: The label of the node they came from.

    Returns:
        ``{"type": "cluster_lost", "recovered": False, "lost": count, "node": node}``.
    """
    return {"type": "cluster_lost", "recovered": False, "lost": count, "node": node}


_STOP_TIMEOUT = 5.0
"""Seconds :meth:`ClusteredManager.close` waits for a start, and for its tasks to stop, before it goes on."""


class _CatchUp:
    """A member joining a history room with a position: live publications wait in ``buffer``
    while the history is read; after the replay, those of ``epoch`` up to ``floor`` are dropped
    as replayed."""

    __slots__ = ("buffer", "epoch", "floor")

    def __init__(self) -> None:
        self.buffer: list[tuple[str, int, str]] | None = []
        self.epoch = ""
        self.floor = 0


class ClusteredManager:
    """Runs a handler's connections and addresses them across nodes.

    Creating it touches no network; it starts on first use (or :meth:`start`) and stops with
    :meth:`close` (register both as lifespan hooks). Starting never waits for the backend: a
    node with Redis down starts at once, serves its own clients and joins the cluster when
    Redis answers.

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

    Raises:
        ValueError: A bad setting, or ``history`` with a backend that keeps none.

    Attributes:
        instance_id: This process's unique id in the cluster.
        rooms: Cluster-wide rooms of this node's connections.
        presence: Who is in which room, on every node.
        peers: The other instances this node hears (see :class:`~qakeapi.core.cluster.peers.Peers`).
        delivered: How many frames this node wrote for envelopes from other nodes.
        history: Which rooms keep a history (``None``: none).
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
    ) -> None:
        if not node_id or "\n" in node_id:
            raise ValueError("node_id must be a non-empty string without newlines")
        if heartbeat_interval <= 0 or node_timeout <= heartbeat_interval:
            raise ValueError("heartbeat_interval must be positive and node_timeout larger than it")
        if history is not None and not backend.supports_history:
            raise ValueError(f"{type(backend).__name__} keeps no room history; use redis:// (streams) or memory://")
        self.handler = handler
        self.backend = backend
        self.history = history
        self._catchup: dict[tuple[str, WebSocket], _CatchUp] = {}
        self._unnumbered: set[str] = set()
        self._unnumbered_until = 0  # the outbox mark of the latest unnumbered publication
        self._publications = itertools.count(1)  # numbers this instance's history publications
        self._marking: asyncio.Task[None] | None = None
        self._room_offsets: dict[str, tuple[str, int]] = {}
        self.node_id = node_id
        self.channel = channel
        self.instance_id = new_instance_id()
        self.heartbeat_interval = heartbeat_interval
        self.node_timeout = node_timeout
        self.on_lost = on_lost
        self.rooms = Rooms(
            self, max_rooms_per_connection=max_rooms_per_connection, max_room_name_length=max_room_name_length
        )
        self.presence = Presence()
        self.inbox = Inbox()
        self.outbox = Outbox(self.instance_id, node_id, max_age=buffer_seconds, max_size=max_buffer)
        self.delivered = 0
        self._version = 0
        self.peers = Peers(self.presence, node_timeout)
        self._hooks: list[PresenceHook] = []
        self._revocation_hooks: list[RevocationHook] = []
        self._diffs: asyncio.Queue[PresenceDiff] | None = None
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._starting: asyncio.Task[None] | None = None
        self._closing: asyncio.Future[None] | None = None

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

    def connection_id(self, websocket: WebSocket) -> str:
        """The cluster-unique id of ``websocket``: :attr:`instance_id` followed by ``websocket.id``."""
        return connection_id(self.instance_id, websocket.id)

    def on_presence(self, hook: PresenceHook) -> PresenceHook:
        """Register ``async def hook(diff)`` for every presence change (usable as a decorator)."""
        self._hooks.append(hook)
        return hook

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the backend and this node's tasks, without waiting for the backend's server.

        Idempotent, and safe to call concurrently: every caller waits for the one start. A
        start during a :meth:`close` waits for the close, then starts again. After
        :meth:`close` it may be started again (in another event loop, too).
        """
        while self._closing is not None:
            await asyncio.wait((self._closing,))
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._start())
        starting = self._starting
        try:
            await asyncio.shield(starting)
        except Exception:
            if self._starting is starting:  # a failed start is not cached: the next call retries
                self._starting = None
            raise

    async def _start(self) -> None:
        self._warn_if_memory_in_workers()
        await self.backend.connect()
        await self.backend.subscribe(self.channel)
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._diffs = asyncio.Queue()
        name = f"{self.node_id}/{self.instance_id}"
        self._tasks = [  # supervised: a loop that fails is logged at once and restarted
            loop.create_task(supervise(run, f"{label} {name}", logger), name=f"{label} {name}")
            for run, label in (
                (self._dispatch, "qakeapi cluster dispatcher"),
                (self._send, "qakeapi cluster sender"),
                (self._heartbeat, "qakeapi cluster heartbeat"),
                (self._notify, "qakeapi cluster presence"),
            )
        ]
        if self.outbox:
            self._wake.set()
        logger.info("node %s (instance %s) started on channel %r", self.node_id, self.instance_id, self.channel)

    def _warn_if_memory_in_workers(self) -> None:
        from qakeapi.core.broadcast.memory import MemoryBackend

        hint = worker_hint()
        if isinstance(self.backend, MemoryBackend) and hint is not None:
            logger.warning(
                "node %s uses the in-process memory:// broadcast backend but this process looks like one of "
                "several workers (%s): broadcasts, rooms and presence will NOT reach the other workers' "
                "connections. Use redis:// for more than one process.",
                self.node_id,
                hint,
            )

    async def close(self, *, flush_timeout: float = 1.0) -> None:
        """Say goodbye to the other nodes, flush the buffer (bounded), stop. Idempotent.

        Args:
            flush_timeout: How long to wait for buffered publishes to go out, in seconds.
        """
        starting, self._starting = self._starting, None
        if starting is None:
            return
        self._closing = closing = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait((starting,), timeout=_STOP_TIMEOUT)
            if not starting.done():  # a start that hangs must not hang the close too
                starting.cancel()
                await asyncio.wait((starting,), timeout=_STOP_TIMEOUT)
            if starting.done() and not starting.cancelled() and starting.exception() is None:
                self._control(Kind.BYE, {})
                if self.outbox.down_since is None and self._idle is not None:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._idle.wait(), flush_timeout)
                if self.outbox:
                    logger.warning(
                        "node %s: closing with %d publishes not sent to the cluster", self.node_id, len(self.outbox)
                    )
            tasks, self._tasks = self._tasks, []
            if self._marking is not None:
                tasks.append(self._marking)
                self._marking = None
            if tasks:
                # cancelled until they stop: a library may absorb one cancellation (redis-py's publish can)
                pending = await stop_tasks(tasks, _STOP_TIMEOUT)
                for task in pending:
                    logger.warning(
                        "node %s: task %r did not stop within %.0fs of being cancelled; left to finish; "
                        "it waits in:\n%s",
                        self.node_id,
                        task.get_name(),
                        _STOP_TIMEOUT,
                        where(task),
                    )
                for task in tasks:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        logger.error(
                            "node %s: task %r had failed", self.node_id, task.get_name(), exc_info=task.exception()
                        )
            await self.backend.disconnect()
            self.peers.clear()
        finally:
            self._closing = None
            closing.set_result(None)

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
            qakeapi.core.cluster.outbox.ClusterUnavailableError: The other nodes cannot be reached (the backend has been
                down longer than ``buffer_seconds``, or the buffer is full). Local connections
                got the message.
        """
        await self.start()
        frame = as_frame(message)
        recipients = [ws for ws in self.handler.connections if ws is not exclude]
        sent = len(recipients) - len(deliver(frame, recipients))
        data = {"exclude": self.connection_id(exclude)} if exclude is not None else {}
        self._publish(Kind.ALL, data, frame)
        return sent

    async def send_to_user(self, user_id: str, message: Any) -> int:
        """Send ``message`` to every connection of ``user_id``, on every node.

        Returns:
            How many connections of this node it was sent to.

        Raises:
            qakeapi.core.cluster.outbox.ClusterUnavailableError: As for :meth:`broadcast`.
        """
        await self.start()
        frame = as_frame(message)
        sent = self._deliver_to_user(user_id, frame)
        self._publish(Kind.USER, {"user": user_id}, frame)
        return sent

    async def send_to_connection(self, connection: str, message: Any) -> bool:
        """Send ``message`` to the one connection with cluster-unique id ``connection``.

        Returns:
            ``True`` if it was written here or handed to the cluster for another node; ``False``
            if it belongs to this node and is not connected (or the id is malformed).

        Raises:
            qakeapi.core.cluster.outbox.ClusterUnavailableError: As for :meth:`broadcast`.
        """
        await self.start()
        owner = instance_of(connection)
        if owner is None:
            return False
        frame = as_frame(message)
        if owner == self.instance_id:
            websocket = self._local(connection)
            return websocket is not None and not deliver(frame, (websocket,))
        self._publish(Kind.CONNECTION, {"connection": connection}, frame)
        return True

    # -- revocations (a RevocationTransport for qakeapi.security.sessions.AuthSessions) --

    async def publish_revocation(self, user_id: str, reason: str, revoked_at: float) -> None:
        """Send a revocation to every other node (:class:`~qakeapi.security.sessions.RevocationTransport`).

        Revocations wait in the publish buffer like client messages, but are never dropped for
        their age: they go out, in order, whenever the backend takes them.

        Args:
            user_id: The user whose connections close.
            reason: The close reason.
            revoked_at: The revocation time (Unix seconds).

        Raises:
            qakeapi.core.cluster.outbox.ClusterUnavailableError: The backend has been down
                longer than ``buffer_seconds`` (or the buffer is full): the other nodes will not
                get this revocation, and the caller has to retry it.
        """
        await self.start()
        refusal = self.outbox.refusal(time.monotonic())
        if refusal is not None:
            raise ClusterUnavailableError(f"revocation not sent to the other nodes: {refusal}")
        self._control(Kind.REVOKE, {"user": user_id, "reason": reason, "at": revoked_at}, force=True)

    def subscribe_revocations(self, apply: RevocationHook) -> None:
        """Call ``apply(user_id, reason, revoked_at)`` for each revocation from another node.

        Args:
            apply: Typically :meth:`AuthSessions.revoke_local <qakeapi.security.sessions.AuthSessions.revoke_local>`
                (``WebSocketAuthMiddleware(..., transport=manager)`` registers it).
        """
        self._revocation_hooks.append(apply)

    def _receive_revocation(self, envelope: Envelope) -> None:
        data = envelope.data
        user, reason, revoked_at = data.get("user"), data.get("reason"), data.get("at")
        if not isinstance(user, str) or not isinstance(reason, str) or not isinstance(revoked_at, (int, float)):
            raise ValueError("malformed revocation: expected a string user and reason and a numeric time")
        logger.info("node %s: node %s revoked user %s", self.node_id, envelope.node, user)
        for apply in self._revocation_hooks:
            apply(user, reason, float(revoked_at))

    # -- the room relay (called by self.rooms) ------------------------------------------

    def room_joined(self, room: str, websocket: WebSocket) -> None:
        """Record and announce that ``websocket`` joined ``room``."""
        member = Member(self.connection_id(websocket), websocket.user_id, self.node_id, self.instance_id)
        diff = self.presence.add(room, member)
        if diff is not None:
            self._local_change(diff, joins=[[room, member.connection_id, member.user_id]], leaves=[])

    def room_left(self, room: str, websocket: WebSocket) -> None:
        """Record and announce that ``websocket`` left ``room``."""
        if self._catchup:
            self._catchup.pop((room, websocket), None)
        if room not in self.rooms:
            self._room_offsets.pop(room, None)
        diff = self.presence.remove(room, self.connection_id(websocket))
        if diff is not None:
            self._local_change(diff, joins=[], leaves=[[room, diff.leaves[0].connection_id]])

    def sequenced(self, room: str) -> bool:
        """Whether ``room`` keeps a history (its publications are numbered by the backend)."""
        return self.history is not None and self.history.rooms(room)

    async def room_publish(self, room: str, message: Any, exclude: WebSocket | None) -> int:
        """Publish ``message`` to a room with history (what :meth:`Room.broadcast
        <qakeapi.core.rooms.Room.broadcast>` does for one).

        The backend numbers it and appends it to the room's history and the cluster channel in
        one step; every node, this one included, delivers it to its members as a
        :func:`~qakeapi.core.cluster.history.publication_frame` when it reads it back, in offset
        order. When the backend cannot be reached it is delivered at once here, unnumbered
        (``"offset": null``), and through the publish buffer to the other nodes; the history then
        records a gap, so a recovery across it answers ``recovered: false``.

        Returns:
            How many members of this node it is for.

        Raises:
            TypeError: ``message`` is bytes (a history keeps JSON).
            qakeapi.core.cluster.outbox.ClusterUnavailableError: As for :meth:`broadcast`, when it
                had to go unnumbered.
        """
        if isinstance(message, bytes):
            raise TypeError("a room with history takes JSON messages, not bytes")
        await self.start()
        assert self.history is not None
        data = encode_json(message)
        fields: dict[str, Any] = {"room": room}
        if exclude is not None:
            fields["exclude"] = self.connection_id(exclude)
        header = encode_header(Envelope(Kind.HISTORY, self.instance_id, self.node_id, 0, fields, data))
        local = self.rooms.get(room)
        members = 0 if local is None else len(local.members) - (exclude in local.members)
        if room in self._unnumbered:  # its unnumbered ones may still wait in the buffer: stay behind them
            return self._publish_unnumbered(room, data, exclude, None)
        try:
            await self.backend.append_history(
                self.channel,
                history_keys(self.channel, room),
                header[:-1],  # the backend closes it with the offset and the epoch
                data,
                epoch=new_epoch(),
                size=self.history.size,
                ttl=self.history.ttl,
                publication=(self.instance_id, next(self._publications)),  # a retry is not numbered twice
            )
        except BroadcastError as exc:
            return self._publish_unnumbered(room, data, exclude, exc)
        return members

    def _publish_unnumbered(self, room: str, data: str, exclude: WebSocket | None, error: BroadcastError | None) -> int:
        """Deliver here at once and through the publish buffer, unnumbered; the room stays so until the
        buffer has sent them all and the gap is recorded (so the numbered ones never overtake them)."""
        if not self._unnumbered:
            logger.warning(
                "node %s: cannot number publications of rooms with history (%s); delivering them unnumbered "
                "until the backend answers (a recovery across them answers recovered: false)",
                self.node_id,
                error,
            )
        self._unnumbered.add(room)
        frame = publication_frame(room, None, None, data)
        local = self.rooms.get(room)
        sent = local.broadcast_local(frame, exclude=exclude) if local is not None else 0
        self.room_broadcast(room, frame, exclude)
        self._unnumbered_until = self.outbox.enqueued
        return sent

    async def _mark_gaps(self) -> None:
        """Record in each history that unnumbered publications happened (once the backend answers)."""
        assert self.history is not None
        for room in sorted(self._unnumbered):
            try:
                await self.backend.mark_history_gap(
                    history_keys(self.channel, room), size=self.history.size, ttl=self.history.ttl
                )
            except BroadcastError:
                return  # still unreachable: the next heartbeat tries again
            self._unnumbered.discard(room)
        logger.warning("node %s: rooms with history are numbered again (gaps recorded)", self.node_id)

    async def join(self, room: str, websocket: WebSocket, *, since: Position | None = None) -> Recovery | None:
        """Add ``websocket`` to ``room``; given its last ``since`` position, replay what it missed first.

        With a position, the room's history is read and either every publication after it is
        sent to ``websocket`` (in order, before any live one), or none is. Live publications
        that arrive meanwhile wait and follow the replay, without duplicates.

        Args:
            room: The room.
            websocket: The connection.
            since: The last position the client saw (``None``: just join).

        Returns:
            ``None`` without a position; else the :class:`~qakeapi.core.cluster.history.Recovery`
            (tell the client: :meth:`Recovery.as_message
            <qakeapi.core.cluster.history.Recovery.as_message>`).

        Raises:
            qakeapi.core.rooms.RoomLimitError: The join was refused.
        """
        await self.start()
        self.rooms.join(room, websocket)
        if since is None:
            return None
        if self.history is None or not self.history.rooms(room):
            return Recovery(False, 0, None, "the room keeps no history")
        key = (room, websocket)
        state = self._catchup[key] = _CatchUp()
        try:
            read = await self.backend.read_history(history_keys(self.channel, room), since.offset, self.history.size)
        except BroadcastError as exc:
            logger.warning("node %s: cannot read the history of room %r: %s", self.node_id, room, exc)
            read = None
        if self._catchup.get(key) is not state:  # it left the room meanwhile
            return Recovery(False, 0, None, "left the room during the recovery")
        floor = 0
        replay: list[str] = []
        if read is None:
            recovery = Recovery(False, 0, None, "the history could not be read")
        else:
            position = Position(read.epoch, read.top) if read.epoch is not None else None
            recovered, reason = read.recovery_from(since)
            if recovered and read.epoch is not None:
                replay = [publication_frame(room, read.epoch, e.offset, e.data or "null") for e in read.entries]
                floor = read.top
                recovery = Recovery(True, len(replay), position)
            else:
                recovery = Recovery(False, 0, position, reason)
        # The replay, then what arrived meanwhile (without what the replay had): in order, and
        # before the caller's own answer. Live publications keep arriving in the buffer until
        # it is empty and switched off, with no await in between.
        epoch = read.epoch if read is not None and read.epoch is not None else ""
        reached = 0
        for frame in replay:
            await deliver_in_order(frame, (websocket,))
        while state.buffer:
            live_epoch, offset, frame = state.buffer.pop(0)
            if live_epoch != epoch:  # the history was reset meanwhile: nothing of it was replayed
                floor = 0
            reached = max(reached, offset)
            if offset > floor:
                await deliver_in_order(frame, (websocket,))
        if self._catchup.get(key) is not state:  # it left the room meanwhile
            return recovery
        if floor and reached <= floor:
            state.buffer, state.epoch, state.floor = None, epoch, floor  # this node's stream is not at the top yet
        else:
            del self._catchup[key]
        return recovery

    def room_broadcast(self, room: str, frame: str | bytes, exclude: WebSocket | None) -> None:
        """Publish ``frame`` for the members of ``room`` on the other nodes."""
        data: dict[str, Any] = {"room": room}
        if exclude is not None:
            data["exclude"] = self.connection_id(exclude)
        self._publish(Kind.ROOM, data, frame)

    def _local_change(self, diff: PresenceDiff, *, joins: list[Any], leaves: list[Any]) -> None:
        self._version += 1
        self._control(Kind.PRESENCE, {"version": self._version, "joins": joins, "leaves": leaves})
        self._emit((diff,))

    # -- publishing ---------------------------------------------------------------------

    def _publish(self, kind: Kind, data: dict[str, Any], frame: str | bytes) -> None:
        try:
            self.outbox.put(kind, data, frame, time.monotonic())
        finally:
            self._kick()

    def _control(self, kind: Kind, data: dict[str, Any], *, force: bool = False) -> None:
        if self.outbox.put_control(kind, data, time.monotonic(), force=force):
            self._kick()

    def _kick(self) -> None:
        """Something was buffered: wake the sender (and the buffer is not idle any more)."""
        if self._wake is not None and self._idle is not None and self.outbox:
            self._idle.clear()
            self._wake.set()

    async def _send(self) -> None:
        """Publish the buffer in order; on failure keep it, retry with backoff, log state changes only."""
        assert self._wake is not None
        assert self._idle is not None
        delay = 0.02
        outbox = self.outbox
        while True:
            if not outbox:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            now = time.monotonic()
            outbox.expire(now)
            batch = outbox.batch(_BATCH)
            if not batch:
                continue
            try:
                await self.backend.publish_many(self.channel, [encode_envelope(envelope) for envelope in batch])
            except Exception as exc:
                if not isinstance(exc, BroadcastError):
                    logger.exception("node %s: publishing to the cluster failed unexpectedly", self.node_id)
                if outbox.failed(now):
                    logger.warning(
                        "node %s: cannot publish to the cluster (%s); buffering publishes for up to %.1fs",
                        self.node_id,
                        exc,
                        outbox.max_age,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            delay = 0.02
            waiting = len(outbox)
            outbox.sent(len(batch))
            if outbox.down_since is not None:
                down_for = time.monotonic() - outbox.down_since
                loss = outbox.recovered()
                logger.warning(
                    "node %s: publishing to the cluster again after %.1fs: %d buffered publishes flushed, %d dropped%s",
                    self.node_id,
                    down_for,
                    waiting,
                    0 if loss is None else loss.count,
                    "" if loss is None else f" ({loss.describe(outbox.max_age)})",
                )
                if loss is not None:
                    self._control(Kind.LOST, loss.as_data())
            elif (loss := outbox.take_loss()) is not None:
                logger.warning(
                    "node %s: %d publishes were dropped: %s", self.node_id, loss.count, loss.describe(outbox.max_age)
                )
                self._control(Kind.LOST, loss.as_data())

    async def _heartbeat(self) -> None:
        while True:
            if self.outbox.down_since is None:
                self._control(Kind.HEARTBEAT, {"version": self._version})
            elif not self.outbox:  # down, nothing waiting: a heartbeat probes for the way back
                self._control(Kind.HEARTBEAT, {"version": self._version}, force=True)
            self._expire_peers(time.monotonic())
            if (
                self._unnumbered
                and self.outbox.down_since is None
                and self.outbox.drained(self._unnumbered_until)
                and (self._marking is None or self._marking.done())
            ):  # in a task of its own: a slow Redis must not hold up the heartbeats
                self._marking = asyncio.get_running_loop().create_task(
                    self._mark_gaps(), name=f"qakeapi cluster gap marker {self.node_id}/{self.instance_id}"
                )
            await asyncio.sleep(self.heartbeat_interval)

    def _expire_peers(self, now: float) -> None:
        for instance, peer in self.peers.dead(now, self.backend.connected_since):
            self._forget(instance, PresenceReason.NODE_DOWN)
            logger.warning(
                "node %s: node %s (instance %s) sent no heartbeat for %.1fs; it counts as down",
                self.node_id,
                peer.node,
                instance,
                self.node_timeout,
            )

    def _forget(self, instance: str, reason: PresenceReason) -> None:
        self.inbox.forget(instance)
        self._emit(self.peers.forget(instance, reason))

    # -- receiving ----------------------------------------------------------------------

    async def _dispatch(self) -> None:
        async for event in self.backend.events():
            if event.channel != self.channel:  # a backend shared with other channels
                continue
            try:
                envelope = decode_envelope(event.payload)
            except ValueError as exc:
                logger.warning("node %s: ignoring a malformed message on %r: %s", self.node_id, event.channel, exc)
                continue
            try:
                if envelope.kind is Kind.HISTORY:  # numbered by the backend: every node delivers it, this one too
                    self._receive_publication(envelope)
                    continue
                if envelope.instance == self.instance_id:
                    continue
                if envelope.kind in NUMBERED_KINDS:
                    missing = self.inbox.accept(envelope.instance, envelope.seq)
                    if missing is None:
                        continue
                else:
                    missing = self.inbox.check(envelope.instance, envelope.seq)
                self._receive(envelope, missing)
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
                    "node %s: handling a %s message from node %s failed",
                    self.node_id,
                    envelope.kind.value,
                    envelope.node,
                )

    def _receive(self, envelope: Envelope, missing: int) -> None:
        now = time.monotonic()
        instance = envelope.instance
        self.peers.heard(instance, envelope.node, now)
        if missing:
            logger.warning(
                "node %s: %d messages from node %s (instance %s) never arrived",
                self.node_id,
                missing,
                envelope.node,
                envelope.instance,
            )
            self._tell_lost(missing, envelope.node, self.handler.connections)
            self._sync(instance, self.peers.want_sync(instance, now, force=True))
        kind = envelope.kind
        data = envelope.data
        frame = envelope.frame
        if kind is Kind.ALL and frame is not None:
            exclude = self._local(data.get("exclude"))
            self._count(frame, [ws for ws in self.handler.connections if ws is not exclude])
        elif kind is Kind.ROOM and frame is not None:
            room = self.rooms.get(data["room"])
            if room is not None:
                exclude = self._local(data.get("exclude"))
                self._count(frame, [ws for ws in room.members if ws is not exclude])
        elif kind is Kind.USER and frame is not None:
            self.delivered += self._deliver_to_user(data["user"], frame)
        elif kind is Kind.CONNECTION and frame is not None:
            websocket = self._local(data["connection"])
            if websocket is not None:
                self._count(frame, (websocket,))
        elif kind is Kind.HEARTBEAT:
            self._sync(instance, self.peers.heartbeat(instance, data["version"], now))
        elif kind is Kind.PRESENCE:
            diffs, resync = self.peers.diff(instance, data["version"], data["joins"], data["leaves"], now)
            self._emit(diffs)
            self._sync(instance, resync)
        elif kind is Kind.SYNC:
            if data.get("to") == self.instance_id:
                mine = self.presence.of_instance(self.instance_id)
                members = [[room, m.connection_id, m.user_id] for room, m in mine]
                self._control(Kind.STATE, {"version": self._version, "members": members})
        elif kind is Kind.STATE:
            self._emit(self.peers.state(instance, data["version"], data["members"]))
        elif kind is Kind.LOST:
            self._receive_loss(envelope)
        elif kind is Kind.REVOKE:
            self._receive_revocation(envelope)
        elif kind is Kind.BYE:
            self._forget(instance, PresenceReason.NODE_LEFT)

    def _receive_publication(self, envelope: Envelope) -> None:
        fields = envelope.data
        name, offset, epoch, data = fields.get("room"), fields.get("o"), fields.get("e"), envelope.frame
        if not (isinstance(name, str) and isinstance(offset, int) and isinstance(epoch, str) and isinstance(data, str)):
            logger.warning("node %s: ignoring a malformed publication from node %s", self.node_id, envelope.node)
            return
        if envelope.instance != self.instance_id:
            self.peers.heard(envelope.instance, envelope.node, time.monotonic())
        room = self.rooms.get(name)
        if room is None:
            return
        last = self._room_offsets.get(name)
        self._room_offsets[name] = (epoch, offset)
        frame = publication_frame(name, epoch, offset, data)
        exclude = self._local(fields.get("exclude"))
        recipients = [ws for ws in room.members if ws is not exclude]
        if last is not None and last[0] == epoch and offset > last[1] + 1:
            missed = offset - last[1] - 1
            logger.warning(
                "node %s: %d publications of room %r never reached this node (offsets %d-%d)",
                self.node_id,
                missed,
                name,
                last[1] + 1,
                offset - 1,
            )
            self._tell_lost(missed, envelope.node, recipients)
        if self._catchup:
            recipients = self._catching_up(name, epoch, offset, frame, recipients)
        self._count(frame, recipients)

    def _catching_up(
        self, room: str, epoch: str, offset: int, frame: str, recipients: list[WebSocket]
    ) -> list[WebSocket]:
        """The recipients that get ``frame`` now; members still recovering buffer or skip it."""
        now = []
        for websocket in recipients:
            state = self._catchup.get((room, websocket))
            if state is None:
                now.append(websocket)
            elif state.buffer is not None:
                state.buffer.append((epoch, offset, frame))
            elif offset > state.floor or epoch != state.epoch:
                del self._catchup[(room, websocket)]
                now.append(websocket)
        return now

    def _sync(self, instance: str, wanted: bool) -> None:
        if wanted:
            self._control(Kind.SYNC, {"to": instance})

    def _receive_loss(self, envelope: Envelope) -> None:
        data = envelope.data
        if data.get("everyone"):
            affected: set[WebSocket] = set(self.handler.connections)
        else:
            affected = set()
            for name in data.get("rooms", ()):
                room = self.rooms.get(name)
                if room is not None:
                    affected.update(room.members)
            users = set(data.get("users", ()))
            affected.update(ws for ws in self.handler.connections if ws.user_id in users)
            for cid in data.get("connections", ()):
                websocket = self._local(cid)
                if websocket is not None:
                    affected.add(websocket)
        logger.warning(
            "node %s: node %s dropped %d messages during an outage; telling %d affected connections",
            self.node_id,
            envelope.node,
            data.get("count", 0),
            len(affected),
        )
        self._tell_lost(int(data.get("count", 0)), envelope.node, affected)

    def _tell_lost(self, count: int, node: str, connections: Iterable[WebSocket]) -> None:
        if self.on_lost is None:
            return
        deliver(as_frame(self.on_lost(count, node)), tuple(connections))

    # -- local delivery -----------------------------------------------------------------

    def _local(self, connection: Any) -> WebSocket | None:
        if not isinstance(connection, str) or instance_of(connection) != self.instance_id:
            return None
        local_id = local_of(connection)
        for websocket in self.handler.connections:
            if str(websocket.id) == local_id:
                return websocket
        return None

    def _deliver_to_user(self, user_id: str, frame: str | bytes) -> int:
        recipients = [ws for ws in self.handler.connections if ws.user_id == user_id]
        return len(recipients) - len(deliver(frame, recipients))

    def _count(self, frame: str | bytes, recipients: list[WebSocket] | tuple[WebSocket, ...]) -> None:
        dead = deliver(frame, recipients)
        self.delivered += len(recipients) - len(dead)
        for websocket in dead:
            for name in self.rooms.rooms_of(websocket):
                self.rooms.leave(name, websocket)

    # -- presence hooks -----------------------------------------------------------------

    def _emit(self, diffs: Iterable[PresenceDiff]) -> None:
        if self._hooks and self._diffs is not None:
            for diff in diffs:
                self._diffs.put_nowait(diff)

    async def _notify(self) -> None:
        assert self._diffs is not None
        while True:
            diff = await self._diffs.get()
            for hook in self._hooks:
                try:
                    await hook(diff)
                except Exception:
                    logger.exception("node %s: presence hook %s failed on %s", self.node_id, hook, diff)


def create_cluster_backend(url: str) -> BroadcastBackend:
    """Create the backend a cluster uses for ``url``, without connecting it.

    ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://host:port,.../service`` and
    ``redis+cluster://host:port`` get a
    :class:`~qakeapi.core.broadcast.redis_stream.RedisStreamBackend` (Redis Streams: a node that
    reconnects misses nothing still in the stream); ``memory://[name]`` an in-process
    :class:`~qakeapi.core.broadcast.memory.MemoryBackend` for one process.

    Raises:
        ValueError: The scheme is not supported.
    """
    scheme = url.partition("://")[0]
    if scheme in _REDIS_SCHEMES:
        from qakeapi.core.broadcast.redis_stream import RedisStreamBackend, parse_sentinel_url

        if "sentinel" in scheme:
            parse_sentinel_url(url)  # a bad URL fails here, not in the reader later
        return RedisStreamBackend(url)
    if scheme == "memory":
        from qakeapi.core.broadcast import create_backend

        return create_backend(url)
    raise ValueError(
        f"unsupported cluster URL scheme {scheme!r} (use redis://, rediss://, unix://, redis+sentinel://, "
        "redis+cluster:// or memory://)"
    )


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
