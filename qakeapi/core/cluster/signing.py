"""Authenticated envelopes: with a cluster secret, every envelope carries an HMAC its receivers check.

Redis is a trust boundary: whoever can write to the cluster's stream could otherwise speak for
any node — send every client a message, or revoke a user everywhere. With a secret shared by the
nodes (``ClusteredManager(secret=...)``, or the environment variable ``QAKEAPI_CLUSTER_SECRET``),
a payload on the wire is::

    #<HMAC-SHA256 in hex>\\n<header>\\n<frame>

and the MAC covers the header without its closing brace, a newline and the frame. That is also
what a room with history hands the backend's script, which closes the header with the offset and
the epoch it gives the publication (``,"o":7,"e":"..."}``): those two are the backend's, not the
publisher's, and are left out of the MAC. Every header carries the time it was made (``"t"``, ms),
so a receiver drops an envelope older than the replay window; one already seen is dropped by its
sequence number (:mod:`qakeapi.core.cluster.inbox`). Pure: no I/O, the clock passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import re

__all__ = ["MIN_SECRET_BYTES", "REPLAY_WINDOW", "SECRET_VARIABLE", "Signer"]

MIN_SECRET_BYTES = 16
"""The shortest secret accepted, in bytes (128 bits; ``secrets.token_urlsafe(32)`` makes a good one)."""

SECRET_VARIABLE = "QAKEAPI_CLUSTER_SECRET"
"""The environment variable a manager takes its secret from when it is given none."""

REPLAY_WINDOW = 300.0
"""Seconds an authenticated envelope is accepted after it was made (clocks of the nodes included)."""

_PREFIX = b"#"
_MAC_LENGTH = 64  # hex digits of SHA-256
_BACKEND_FIELDS = re.compile(rb',"o":-?\d+,"e":"[^"\\]*"\}$')
_TIME = re.compile(rb',"s":\d+,"t":(\d{1,16})[,}]')  # right after the sequence number: before any data field


class Signer:
    """Signs and checks the envelopes of one cluster.

    Args:
        secret: The secret every node of the cluster shares (at least :data:`MIN_SECRET_BYTES`).
        replay_window: Seconds an envelope is accepted after it was made.

    Raises:
        ValueError: The secret is too short.
    """

    def __init__(self, secret: str | bytes, *, replay_window: float = REPLAY_WINDOW) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the cluster secret is {len(key)} bytes; it needs at least {MIN_SECRET_BYTES} "
                "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        self._key = key
        self.replay_window = replay_window

    def __repr__(self) -> str:
        return "<Signer secret=[redacted]>"

    def mac(self, open_header: bytes, body: bytes) -> bytes:
        """The MAC of a header without its closing brace, and the frame (hex, ASCII)."""
        return hmac.new(self._key, open_header + b"\n" + body, hashlib.sha256).hexdigest().encode()

    def sign(self, payload: bytes) -> bytes:
        """Sign an encoded envelope (header line, ``\\n``, frame)."""
        header, _, body = payload.partition(b"\n")
        return _PREFIX + self.mac(header[:-1], body) + b"\n" + payload

    def sign_open(self, open_header: str, body: str) -> str:
        """The MAC line and the open header, for a backend that closes the header itself (history)."""
        return f"#{self.mac(open_header.encode(), body.encode()).decode()}\n{open_header}"

    def verify(self, signed: bytes, now: float) -> bytes:
        """Check a signed payload; return the envelope's bytes without the MAC line.

        Args:
            signed: What was read from the backend.
            now: The current Unix time, in seconds.

        Raises:
            ValueError: No MAC, a wrong one (forged, or another secret), or older than the
                replay window (the message says which).
        """
        if not signed.startswith(_PREFIX):
            raise ValueError("forged: the envelope is not signed")
        mac, sep, payload = signed[1:].partition(b"\n")
        header, _, body = payload.partition(b"\n")
        if not sep or len(mac) != _MAC_LENGTH:
            raise ValueError("forged: malformed MAC line")
        backend = _BACKEND_FIELDS.search(header)
        open_header = header[: backend.start()] if backend is not None else header[:-1]
        if not hmac.compare_digest(mac, self.mac(open_header, body)):
            raise ValueError("forged: the MAC does not match (another secret, or altered on the way)")
        made = _TIME.search(header)
        if made is None:
            raise ValueError("forged: the envelope carries no time")
        age = now - int(made.group(1)) / 1000
        if age > self.replay_window:
            raise ValueError(f"replayed: made {age:.0f}s ago (window {self.replay_window:.0f}s)")
        return payload
