"""Per-room history: numbered publications a reconnecting client can recover, or be told it cannot.

A room with history (:class:`HistoryPolicy`) has its publications numbered by the backend, one
after another: the *offset* (1, 2, 3 ...) within an *epoch* (a random id the history gets when it
is created; a history that was lost — expired, or Redis restarted without persistence — starts
again under a new epoch). The backend appends each publication to the room's history and to the
cluster channel in one atomic step, so every node, the publisher's included, delivers a room's
publications in offset order, and a member's position is simply the last offset it received.

A client that comes back with the last :class:`Position` it saw gets every publication after it
(``recovered: true``) or, when the history no longer reaches back that far, belongs to another
epoch, or crossed a stretch the backend could not number, nothing at all (``recovered: false``):
never a partial replay.

Clients receive each publication as :func:`publication_frame` builds it::

    {"type": "publication", "room": "lobby", "epoch": "3f9c...", "offset": 17, "data": <message>}
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qakeapi.core.moved import moved

__all__ = [
    "DEFAULT_HISTORY_SIZE",
    "DEFAULT_HISTORY_TTL",
    "HistoryPolicy",
    "Position",
    "Recovery",
    "history_keys",
    "new_epoch",
    "publication_frame",
]

DEFAULT_HISTORY_SIZE = 1000
"""How many publications a room's history keeps by default."""
DEFAULT_HISTORY_TTL = 300.0
"""How long (seconds) a room's history is kept after its last publication, by default."""


def _every_room(room: str) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """Which rooms keep a history, and how much.

    The retention window of a room is its last ``size`` publications, for ``ttl`` seconds after
    the latest one (a room that stays quiet longer loses its history and starts a new epoch).

    Args:
        size: How many publications each room keeps.
        ttl: Seconds the history lives after the room's last publication.
        rooms: Which rooms have a history (every room by default).

    Raises:
        ValueError: ``size`` below 1 or ``ttl`` not positive.
    """

    size: int = DEFAULT_HISTORY_SIZE
    ttl: float = DEFAULT_HISTORY_TTL
    rooms: Callable[[str], bool] = field(default=_every_room)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"history size must be at least 1, got {self.size}")
        if not self.ttl > 0:
            raise ValueError(f"history ttl must be positive, got {self.ttl}")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a client is in a room's history: the epoch and the last offset it received.

    Attributes:
        epoch: The history's epoch (the ``"epoch"`` of the publications).
        offset: The last offset received (``0``: none yet).
    """

    epoch: str
    offset: int

    @classmethod
    def parse(cls, value: Any) -> Position:
        """Read a position a client sent, ``{"epoch": "...", "offset": 17}``.

        Args:
            value: The decoded JSON.

        Returns:
            The position.

        Raises:
            ValueError: ``value`` is not such an object.
        """
        if isinstance(value, dict):
            epoch, offset = value.get("epoch"), value.get("offset")
            if isinstance(epoch, str) and isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0:
                return cls(epoch, offset)
        raise ValueError('a position is {"epoch": <string>, "offset": <integer >= 0>}')


@dataclass(frozen=True, slots=True)
class Recovery:
    """The outcome of joining a room with a position.

    Attributes:
        recovered: ``True``: every publication after the position was replayed (possibly none);
            ``False``: nothing was replayed, the client must reload its state.
        replayed: How many publications were replayed.
        position: The room's latest position when the history was read (``None``: the backend
            could not be read).
        reason: Why it could not recover (``None`` when it did).
    """

    recovered: bool
    replayed: int
    position: Position | None
    reason: str | None = None

    def as_message(self, room: str) -> dict[str, Any]:
        """The outcome as a message for the client.

        Returns:
            ``{"type": "recovery", "room", "recovered", "replayed", "epoch", "offset", "reason"}``
            with this outcome's values.
        """
        return {
            "type": "recovery",
            "room": room,
            "recovered": self.recovered,
            "replayed": self.replayed,
            "epoch": self.position.epoch if self.position is not None else None,
            "offset": self.position.offset if self.position is not None else None,
            "reason": self.reason,
        }


def new_epoch() -> str:
    """A fresh random epoch id."""
    return secrets.token_hex(8)


def _hash_tag(channel: str) -> str:
    """The part of ``channel`` Redis Cluster hashes (so history keys share its slot)."""
    start = channel.find("{")
    if start >= 0:
        end = channel.find("}", start + 1)
        if end > start + 1:
            return channel[start + 1 : end]
    return channel


def history_keys(channel: str, room: str) -> tuple[str, str]:
    """The keys of ``room``'s history on the cluster ``channel``: the stream and its meta hash.

    Both hash to the same Redis Cluster slot as ``channel`` itself, so one script may touch all
    three.
    """
    prefix = "{" + _hash_tag(channel) + "}:history:" + room
    return prefix, prefix + ":meta"


def publication_frame(room: str, epoch: str | None, offset: int | None, data: str) -> str:
    """The text frame a client receives for one publication.

    Args:
        room: The room.
        epoch: The history's epoch (``None`` for a publication the backend could not number).
        offset: Its offset (``None`` likewise).
        data: The message as JSON text.

    Returns:
        ``{"type": "publication", "room": ..., "epoch": ..., "offset": ..., "data": ...}``.
    """
    return (
        '{"type":"publication","room":'
        + json.dumps(room)
        + ',"epoch":'
        + json.dumps(epoch)
        + ',"offset":'
        + ("null" if offset is None else str(offset))
        + ',"data":'
        + data
        + "}"
    )


__getattr__ = moved(
    __name__,
    {name: "qakeapi.core.broadcast.history." + name for name in ("HistoryAppend", "HistoryEntry", "HistoryRead")},
)
