"""The states of a WebSocket connection, one per direction."""

from __future__ import annotations

import enum

__all__ = ["WebSocketState"]


class WebSocketState(enum.Enum):
    """The state of one direction of a connection."""

    CONNECTING = 0
    CONNECTED = 1
    DISCONNECTED = 2
