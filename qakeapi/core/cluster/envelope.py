"""What nodes say to each other: one envelope per backend message, JSON header then the frame.

The wire format is a line of JSON (the header, ASCII, never a newline inside), ``\\n``, then the
frame's bytes: UTF-8 text when the header's ``"f"`` is ``"t"``, raw bytes when it is ``"b"``,
nothing when there is no frame. Nothing is pickled. The header always holds::

    {"q": 1, "k": <kind>, "i": <instance id>, "n": <node id>, "s": <sequence number>,
     "t": <when it was made, Unix ms>, ...}

and per kind the fields listed in :class:`Kind`.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DATA_KINDS",
    "NUMBERED_KINDS",
    "PROTOCOL",
    "Envelope",
    "Kind",
    "decode_envelope",
    "encode_envelope",
    "encode_header",
]

PROTOCOL = 1
"""The envelope format version (header field ``"q"``)."""


class Kind(str, enum.Enum):
    """What an envelope carries (header field ``"k"``)."""

    ALL = "all"
    """A frame for every connection; ``exclude`` — a connection id to leave out."""
    ROOM = "room"
    """A frame for the members of ``room``; ``exclude`` — a connection id to leave out."""
    USER = "user"
    """A frame for every connection of ``user``."""
    CONNECTION = "conn"
    """A frame for the one connection ``connection``."""
    HEARTBEAT = "hb"
    """I am alive; ``version`` — my presence version."""
    PRESENCE = "pres"
    """My presence changed — ``version``, ``joins`` ``[[room, connection, user], ...]``,
    ``leaves`` ``[[room, connection], ...]``."""
    SYNC = "sync"
    """Instance ``to`` — please publish your whole presence."""
    STATE = "state"
    """My whole presence — ``version``, ``members`` ``[[room, connection, user], ...]``."""
    LOST = "lost"
    """I dropped ``count`` messages for ``rooms``, ``users``, ``connections`` (or ``everyone``)."""
    BYE = "bye"
    """I am shutting down — forget my presence."""
    SKIP = "skip"
    """The client message with this number was dropped (it waited too long) — do not wait for it."""
    HISTORY = "hist"
    """A numbered publication for the members of ``room`` — ``o`` its offset, ``e`` the history's
    epoch, ``exclude`` a connection id to leave out; the backend wrote it (see
    :mod:`qakeapi.core.cluster.history`), and every node delivers it, its publisher's included."""
    REVOKE = "revoke"
    """Close every connection of ``user`` with ``reason``, and refuse its tokens issued up to
    ``at`` (Unix seconds)."""


DATA_KINDS = frozenset({Kind.ALL, Kind.ROOM, Kind.USER, Kind.CONNECTION})
"""The kinds that carry a client message (numbered, deduplicated, counted when lost)."""
NUMBERED_KINDS = DATA_KINDS | {Kind.SKIP}
"""The kinds whose sequence number is their own (the others repeat the last one)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message between nodes.

    Attributes:
        kind: What it carries.
        instance: The publishing instance.
        node: The publishing node's label.
        seq: The publisher's sequence number: for the frame-carrying kinds 1, 2, 3 ... per
            instance; for the others, the number of the last frame-carrying envelope before it.
        data: The kind's fields.
        frame: The WebSocket frame to deliver, for the frame-carrying kinds.
        sent_at: When it was made (header ``"t"``, Unix seconds) once decoded; ``None`` for an
            envelope made here. Not part of its value (equality ignores it).
    """

    kind: Kind
    instance: str
    node: str
    seq: int
    data: Mapping[str, Any] = field(default_factory=dict)
    frame: str | bytes | None = None
    sent_at: float | None = field(default=None, compare=False)


def encode_header(envelope: Envelope, now: float | None = None) -> str:
    """The header line of ``envelope`` (ASCII JSON, no newline), as :func:`encode_envelope` writes it.

    Args:
        envelope: The envelope.
        now: When it is made, in Unix seconds (default: now); a receiver with a cluster secret
            drops it once it is older than the replay window (:mod:`qakeapi.core.cluster.signing`).

    Returns:
        The header.
    """
    header: dict[str, Any] = {
        "q": PROTOCOL,
        "k": envelope.kind.value,
        "i": envelope.instance,
        "n": envelope.node,
        "s": envelope.seq,
        "t": int((time.time() if now is None else now) * 1000),
    }
    header.update(envelope.data)
    frame = envelope.frame
    if frame is not None:
        header["f"] = "t" if isinstance(frame, str) else "b"
    return json.dumps(header, separators=(",", ":"))


def encode_envelope(envelope: Envelope, now: float | None = None) -> bytes:
    """Encode ``envelope`` for the wire.

    Args:
        envelope: The envelope.
        now: When it is made, in Unix seconds (default: now).

    Returns:
        The header line, ``\\n`` and the frame's bytes.
    """
    frame = envelope.frame
    body = b"" if frame is None else frame.encode() if isinstance(frame, str) else frame
    return encode_header(envelope, now).encode() + b"\n" + body


def decode_envelope(payload: bytes) -> Envelope:
    """Decode a payload made by :func:`encode_envelope`.

    Args:
        payload: The bytes received from the backend.

    Returns:
        The envelope.

    Raises:
        ValueError: The payload is not an envelope of this protocol.
    """
    head, sep, body = payload.partition(b"\n")
    if not sep:
        raise ValueError("not a QakeAPI cluster envelope: no header line")
    try:
        header = json.loads(head)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not a QakeAPI cluster envelope: bad header: {exc}") from None
    if not isinstance(header, dict) or header.get("q") != PROTOCOL:
        raise ValueError(f"not a QakeAPI cluster envelope of protocol {PROTOCOL}")
    try:
        kind = Kind(header.pop("k"))
        instance = header.pop("i")
        node = header.pop("n")
        seq = header.pop("s")
    except (KeyError, ValueError) as exc:
        raise ValueError(f"malformed cluster envelope header: {exc}") from None
    if not isinstance(instance, str) or not isinstance(node, str) or not isinstance(seq, int) or seq < 0:
        raise ValueError("malformed cluster envelope header: bad instance, node or sequence number")
    header.pop("q")
    made = header.pop("t", None)
    form = header.pop("f", None)
    frame: str | bytes | None
    if form == "t":
        try:
            frame = body.decode()
        except UnicodeDecodeError as exc:
            raise ValueError(f"text frame is not UTF-8: {exc}") from None
    elif form == "b":
        frame = body
    elif form is None:
        frame = None
    else:
        raise ValueError(f"unknown frame format {form!r}")
    sent_at = made / 1000 if type(made) is int else None
    return Envelope(kind, instance, node, seq, header, frame, sent_at)
