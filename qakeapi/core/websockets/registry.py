"""The connections one handler runs, found by connection, by id and by user without a scan."""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Set as AbstractSet

from qakeapi.core.websockets.connection import WebSocket
from qakeapi.core.websockets.outbox import Outbox

__all__ = ["Connections"]


class Connections:
    """The connections of one :class:`~qakeapi.core.websockets.handler.WebSocketHandler`, indexed.

    A connection's user may change while it runs (it authenticates in band, or re-authenticates
    as another user): the connection tells the index, so :meth:`of_user` is a lookup.

    Attributes:
        outboxes: Each connection with its outbox, so that a broadcast takes both lists in C
            rather than reading every member's outbox again (~15 ns a member, per broadcast).
    """

    __slots__ = ("_by_id", "_by_user", "_snapshot", "outboxes")

    def __init__(self) -> None:
        self.outboxes: dict[WebSocket, Outbox] = {}
        self._by_id: dict[int, WebSocket] = {}
        self._by_user: dict[str, dict[WebSocket, None]] = {}
        self._snapshot: tuple[tuple[WebSocket, ...], tuple[Outbox, ...]] | None = None

    def snapshot(self) -> tuple[tuple[WebSocket, ...], tuple[Outbox, ...]]:
        """The connections and their outboxes, in the same order, as they are now.

        Kept until a connection is added or discarded: consecutive broadcasts to the same
        members share one copy (copying 200 members costs ~3.5 µs, per broadcast).
        """
        snapshot = self._snapshot
        if snapshot is None:
            snapshot = self._snapshot = (tuple(self.outboxes), tuple(self.outboxes.values()))
        return snapshot

    def add(self, websocket: WebSocket) -> None:
        """Index ``websocket`` (by itself, its id and, from now on, its user)."""
        self.outboxes[websocket] = websocket.outbox
        self._snapshot = None
        self._by_id[websocket.id] = websocket
        websocket._watch_user(self._user_changed)
        self._user_changed(websocket, None, websocket.user_id)

    def discard(self, websocket: WebSocket) -> None:
        """Forget ``websocket`` (nothing happens if it is not indexed)."""
        if self.outboxes.pop(websocket, None) is None:
            return
        self._snapshot = None
        self._by_id.pop(websocket.id, None)
        websocket._watch_user(None)
        self._user_changed(websocket, websocket.user_id, None)

    def get(self, connection_id: int) -> WebSocket | None:
        """The connection with id ``connection_id``, if it is here."""
        return self._by_id.get(connection_id)

    def of_user(self, user_id: str) -> list[WebSocket]:
        """The connections authenticated as ``user_id`` now, in the order they were accepted or authenticated."""
        return list(self._by_user.get(user_id, ()))

    def view(self) -> AbstractSet[WebSocket]:
        """A live, read-only view of the connections."""
        return _SetView(self.outboxes.keys())

    def _user_changed(self, websocket: WebSocket, old: str | None, new: str | None) -> None:
        if old is not None and (mine := self._by_user.get(old)) is not None:
            mine.pop(websocket, None)
            if not mine:
                del self._by_user[old]
        if new is not None:
            self._by_user.setdefault(new, {})[websocket] = None


class _SetView(AbstractSet[WebSocket]):
    """A read-only view of a set."""

    __slots__ = ("_items",)

    def __init__(self, items: AbstractSet[WebSocket]) -> None:
        self._items = items

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[WebSocket]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
