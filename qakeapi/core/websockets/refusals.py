"""How a :class:`~qakeapi.core.websockets.handler.WebSocketHandler` refuses what its limits forbid.

Each refusal is counted in the handler's ``rejections`` and logged once per kind and client
(:class:`~qakeapi.core.limits.RejectionLog`), never once per message: a handshake from an
address over its cap or under a penalty is answered with HTTP 429 (``Retry-After`` for a
penalty) where the server supports it; a connection already accepted is closed with 1013, a
flooder with 1008 and an oversized message with 1009.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from qakeapi.core.limits import ConnectionCounter, PenaltyBox, RateLimit, RejectionLog
from qakeapi.core.websockets.connection import WebSocket, WebSocketState
from qakeapi.status import CloseCode

__all__ = ["Refusals"]


class _Limited(Protocol):
    """What :class:`Refusals` needs of the handler it is mixed into."""

    rejections: RejectionLog
    per_ip: ConnectionCounter
    penalties: PenaltyBox
    rate_limit: RateLimit | None
    max_message_size: int | None


class Refusals:
    """The refusals of a handler's limits (mixed into :class:`~qakeapi.core.websockets.handler.WebSocketHandler`)."""

    async def _refuse_address(self: _Limited, websocket: WebSocket, address: str) -> None:
        self.rejections.reject(
            "connections_per_ip",
            address,
            "refusing WebSocket %s (path=%s) from %s: it has %d connections open (max_connections_per_ip)",
            websocket.id,
            websocket.path,
            address,
            self.per_ip.count(address),
        )
        if websocket.application_state is WebSocketState.CONNECTING:
            await websocket.deny(429, [(b"content-type", b"application/json")], b'{"detail":"too many connections"}')
            return
        await websocket.close(CloseCode.TRY_AGAIN_LATER, "too many connections from this address")

    async def _refuse_penalized(self: _Limited, websocket: WebSocket, address: str, wait: float) -> None:
        retry_after = math.ceil(wait)
        self.rejections.reject(
            "rate_penalty",
            address,
            "refusing WebSocket %s (path=%s) from %s for %ds more: a connection from it exceeded the "
            "rate limit (HTTP 429, Retry-After)",
            websocket.id,
            websocket.path,
            address,
            retry_after,
        )
        if websocket.application_state is WebSocketState.CONNECTING:
            headers = [(b"content-type", b"application/json"), (b"retry-after", str(retry_after).encode())]
            await websocket.deny(429, headers, b'{"detail":"rate limit exceeded; retry later"}')
            return
        await websocket.close(CloseCode.TRY_AGAIN_LATER, f"rate limit exceeded; retry in {retry_after}s")

    async def _too_fast(self: _Limited, websocket: WebSocket) -> None:
        rate = self.rate_limit
        assert rate is not None
        client = websocket.client
        refused = []  # the flooder's user at once; its address on a repeat (a NAT's other users stay)
        if rate.penalty > 0:
            now = time.monotonic()
            if websocket.user_id is not None:
                self.penalties.penalize("user:" + websocket.user_id, now, rate.penalty)
                refused.append("user")
            if client is not None and self.penalties.strike(client[0], now, rate.penalty):
                refused.append("address")
        self.rejections.reject(
            "rate",
            client[0] if client is not None else str(websocket.id),
            "closing WebSocket %s (path=%s client=%s user=%s): more than %s messages a second (bursts of %d); "
            "refused for %ss: %s",
            websocket.id,
            websocket.path,
            client,
            websocket.user_id,
            rate.rate,
            rate.burst,
            rate.penalty,
            " and ".join(f"its {what}" for what in refused) or "nobody yet (its address on a repeat)",
        )
        await websocket.close(CloseCode.POLICY_VIOLATION, "rate limit exceeded")

    async def _too_big(self: _Limited, websocket: WebSocket, size: int) -> None:
        client = websocket.client
        self.rejections.reject(
            "size",
            client[0] if client is not None else str(websocket.id),
            "closing WebSocket %s (path=%s client=%s): message of %d bytes exceeds the limit of %d",
            websocket.id,
            websocket.path,
            client,
            size,
            self.max_message_size,
        )
        await websocket.close(CloseCode.MESSAGE_TOO_BIG, f"message exceeds {self.max_message_size} bytes")
