"""The parts of a cluster that need no network: identity, envelopes, the publish buffer and the inbox.

:mod:`qakeapi.core.clustering` wires them to a broadcast backend.
"""

from __future__ import annotations

__all__: list[str] = []
