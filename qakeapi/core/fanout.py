"""Moved to :mod:`qakeapi.core.websockets.fanout`; this path works for one release, with a warning."""

from __future__ import annotations

from qakeapi.core.moved import moved

__all__: list[str] = []  # nothing new here: the moved names are reached through __getattr__

__getattr__ = moved(
    __name__,
    {
        name: f"qakeapi.core.websockets.fanout.{name}"
        for name in ("as_frame", "deliver", "deliver_in_order", "recipients")
    },
)
