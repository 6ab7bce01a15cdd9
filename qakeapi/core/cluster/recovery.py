"""Rooms with history on a cluster: numbering, gaps, live delivery in offset order, and ``join(since=...)``.

A publication to such a room is numbered by the backend, appended to the room's history and to
the cluster channel in one step (:meth:`HistoryRooms.publish`); every node, the publisher's
included, delivers it when it reads it back (:meth:`HistoryRooms.receive`), so every member sees
one order and a client's position is the last offset it got. When the backend cannot number, a
publication goes out unnumbered (here at once, to the other nodes through the publish buffer)
and the history records a gap once the buffer has sent it, so a recovery across it answers
``recovered: false``. The guarantees are in :mod:`qakeapi.core.cluster.history`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from qakeapi.core.broadcast.base import BroadcastBackend
from qakeapi.core.broadcast.history import HistoryAppend
from qakeapi.core.cluster.directory import Directory
from qakeapi.core.cluster.envelope import Envelope, Kind, encode_header
from qakeapi.core.cluster.history import (
    HistoryPolicy,
    Position,
    Recovery,
    history_keys,
    new_epoch,
    publication_frame,
)
from qakeapi.core.cluster.outbox import PublishBuffer
from qakeapi.core.cluster.peers import Peers
from qakeapi.core.cluster.publisher import Publisher
from qakeapi.core.codec import encode_json
from qakeapi.core.websockets.connection import WebSocket
from qakeapi.core.websockets.fanout import deliver_in_order
from qakeapi.exceptions import BroadcastError

__all__ = ["HistoryRooms"]

logger = logging.getLogger("qakeapi.clustering")


class _CatchUp:
    """A member joining with a position: live publications wait in ``buffer`` while the history is
    read; after the replay, those of ``epoch`` up to ``floor`` are dropped as replayed."""

    __slots__ = ("buffer", "epoch", "floor")

    def __init__(self) -> None:
        self.buffer: list[tuple[str, int, str]] | None = []
        self.epoch = ""
        self.floor = 0


@dataclass(eq=False)
class HistoryRooms:
    """The rooms of one node that keep a history.

    Args:
        policy: Which rooms keep a history, and how much.
        backend: The broadcast backend (it numbers and keeps the histories).
        channel: The cluster channel.
        directory: This node's connections.
        publisher: The way out to the other nodes (for unnumbered publications).
        peers: The other instances (a publication is news of its publisher).
        instance_id: This instance's id.
        node_id: This node's label.
    """

    policy: HistoryPolicy
    backend: BroadcastBackend
    channel: str
    directory: Directory
    publisher: Publisher
    peers: Peers
    instance_id: str
    node_id: str
    # rooms whose publications go out unnumbered for now, and the buffer's mark of the latest one
    unnumbered: set[str] = field(default_factory=set, init=False)
    _unnumbered_until: int = field(default=0, init=False)
    # numbers this instance's publications: a retry is not numbered twice
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1), init=False)
    _marking: asyncio.Task[None] | None = field(default=None, init=False)
    _catchup: dict[tuple[str, WebSocket], _CatchUp] = field(default_factory=dict, init=False)
    _offsets: dict[str, tuple[str, int]] = field(default_factory=dict, init=False)

    def keeps(self, room: str) -> bool:
        """Whether ``room`` keeps a history."""
        return self.policy.rooms(room)

    # -- publishing -----------------------------------------------------------------------

    async def publish(self, room: str, message: Any, exclude: WebSocket | None) -> int:
        """Number and publish ``message`` (see :meth:`ClusterRooms.room_publish
        <qakeapi.core.cluster.relay.ClusterRooms.room_publish>`); returns this node's member count."""
        if isinstance(message, bytes):
            raise TypeError("a room with history takes JSON messages, not bytes")
        data = encode_json(message)
        if room in self.unnumbered:  # its unnumbered ones may still wait in the buffer: stay behind them
            return self._publish_unnumbered(room, data, exclude, None)
        fields: dict[str, Any] = {"room": room}
        if exclude is not None:
            fields["exclude"] = self.directory.connection_id(exclude)
        header = encode_header(Envelope(Kind.HISTORY, self.instance_id, self.node_id, 0, fields, data))
        local = self.directory.rooms.get(room)
        members = 0 if local is None else len(local.members) - (exclude in local.members)
        try:
            await self.backend.append_history(
                HistoryAppend(
                    self.channel,
                    history_keys(self.channel, room),
                    self._open(header, data),  # the backend closes it with the offset and the epoch
                    data,
                    epoch=new_epoch(),
                    size=self.policy.size,
                    ttl=self.policy.ttl,
                    publication=(self.instance_id, next(self._numbers)),
                )
            )
        except BroadcastError as exc:
            return self._publish_unnumbered(room, data, exclude, exc)
        return members

    def _open(self, header: str, data: str) -> str:
        """The header without its closing brace (the backend's script closes it), signed if the cluster has a secret."""
        open_header = header[:-1]
        signer = self.publisher.signer
        return open_header if signer is None else signer.sign_open(open_header, data)

    def _publish_unnumbered(self, room: str, data: str, exclude: WebSocket | None, error: BroadcastError | None) -> int:
        """Deliver here at once and through the publish buffer, unnumbered; the room stays so until
        the buffer has sent them all and the gap is recorded (the numbered ones never overtake them)."""
        if not self.unnumbered:
            logger.warning(
                "node %s: cannot number publications of rooms with history (%s); delivering them unnumbered "
                "until the backend answers (a recovery across them answers recovered: false)",
                self.node_id,
                error,
            )
        self.unnumbered.add(room)
        frame = publication_frame(room, None, None, data)
        local = self.directory.rooms.get(room)
        sent = local.broadcast_local(frame, exclude=exclude) if local is not None else 0
        fields: dict[str, Any] = {"room": room}
        if exclude is not None:
            fields["exclude"] = self.directory.connection_id(exclude)
        self.publisher.publish(Kind.ROOM, fields, frame)
        self._unnumbered_until = self.publisher.outbox.enqueued
        return sent

    def mark_gaps_when_due(self, outbox: PublishBuffer) -> None:
        """Record the gaps once the backend answers and the buffer sent the unnumbered ones (a heartbeat calls it)."""
        if (
            self.unnumbered
            and outbox.down_since is None
            and outbox.drained(self._unnumbered_until)
            and (self._marking is None or self._marking.done())
        ):  # in a task of its own: a slow Redis must not hold up the heartbeats
            self._marking = asyncio.get_running_loop().create_task(
                self._mark_gaps(), name=f"qakeapi cluster gap marker {self.node_id}/{self.instance_id}"
            )

    def stop(self) -> asyncio.Task[None] | None:
        """Hand over the gap-marking task, if one runs (the facade stops it with the others)."""
        marking, self._marking = self._marking, None
        return marking

    async def _mark_gaps(self) -> None:
        for room in sorted(self.unnumbered):
            try:
                await self.backend.mark_history_gap(
                    history_keys(self.channel, room), size=self.policy.size, ttl=self.policy.ttl
                )
            except BroadcastError:
                return  # still unreachable: the next heartbeat tries again
            self.unnumbered.discard(room)
        logger.warning("node %s: rooms with history are numbered again (gaps recorded)", self.node_id)

    # -- joining with a position ----------------------------------------------------------

    async def join(self, room: str, websocket: WebSocket, since: Position) -> Recovery:
        """Replay what ``websocket`` missed in ``room`` since ``since``, all or nothing (it joined already)."""
        if not self.keeps(room):
            return Recovery(False, 0, None, "the room keeps no history")
        key = (room, websocket)
        state = self._catchup[key] = _CatchUp()
        try:
            read = await self.backend.read_history(history_keys(self.channel, room), since.offset, self.policy.size)
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

    def left(self, room: str, websocket: WebSocket) -> None:
        """``websocket`` left ``room`` (a recovery under way ends; an empty room forgets its offset)."""
        if self._catchup:
            self._catchup.pop((room, websocket), None)
        if room not in self.directory.rooms:
            self._offsets.pop(room, None)

    # -- receiving ------------------------------------------------------------------------

    def receive(self, envelope: Envelope, _missing: int = 0) -> None:
        """Deliver a numbered publication read back from the backend (any node's, this one's too)."""
        fields = envelope.data
        name, offset, epoch, data = fields.get("room"), fields.get("o"), fields.get("e"), envelope.frame
        if not (isinstance(name, str) and isinstance(offset, int) and isinstance(epoch, str) and isinstance(data, str)):
            logger.warning("node %s: ignoring a malformed publication from node %s", self.node_id, envelope.node)
            return
        if envelope.instance != self.instance_id:
            self.peers.heard(envelope.instance, envelope.node, time.monotonic())
        room = self.directory.rooms.get(name)
        if room is None:
            return
        last = self._offsets.get(name)
        self._offsets[name] = (epoch, offset)
        frame = publication_frame(name, epoch, offset, data)
        skip = self.directory.get(fields.get("exclude"))
        recipients = [ws for ws in room.members if ws is not skip]
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
            self.directory.tell_lost(missed, envelope.node, recipients)
        if self._catchup:
            recipients = self._catching_up(name, epoch, offset, frame, recipients)
        self.directory.write(frame, recipients)

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
