"""Guide section "Common Patterns": a bounded connection pool and per-room message queues.

- ``/pool``: every connection joins one :class:`ConnectionPool`; each message is broadcast to
  the whole pool as ``{"type": "pool_message", "from": <id>, "data": ...}``. When the pool is
  full, the oldest connection is closed to make room.
- ``/queue/{room}``: messages are put on the room's :class:`MessageQueue` and a worker task
  delivers them, in order, to the room's connections as ``{"type": "queued_message", ...}``.

Run: ``uvicorn examples_app.patterns:app``
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from qakeapi import Application, WebSocket, WebSocketHandler
from qakeapi.core.codec import encode_json
from qakeapi.core.websockets.fanout import deliver_in_order

__all__ = ["ConnectionPool", "MessageQueue", "app", "create_app"]

logger = logging.getLogger("examples_app.patterns")


class ConnectionPool:
    """At most ``max_connections`` connections; adding one more closes the oldest.

    Args:
        max_connections: The capacity.
    """

    def __init__(self, max_connections: int = 1000) -> None:
        self.connections: dict[str, WebSocket] = {}
        self.max_connections = max_connections

    async def add_connection(self, connection_id: str, websocket: WebSocket) -> None:
        """Add a connection, closing the oldest one first when the pool is full."""
        if len(self.connections) >= self.max_connections:
            oldest_id = next(iter(self.connections))
            await self.remove_connection(oldest_id)
        self.connections[connection_id] = websocket

    async def remove_connection(self, connection_id: str) -> None:
        """Close a connection and forget it (nothing happens for an unknown id)."""
        websocket = self.connections.pop(connection_id, None)
        if websocket is not None:
            await websocket.close()

    async def broadcast(self, message: dict[str, Any]) -> int:
        """Send ``message`` (encoded once) to every connection; closed ones are removed.

        Returns:
            How many connections it reached.
        """
        recipients = dict(self.connections)
        dead = await deliver_in_order(encode_json(message), recipients.values())
        for connection_id, websocket in recipients.items():
            if websocket in dead:
                await self.remove_connection(connection_id)
        return len(recipients) - len(dead)


class MessageQueue:
    """A queue per room, drained by one worker task per room.

    Args:
        max_size: How many messages may wait per room; ``enqueue`` waits when it is full.
    """

    def __init__(self, max_size: int = 1000) -> None:
        self.max_size = max_size
        self.queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}

    def _queue(self, room: str) -> asyncio.Queue[dict[str, Any]]:
        queue = self.queues.get(room)
        if queue is None:
            queue = self.queues[room] = asyncio.Queue(self.max_size)
        return queue

    async def enqueue(self, room: str, message: dict[str, Any]) -> None:
        """Add ``message`` to ``room``'s queue."""
        await self._queue(room).put(message)

    async def dequeue(self, room: str) -> dict[str, Any]:
        """Take the next message of ``room``, waiting for one."""
        return await self._queue(room).get()

    async def broadcast_worker(self, room: str, connections: set[WebSocket]) -> None:
        """Deliver ``room``'s messages to ``connections`` until cancelled; closed ones are removed."""
        while True:
            message = await self.dequeue(room)
            dead = await deliver_in_order(encode_json(message), connections)
            connections.difference_update(dead)


def _report_crash(room: str, task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the message queue worker of room %r crashed", room, exc_info=task.exception())


def create_app(max_connections: int = 1000) -> Application:
    """Build the patterns app.

    Args:
        max_connections: The connection pool's capacity.
    """
    app = Application()
    app.expose_metrics()  # Prometheus metrics at GET /metrics (the metrics extra)
    pool = ConnectionPool(max_connections)
    queue = MessageQueue()
    members: dict[str, set[WebSocket]] = {}
    workers: dict[str, asyncio.Task[None]] = {}
    pool_handler = WebSocketHandler()
    queue_handler = WebSocketHandler()

    @pool_handler.on_connect
    async def pool_connect(websocket: WebSocket) -> None:
        await pool.add_connection(str(websocket.id), websocket)
        await websocket.send_json({"type": "welcome", "connection_id": str(websocket.id)})

    @pool_handler.on_message
    async def pool_message(websocket: WebSocket, message: Any) -> None:
        await pool.broadcast({"type": "pool_message", "from": str(websocket.id), "data": message})

    @pool_handler.on_disconnect
    async def pool_disconnect(websocket: WebSocket) -> None:
        pool.connections.pop(str(websocket.id), None)

    @queue_handler.on_connect
    async def queue_connect(websocket: WebSocket) -> None:
        room = str(websocket.path_params["room"])
        members.setdefault(room, set()).add(websocket)
        if room not in workers:
            worker = asyncio.get_running_loop().create_task(queue.broadcast_worker(room, members[room]))
            worker.add_done_callback(lambda task: _report_crash(room, task))
            workers[room] = worker
        await websocket.send_json({"type": "welcome", "room": room})

    @queue_handler.on_message
    async def queue_message(websocket: WebSocket, message: Any) -> None:
        room = str(websocket.path_params["room"])
        await queue.enqueue(room, {"type": "queued_message", "room": room, "from": str(websocket.id), "data": message})

    @queue_handler.on_disconnect
    async def queue_disconnect(websocket: WebSocket) -> None:
        room = str(websocket.path_params["room"])
        room_members = members.get(room)
        if room_members is None:
            return
        room_members.discard(websocket)
        if not room_members:  # the last member left: stop the room's worker and forget its queue
            del members[room]
            worker = workers.pop(room, None)
            if worker is not None:
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
            queue.queues.pop(room, None)

    @app.on_shutdown
    async def stop_workers() -> None:
        for task in workers.values():
            task.cancel()
        await asyncio.gather(*workers.values(), return_exceptions=True)
        workers.clear()

    @app.websocket("/pool")
    async def pool_endpoint(websocket: WebSocket) -> None:
        await pool_handler.handle_connection(websocket)

    @app.websocket("/queue/{room}")
    async def queue_endpoint(websocket: WebSocket, room: str) -> None:
        await queue_handler.handle_connection(websocket)

    app.state.pool = pool
    app.state.queue = queue
    app.state.workers = workers
    return app


app = create_app()
