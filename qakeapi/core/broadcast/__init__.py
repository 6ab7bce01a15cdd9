"""Broadcast backends chosen by URL scheme: ``memory://`` for one node, ``redis://`` for clusters."""

from __future__ import annotations

from urllib.parse import urlsplit

from qakeapi.core.broadcast.base import BroadcastBackend, Event

__all__ = ["BroadcastBackend", "Event", "create_backend"]


def create_backend(url: str) -> BroadcastBackend:
    """Create the backend for ``url`` without connecting it.

    Args:
        url: ``memory://[name]``, ``redis://...`` or ``rediss://...``.

    Returns:
        The backend; call its
        :meth:`~qakeapi.core.broadcast.base.BroadcastBackend.connect` before use.

    Raises:
        ValueError: The scheme is not supported.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from qakeapi.core.broadcast.memory import MemoryBackend

        return MemoryBackend(urlsplit(url).netloc)
    if scheme in ("redis", "rediss", "unix"):
        from qakeapi.core.broadcast.redis import RedisBackend

        return RedisBackend(url)
    raise ValueError(f"unsupported broadcast URL scheme {scheme!r} (use memory:// or redis://)")
