"""The receiving side's bookkeeping: per publisher, drop duplicates and notice gaps.

Backends deliver each publisher's envelopes in publish order, but a publisher may send one twice
(a retry after an ambiguous failure) and a backend may lose some (a Redis restart before the
reader got them). :class:`Inbox` tells each case apart by the publisher's sequence numbers. Pure.
"""

from __future__ import annotations

__all__ = ["Inbox"]


class Inbox:
    """The next sequence number expected from each publisher.

    Attributes:
        duplicates: How many envelopes were dropped as already seen.
        gaps: How many envelopes were missing (sequence numbers skipped).
    """

    def __init__(self) -> None:
        self._next: dict[str, int] = {}
        self.duplicates = 0
        self.gaps = 0

    def __contains__(self, instance: object) -> bool:
        return instance in self._next

    def accept(self, instance: str, seq: int) -> int | None:
        """Take client message ``seq`` of ``instance``.

        The first envelope seen from an instance starts its count (a node joining later did not
        miss what came before it).

        Returns:
            ``None`` for a duplicate (drop it), else how many client messages were missing before
            it (``0`` when it is the next one).
        """
        expected = self._next.get(instance)
        if expected is not None and seq < expected:
            self.duplicates += 1
            return None
        self._next[instance] = seq + 1
        missing = 0 if expected is None else seq - expected
        self.gaps += missing
        return missing

    def check(self, instance: str, last: int) -> int:
        """Take a control envelope of ``instance`` sent after its client message ``last``.

        Returns:
            How many client messages up to ``last`` never arrived (``0`` normally).
        """
        expected = self._next.get(instance)
        self._next[instance] = max(last + 1, expected or 0)
        if expected is None or last < expected:
            return 0
        missing = last - expected + 1
        self.gaps += missing
        return missing

    def forget(self, instance: str) -> None:
        """Forget ``instance`` (it shut down or timed out)."""
        self._next.pop(instance, None)
