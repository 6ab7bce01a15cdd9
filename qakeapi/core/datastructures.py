"""Read-only, case-insensitive headers and query parameters built from an ASGI scope, the
application's ``state``, and the one way to take an item out of an index of sets."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl

__all__ = ["Headers", "QueryParams", "State", "discard_from"]

_K = TypeVar("_K")
_V = TypeVar("_V")


_SECRET_NAMES = frozenset({"authorization", "cookie", "set-cookie", "sec-websocket-protocol", "token"})
"""Names whose values a ``repr`` (and so a log line or a traceback) never shows."""


class _MultiMap(Mapping[str, str]):
    """A read-only multi-map: ``m[key]`` is the first value, :meth:`getlist` returns all."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = list(items)

    def _norm(self, key: str) -> str:
        return key

    def __getitem__(self, key: str) -> str:
        key = self._norm(key)
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def getlist(self, key: str) -> list[str]:
        """Return every value given for ``key``, in order (empty if none).

        Args:
            key: The name to look up.

        Returns:
            The values, possibly empty.
        """
        key = self._norm(key)
        return [v for k, v in self._items if k == key]

    def multi_items(self) -> list[tuple[str, str]]:
        """Return all ``(name, value)`` pairs, repeated names included."""
        return list(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k for k, _ in self._items))

    def __len__(self) -> int:
        return len({k for k, _ in self._items})

    def __repr__(self) -> str:
        shown = [(k, "<redacted>" if k.lower() in _SECRET_NAMES else v) for k, v in self._items]
        return f"{type(self).__name__}({shown!r})"


class Headers(_MultiMap):
    """HTTP headers; names are case-insensitive.

    Args:
        raw: The ASGI ``headers`` list of ``(name, value)`` byte pairs.
    """

    __slots__ = ()

    def __init__(self, raw: Iterable[tuple[bytes, bytes]] = ()) -> None:
        super().__init__((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw)

    def _norm(self, key: str) -> str:
        return key.lower()


class QueryParams(_MultiMap):
    """Decoded query-string parameters.

    Args:
        query_string: The raw query string (without ``?``), as bytes or str.
    """

    __slots__ = ()

    def __init__(self, query_string: bytes | str = b"") -> None:
        if isinstance(query_string, bytes):
            query_string = query_string.decode("latin-1")
        super().__init__(parse_qsl(query_string, keep_blank_values=True))


class State:
    """A free-form attribute bag for application data attached to a request or connection.

    Any attribute may be set; reading one that was never set raises :class:`AttributeError`.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"state has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"State({vars(self)!r})"


def discard_from(index: MutableMapping[_K, set[_V]], key: _K, item: _V) -> None:
    """Take ``item`` out of the set ``index[key]``, and the key out of ``index`` once its set is empty.

    Nothing happens when ``key`` or ``item`` is not there.
    """
    items = index.get(key)
    if items is not None:
        items.discard(item)
        if not items:
            del index[key]
