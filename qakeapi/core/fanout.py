"""Moved to :mod:`qakeapi.core.websockets.fanout`; this path works for one release, with a warning."""

from __future__ import annotations

import warnings

__all__: list[str] = []  # nothing new here: the moved names are reached through __getattr__

_MOVED = frozenset({"as_frame", "deliver", "deliver_in_order", "recipients"})


def __getattr__(name: str) -> object:
    """The names of :mod:`qakeapi.core.websockets.fanout`, with a :class:`DeprecationWarning`."""
    if name in _MOVED:
        from qakeapi.core.websockets import fanout

        warnings.warn(
            f"qakeapi.core.fanout.{name} moved to qakeapi.core.websockets.fanout.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(fanout, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
