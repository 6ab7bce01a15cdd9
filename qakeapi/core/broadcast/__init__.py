"""Broadcast backends, chosen by URL scheme from one table: ``memory://`` for one process, ``redis://`` for clusters.

=====================================================  =============================================
URL                                                    Backend
=====================================================  =============================================
``memory://[name]``                                    :class:`~qakeapi.core.broadcast.memory.MemoryBackend`
``redis://``, ``rediss://``, ``unix://``,              :class:`~qakeapi.core.broadcast.redis_stream.RedisStreamBackend`
``redis+sentinel://``, ``redis+cluster://`` (and       (Redis Streams: a node that reconnects misses
their ``rediss+`` forms)                               nothing still in the stream; what a cluster uses)
``redis+pubsub://``, ``rediss+pubsub://``              :class:`~qakeapi.core.broadcast.redis.RedisBackend`
                                                       (Redis pub/sub: at most once, nothing kept)
=====================================================  =============================================

The same URL gives the same backend wherever it is used (:func:`create_backend`, and
:func:`~qakeapi.core.clustering.create_cluster_backend` for a cluster). Backends are imported
lazily: creating one needs no optional dependency, connecting a Redis one needs redis-py.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from qakeapi.core.broadcast.base import BroadcastBackend, Event

__all__ = ["SCHEMES", "BroadcastBackend", "Event", "create_backend"]

_STREAMS = ("qakeapi.core.broadcast.redis_stream", "RedisStreamBackend")
_PUBSUB = ("qakeapi.core.broadcast.redis", "RedisBackend")

SCHEMES: dict[str, tuple[str, str]] = {
    "memory": ("qakeapi.core.broadcast.memory", "MemoryBackend"),
    "redis": _STREAMS,
    "rediss": _STREAMS,
    "unix": _STREAMS,
    "redis+sentinel": _STREAMS,
    "rediss+sentinel": _STREAMS,
    "redis+cluster": _STREAMS,
    "rediss+cluster": _STREAMS,
    "redis+pubsub": _PUBSUB,
    "rediss+pubsub": _PUBSUB,
}
"""URL scheme -> (module, class) of its backend: the one table."""


def create_backend(url: str, **options: Any) -> BroadcastBackend:
    """Create the backend for ``url`` without connecting it.

    Args:
        url: A URL of a scheme in ``SCHEMES`` (``memory://chat``, ``redis://host:6379/0``,
            ``redis+sentinel://h1:26379,h2:26379/service``, ``redis+cluster://h:7000``,
            ``redis+pubsub://host:6379``).
        **options: Keyword arguments of the backend's class (``max_len=`` and ``ttl=`` of a
            stream, say: see :class:`~qakeapi.core.broadcast.redis_stream.RedisStreamBackend`).

    Returns:
        The backend; call its
        :meth:`~qakeapi.core.broadcast.base.BroadcastBackend.connect` before use.

    Raises:
        ValueError: The scheme is not supported (or a Sentinel URL is malformed).
    """
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError(
            f"unsupported broadcast URL scheme {scheme!r} (use one of: {', '.join(f'{s}://' for s in SCHEMES)})"
        )
    module, name = SCHEMES[scheme]
    backend_class = getattr(importlib.import_module(module), name)
    if scheme == "memory":
        return backend_class(urlsplit(url).netloc, **options)  # type: ignore[no-any-return]
    if "sentinel" in scheme:
        from qakeapi.core.broadcast.redis_stream import parse_sentinel_url

        parse_sentinel_url(url)  # a bad URL fails here, not in the reader later
    return backend_class(url, **options)  # type: ignore[no-any-return]
