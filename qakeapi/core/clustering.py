"""Broadcast to every connection of a handler on every node, through a broadcast backend.

Each node runs a :class:`ClusteredManager` around its
:class:`~qakeapi.core.websockets.handler.WebSocketHandler`. A broadcast is
encoded once, published on the cluster channel, and every node (the sender's included) writes
the same frame to its own connections, so each connection gets each message exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from qakeapi.core.broadcast import BroadcastBackend, create_backend
from qakeapi.core.fanout import as_frame, deliver
from qakeapi.core.websockets.connection import WebSocket
from qakeapi.core.websockets.handler import WebSocketHandler

__all__ = ["ClusteredManager", "create_clustered_manager", "decode_envelope", "encode_envelope"]

logger = logging.getLogger("qakeapi.clustering")

DEFAULT_CHANNEL = "qakeapi:broadcast"


def encode_envelope(node_id: str, frame: str | bytes) -> bytes:
    """Wrap a frame for the wire: kind (``t`` text, ``b`` binary), sender node, newline, frame.

    Args:
        node_id: The publishing node.
        frame: The encoded message.

    Returns:
        The payload to publish.
    """
    if isinstance(frame, str):
        return b"t" + node_id.encode() + b"\n" + frame.encode()
    return b"b" + node_id.encode() + b"\n" + frame


def decode_envelope(payload: bytes) -> tuple[str, str | bytes]:
    """Unwrap a payload made by :func:`encode_envelope`.

    Args:
        payload: The published bytes.

    Returns:
        The sender's node id and the frame.

    Raises:
        ValueError: The payload is not an envelope.
    """
    head, sep, body = payload.partition(b"\n")
    if not sep or head[:1] not in (b"t", b"b"):
        raise ValueError("not a QakeAPI broadcast envelope")
    node = head[1:].decode()
    return node, (body.decode() if head[:1] == b"t" else body)


class ClusteredManager:
    """Runs a handler's connections and broadcasts to them across nodes.

    Creating it touches no network; it starts on first use (or :meth:`start`) and stops with
    :meth:`close` (register it as a shutdown hook).

    Args:
        handler: The handler whose connections receive broadcasts.
        backend: The broadcast backend shared by the nodes.
        node_id: This node's name (no newlines).
        channel: The backend channel the cluster uses.
    """

    def __init__(
        self,
        handler: WebSocketHandler,
        backend: BroadcastBackend,
        node_id: str,
        *,
        channel: str = DEFAULT_CHANNEL,
    ) -> None:
        if not node_id or "\n" in node_id:
            raise ValueError("node_id must be a non-empty string without newlines")
        self.handler = handler
        self.backend = backend
        self.node_id = node_id
        self.channel = channel
        self.delivered = 0
        self._dispatcher: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._closing: asyncio.Future[None] | None = None

    @property
    def connections(self) -> int:
        """How many connections this node holds."""
        return len(self.handler.connections)

    async def start(self) -> None:
        """Connect the backend, subscribe to the cluster channel and start dispatching.

        Idempotent, and safe to call concurrently: every caller waits for the one start. A
        start during a :meth:`close` waits for the close, then starts again. After
        :meth:`close` it may be started again (in another event loop, too).
        """
        while self._closing is not None:  # a close in progress finishes first, then we start anew
            await asyncio.wait((self._closing,))
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._start())
        starting = self._starting
        try:
            await asyncio.shield(starting)
        except Exception:
            if self._starting is starting:  # a failed start is not cached: the next call retries
                self._starting = None
            raise

    async def _start(self) -> None:
        await self.backend.connect()
        await self.backend.subscribe(self.channel)
        self._dispatcher = asyncio.get_running_loop().create_task(
            self._dispatch(), name=f"qakeapi cluster dispatcher {self.node_id}"
        )

    async def close(self) -> None:
        """Stop dispatching and disconnect the backend. Idempotent."""
        starting, self._starting = self._starting, None
        if starting is None:
            return
        self._closing = closing = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait((starting,))
            dispatcher, self._dispatcher = self._dispatcher, None
            await self.backend.disconnect()
            if dispatcher is not None:
                try:
                    await asyncio.wait_for(dispatcher, 5)
                except asyncio.TimeoutError:
                    logger.warning("node %s: the dispatcher did not stop within 5s; cancelled it", self.node_id)
        finally:
            self._closing = None
            closing.set_result(None)

    async def handle_connection(self, websocket: WebSocket) -> None:
        """Start the manager if needed, then run ``websocket`` through the handler.

        Args:
            websocket: The connection.
        """
        await self.start()
        await self.handler.handle_connection(websocket)

    async def broadcast(self, message: Any) -> None:
        """Send ``message`` to every connection of the handler on every node, this one included.

        Args:
            message: ``str`` or ``bytes`` are sent as they are; anything else as JSON text.

        Raises:
            BroadcastError: The backend could not publish (Redis is down, say).
        """
        await self.start()
        frame = as_frame(message)
        await self.backend.publish(self.channel, encode_envelope(self.node_id, frame))

    async def _dispatch(self) -> None:
        async for event in self.backend.events():
            if event.channel != self.channel:  # a backend shared with other channels
                continue
            try:
                _node, frame = decode_envelope(event.payload)
            except ValueError as exc:
                logger.warning("node %s: ignoring a malformed message on %r: %s", self.node_id, event.channel, exc)
                continue
            recipients = tuple(self.handler.connections)
            try:
                dead = deliver(frame, recipients)
            except Exception:
                logger.exception("node %s: delivering a broadcast failed", self.node_id)
                continue
            self.delivered += len(recipients) - len(dead)


def create_clustered_manager(
    handler: WebSocketHandler,
    redis_url: str = "redis://localhost:6379",
    node_id: str = "node-1",
    *,
    channel: str = DEFAULT_CHANNEL,
) -> ClusteredManager:
    """Create a :class:`ClusteredManager` for ``handler`` without touching the network.

    Args:
        handler: The handler whose connections receive broadcasts.
        redis_url: The backend URL: ``redis://...`` for a cluster, ``memory://`` for one node.
        node_id: This node's name.
        channel: The channel the cluster uses.

    Returns:
        The manager.
    """
    return ClusteredManager(handler, create_backend(redis_url), node_id, channel=channel)
