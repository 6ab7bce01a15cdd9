"""The parts of a cluster node, each with one job, behind the facade :class:`~qakeapi.core.clustering.ClusteredManager`.

Pure cores (no network, the clock passed in): :mod:`~qakeapi.core.cluster.identity`,
:mod:`~qakeapi.core.cluster.envelope` (the wire format), :mod:`~qakeapi.core.cluster.outbox`
(the publish buffer), :mod:`~qakeapi.core.cluster.inbox` (duplicates and gaps),
:mod:`~qakeapi.core.cluster.peers` (the other nodes) and :mod:`~qakeapi.core.cluster.history`.
The parts that run: :mod:`~qakeapi.core.cluster.publisher` (sends the buffer),
:mod:`~qakeapi.core.cluster.dispatcher` (each received envelope to its handler, through
:func:`~qakeapi.core.cluster.assembly.dispatch_table`), :mod:`~qakeapi.core.cluster.directory`
(this node's connections, local delivery), :mod:`~qakeapi.core.cluster.membership` (presence,
heartbeats), :mod:`~qakeapi.core.cluster.relay` (rooms across nodes),
:mod:`~qakeapi.core.cluster.recovery` (rooms with history), :mod:`~qakeapi.core.cluster.revocations`
and :mod:`~qakeapi.core.cluster.lifecycle`, wired by :mod:`~qakeapi.core.cluster.assembly`.
"""

from __future__ import annotations

__all__: list[str] = []
