"""Who is who in a cluster: instance ids, cluster-unique connection ids, and worker detection.

``node_id`` is a label people choose (``"node-1"``); several processes may share it (every
worker of ``uvicorn --workers 4`` imports the same module). The *instance id* is what tells
them apart: random, made once per manager. Connection ids are the instance id followed by the
connection's number in its process, all digits.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
from collections.abc import Mapping

__all__ = ["INSTANCE_ID_LENGTH", "connection_id", "instance_of", "local_of", "new_instance_id", "worker_hint"]


INSTANCE_ID_LENGTH = 12
"""How many digits an instance id has (the start of every connection id of that instance)."""


def new_instance_id() -> str:
    """Return a fresh random instance id: :data:`INSTANCE_ID_LENGTH` decimal digits, never starting with 0."""
    return str(10 ** (INSTANCE_ID_LENGTH - 1) + secrets.randbelow(9 * 10 ** (INSTANCE_ID_LENGTH - 1)))


def connection_id(instance_id: str, local_id: int | str) -> str:
    """Return the cluster-unique id of connection ``local_id`` of instance ``instance_id``.

    The id is all digits (clients that show ids as numbers keep working): the instance id, then
    the connection's number within its process.

    Args:
        instance_id: The owning instance (see :func:`new_instance_id`).
        local_id: The connection's id within its process (``WebSocket.id``).

    Returns:
        ``f"{instance_id}{local_id}"``, e.g. ``"4831920571667"`` for connection 7 of
        instance ``"483192057166"``.
    """
    return f"{instance_id}{local_id}"


def instance_of(cluster_connection_id: str) -> str | None:
    """Return the instance id part of a cluster-unique connection id, or ``None`` if it is not one."""
    if len(cluster_connection_id) <= INSTANCE_ID_LENGTH or not cluster_connection_id.isdigit():
        return None
    return cluster_connection_id[:INSTANCE_ID_LENGTH]


def local_of(cluster_connection_id: str) -> str:
    """Return the in-process part (``WebSocket.id``) of a cluster-unique connection id."""
    return cluster_connection_id[INSTANCE_ID_LENGTH:]


def worker_hint(environ: Mapping[str, str] | None = None) -> str | None:
    """Say why this process may be one of several workers, or ``None`` if nothing suggests it.

    Looks at ``WEB_CONCURRENCY`` (set by uvicorn, gunicorn and most platforms) and at whether a
    :mod:`multiprocessing` parent started this process (``uvicorn --workers N`` and
    ``--reload`` do).

    Args:
        environ: The environment to read (``os.environ`` by default).
    """
    env = os.environ if environ is None else environ
    concurrency = env.get("WEB_CONCURRENCY", "")
    if concurrency.strip().isdigit() and int(concurrency) > 1:
        return f"WEB_CONCURRENCY={concurrency}"
    if multiprocessing.parent_process() is not None:
        return "started by a multiprocessing parent (uvicorn --workers / --reload)"
    return None
