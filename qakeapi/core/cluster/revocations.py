"""Revocations across nodes: a user signed out on one node is closed on every node.

:class:`~qakeapi.security.sessions.AuthSessions` revokes a user's connections on its own node
and hands the revocation to a transport (the cluster manager) for the others. A revocation waits
in the publish buffer like a client message, but is never dropped for its age.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from qakeapi.core.cluster.envelope import Envelope, Kind
from qakeapi.core.cluster.publisher import Publisher
from qakeapi.exceptions import ClusterUnavailableError

__all__ = ["CLOCK_SKEW", "RevocationHook", "Revocations"]

logger = logging.getLogger("qakeapi.clustering")

CLOCK_SKEW = 30.0
"""Seconds a revocation may be dated ahead of this node's clock; later ones count as of now, so a
revocation never refuses tokens issued after it reached this node."""

RevocationHook = Callable[[str, str, float], object]
"""``hook(user_id, reason, revoked_at)`` — applies a revocation from another node."""


@dataclass(eq=False)
class Revocations:
    """Sends this node's revocations and applies the other nodes'.

    Args:
        publisher: The way out to the other nodes.
        node_id: This node's label, for the log.
    """

    publisher: Publisher
    node_id: str
    hooks: list[RevocationHook] = field(default_factory=list, init=False)

    def publish(self, user_id: str, reason: str, revoked_at: float) -> None:
        """Buffer a revocation for the other nodes.

        Raises:
            ClusterUnavailableError: The backend has been down too long (or the buffer is full).
        """
        refusal = self.publisher.outbox.refusal(time.monotonic())
        if refusal is not None:
            raise ClusterUnavailableError(f"revocation not sent to the other nodes: {refusal}")
        self.publisher.control(Kind.REVOKE, {"user": user_id, "reason": reason, "at": revoked_at}, force=True)

    def receive(self, envelope: Envelope, _missing: int) -> None:
        """Apply another node's revocation (malformed ones raise ``ValueError``, logged by the dispatcher)."""
        data = envelope.data
        user, reason, revoked_at = data.get("user"), data.get("reason"), data.get("at")
        if not isinstance(user, str) or not isinstance(reason, str) or not isinstance(revoked_at, (int, float)):
            raise ValueError("malformed revocation: expected a string user and reason and a numeric time")
        at, now = float(revoked_at), time.time()
        if at > now + CLOCK_SKEW:  # a revocation refuses tokens issued up to its time: never the future's
            logger.warning(
                "node %s: a revocation of user %s from node %s is dated %.0fs ahead; applying it as of now",
                self.node_id,
                user,
                envelope.node,
                at - now,
            )
            at = now
        logger.info("node %s: node %s revoked user %s", self.node_id, envelope.node, user)
        for apply in self.hooks:
            apply(user, reason, at)
