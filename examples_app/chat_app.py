"""Guide section "Real-time Chat Application": rooms and broadcasting, and the browser client.

Every new connection joins room ``general`` (the guide's HTML client sends there without
joining). ``GET /`` serves the guide's HTML client.

The rooms are cluster-wide: with ``QAKEAPI_REDIS_URL`` set, every process on that Redis (two
uvicorn processes, or ``uvicorn --workers 2``) shares them, and a member on any node gets every
message once. Without it the app runs on one process (``memory://chat``; it warns when started
as one of several workers). When a node dies, its members' room-mates on the other nodes get
``user_left`` once presence times out. ``QAKEAPI_NODE_ID`` names the node in logs.

Run: ``uvicorn examples_app.chat_app:app`` and open http://localhost:8000 (the page connects to
``ws://localhost:8000/ws``; opened as http://127.0.0.1:8000 its origin differs and is refused)
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from examples_app.settings import node_id, redis_url
from qakeapi import (
    Application,
    ClusterUnavailableError,
    HTMLResponse,
    PresenceDiff,
    PresenceReason,
    Request,
    Room,
    RoomLimitError,
    Rooms,
    WebSocket,
    WebSocketHandler,
    create_clustered_manager,
)

__all__ = ["DEFAULT_ROOM", "ChatService", "app", "chat", "manager", "ws_handler"]

DEFAULT_ROOM = "general"
CHAT_PAGE = Path(__file__).with_name("static") / "chat.html"


def _error(message: str) -> dict[str, str]:
    return {"type": "error", "message": message}


class ChatService:
    """The chat protocol of the guide: ``join_room``, ``leave_room`` and ``chat_message``.

    Args:
        rooms: The room registry to use.
    """

    MESSAGE_TYPES = frozenset({"join_room", "leave_room", "chat_message"})

    def __init__(self, rooms: Rooms | None = None) -> None:
        self.rooms = rooms if rooms is not None else Rooms()

    async def join(self, websocket: WebSocket, room_name: str) -> None:
        """Put ``websocket`` in ``room_name``: it gets ``room_joined``, the others ``user_joined``.

        A join past the room limits gets an ``error`` (the limit is logged by the registry).
        """
        try:
            room = self.rooms.join(room_name, websocket)
        except RoomLimitError as exc:
            await websocket.send_json(_error(f"Cannot join room: {exc}"))
            return
        await websocket.send_json({"type": "room_joined", "room": room_name})
        await _broadcast(
            room,
            {"type": "user_joined", "connection_id": self.rooms.connection_id(websocket), "room": room_name},
            exclude=websocket,
        )

    async def handle(self, websocket: WebSocket, data: dict[str, Any]) -> None:
        """Handle one chat message of a type in :attr:`MESSAGE_TYPES`."""
        room_name = data.get("room")
        if not isinstance(room_name, str) or not room_name:
            await websocket.send_json(_error("Missing or invalid 'room'"))
            return
        kind = data["type"]
        if kind == "join_room":
            await self.join(websocket, room_name)
        elif kind == "leave_room":
            room = self.rooms.leave(room_name, websocket)
            if room is None:
                await websocket.send_json(_error(f"Not in room {room_name!r}"))
                return
            await websocket.send_json({"type": "room_left", "room": room_name})
            await _broadcast(
                room, {"type": "user_left", "connection_id": self.rooms.connection_id(websocket), "room": room_name}
            )
        else:
            await self.send_chat(websocket, room_name, data.get("message"))

    async def send_chat(self, websocket: WebSocket, room_name: str, message: Any) -> None:
        """Broadcast ``message`` to ``room_name`` (the sender included, so it sees it too)."""
        room = self.rooms.get(room_name)
        if room is None or websocket not in room:
            await websocket.send_json(_error(f"Not in room {room_name!r}; join it first"))
            return
        if not isinstance(message, str) or not message:
            await websocket.send_json(_error("Missing or invalid 'message'"))
            return
        try:
            await room.broadcast(
                {
                    "type": "chat_message",
                    "connection_id": self.rooms.connection_id(websocket),
                    "room": room_name,
                    "message": message,
                }
            )
        except ClusterUnavailableError as exc:  # this node's members got it; the cluster logs its state
            await websocket.send_json(_error(f"Not delivered to the other nodes: {exc}"))

    async def disconnect(self, websocket: WebSocket) -> None:
        """Remove ``websocket`` from its rooms; the members left get ``user_left``."""
        connection_id = self.rooms.connection_id(websocket)
        for room in self.rooms.leave_all(websocket):
            await _broadcast(room, {"type": "user_left", "connection_id": connection_id, "room": room.name})

    async def node_down(self, diff: PresenceDiff) -> None:
        """Members of a dead node left ``diff.room``: tell this node's members of the room.

        Every surviving node runs this for its own members, so each room-mate hears it once.
        """
        room = self.rooms.get(diff.room)
        if diff.reason is not PresenceReason.NODE_DOWN or room is None:
            return
        for member in diff.leaves:
            room.broadcast_local({"type": "user_left", "connection_id": member.connection_id, "room": diff.room})


async def _broadcast(room: Room, message: dict[str, str], exclude: WebSocket | None = None) -> None:
    """Announce a change of membership; while the cluster is unavailable, to this node's members only
    (the cluster logs its state once, not a traceback per announcement)."""
    with contextlib.suppress(ClusterUnavailableError):
        await room.broadcast(message, exclude=exclude)


app = Application()
app.expose_metrics()  # Prometheus metrics at GET /metrics (the metrics extra)
ws_handler = WebSocketHandler()
manager = create_clustered_manager(
    ws_handler,
    redis_url=redis_url("memory://chat"),
    node_id=node_id("chat-1"),
)
app.on_startup(manager.start)
app.on_shutdown(manager.close)
chat = ChatService(manager.rooms)
manager.on_presence(chat.node_down)


@ws_handler.on_connect
async def handle_connect(websocket: WebSocket) -> None:
    await websocket.send_json(
        {"type": "welcome", "connection_id": manager.connection_id(websocket), "message": "Welcome to the chat!"}
    )
    await chat.join(websocket, DEFAULT_ROOM)


@ws_handler.on_disconnect
async def handle_disconnect(websocket: WebSocket) -> None:
    await chat.disconnect(websocket)


@ws_handler.on_message
async def handle_message(websocket: WebSocket, message: Any) -> None:
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        await websocket.send_json(_error("Invalid message: expected a JSON object with a 'type'"))
    elif message["type"] in ChatService.MESSAGE_TYPES:
        await chat.handle(websocket, message)
    else:
        await websocket.send_json(_error(f"Unknown message type: {message['type']}"))


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await manager.handle_connection(websocket)


@app.get("/")
async def index(request: Request) -> HTMLResponse:
    return HTMLResponse(CHAT_PAGE.read_text(encoding="utf-8"))
