"""The demo chat served by ``scripts/demo.sh``: names, rooms, who is online, reconnection.

``GET /`` serves the page (``static/demo.html`` with its stylesheet, script and favicon); the
page talks JSON over the WebSocket ``/chat``, whose URL it derives from its own location, so the
demo works on any host and port. ``GET /guide-client`` serves the guide's HTML client verbatim,
talking to the guide's chat (:mod:`examples_app.chat_app`) on ``/ws`` -- that page hard-codes
``ws://localhost:8000/ws``, so it works when the demo runs on port 8000 and is opened as
http://localhost:8000/guide-client (another origin is refused by the origin policy).

The protocol of ``/chat`` (every frame a JSON object with a ``type``):

client to server
    ``{"type": "join", "name": "Ada", "room": "general", "client": "<opaque id>"}`` -- enter a
    room (leaving the previous one) under a name; ``client`` is an id the page keeps across
    reconnections, so it can tell its own messages. ``{"type": "say", "text": "..."}`` -- say
    something in the current room.
server to client
    ``welcome`` (the rooms to offer), ``joined`` (the room, who is in it and its recent history),
    ``message``, ``presence`` (who is in the room now), ``rooms`` (every room and how many are in
    it), ``system`` (someone joined or left) and ``error``.

Run: ``uvicorn examples_app.demo_app:app`` and open http://127.0.0.1:8000 in two tabs.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from examples_app import chat_app
from qakeapi import Application, HTMLResponse, Request, Response, WebSocket, WebSocketHandler
from qakeapi.core.rooms import Rooms
from qakeapi.exceptions import HTTPException

__all__ = ["DEFAULT_ROOMS", "HISTORY", "DemoChat", "Member", "app", "create_app"]

STATIC = Path(__file__).with_name("static")
DEFAULT_ROOMS = ("general", "random", "help")
HISTORY = 50
"""How many recent messages a room keeps for people who join it (or come back)."""
MAX_NAME = 32
MAX_TEXT = 2000
ROOM_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,23}")
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
ASSETS = {
    "demo.css": "text/css",
    "demo.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}


@dataclass
class Member:
    """Who a connection is, once it joined.

    Attributes:
        name: The name shown to the others.
        client: The page's own id, stable across its reconnections.
        room: The room the connection is in.
    """

    name: str
    client: str
    room: str

    def public(self) -> dict[str, str]:
        """What the others see of this member."""
        return {"name": self.name, "client": self.client}


def _error(message: str) -> dict[str, str]:
    return {"type": "error", "message": message}


def _clean_name(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    name = " ".join(value.split())
    if not 1 <= len(name) <= MAX_NAME or not name.isprintable():
        return None
    return name


class DemoChat:
    """The chat behind ``/chat``: one room per connection at a time, with presence and history."""

    def __init__(self) -> None:
        self.handler = WebSocketHandler(max_message_size=16 * 1024)
        self.rooms = Rooms()
        self.members: dict[WebSocket, Member] = {}
        self.history: dict[str, deque[dict[str, Any]]] = {}
        self.handler.on_connect(self.connected)
        self.handler.on_message(self.received)
        self.handler.on_disconnect(self.disconnected)

    def presence(self, room: str) -> list[dict[str, str]]:
        """Who is in ``room``, sorted by name."""
        found = self.rooms.get(room)
        members = [self.members[ws] for ws in (found.members if found else ()) if ws in self.members]
        return sorted((m.public() for m in members), key=lambda m: (m["name"].casefold(), m["client"]))

    def room_list(self) -> list[dict[str, Any]]:
        """The default rooms and every room someone is in, with how many are there."""
        names = list(DEFAULT_ROOMS) + sorted(room.name for room in self.rooms if room.name not in DEFAULT_ROOMS)
        return [{"name": name, "online": len(self.rooms.get(name) or ())} for name in names]

    async def connected(self, websocket: WebSocket) -> None:
        """Greet a new connection with the rooms it can join."""
        await websocket.send_json({"type": "welcome", "rooms": self.room_list()})

    async def received(self, websocket: WebSocket, message: Any) -> None:
        """Handle one frame from a page."""
        if not isinstance(message, dict):
            await websocket.send_json(_error("expected a JSON object with a 'type'"))
        elif message.get("type") == "join":
            await self.join(websocket, message)
        elif message.get("type") == "say":
            await self.say(websocket, message.get("text"))
        else:
            await websocket.send_json(_error(f"unknown message type {message.get('type')!r}"))

    async def join(self, websocket: WebSocket, message: dict[str, Any]) -> None:
        """Enter a room under a name, leaving the room the connection was in."""
        name = _clean_name(message.get("name"))
        room = message.get("room")
        client = message.get("client")
        if name is None:
            await websocket.send_json(_error(f"a name is 1 to {MAX_NAME} printable characters"))
            return
        if not isinstance(room, str) or not ROOM_NAME.fullmatch(room):
            await websocket.send_json(
                _error("a room name is 1 to 24 of a-z, 0-9 and '-', starting with a letter or digit")
            )
            return
        if not isinstance(client, str) or not CLIENT_ID.fullmatch(client):
            await websocket.send_json(_error("'client' is 1 to 64 of A-Z, a-z, 0-9, '_' and '-'"))
            return
        previous = self.members.get(websocket)
        if previous is not None:
            await self._leave(websocket, previous)
        member = self.members[websocket] = Member(name, client, room)
        joined = self.rooms.join(room, websocket)
        history = list(self.history.get(room, ()))
        await websocket.send_json(
            {"type": "joined", "room": room, "you": member.public(), "members": self.presence(room), "history": history}
        )
        await joined.broadcast({"type": "system", "room": room, "text": f"{name} joined"}, exclude=websocket)
        await joined.broadcast({"type": "presence", "room": room, "members": self.presence(room)})
        await self.handler.broadcast({"type": "rooms", "rooms": self.room_list()})

    async def say(self, websocket: WebSocket, text: Any) -> None:
        """Say ``text`` in the connection's room: everyone there gets it, the sender too."""
        member = self.members.get(websocket)
        if member is None:
            await websocket.send_json(_error("join a room first"))
            return
        if not isinstance(text, str) or not text.strip():
            await websocket.send_json(_error("say something: 'text' is empty"))
            return
        if len(text) > MAX_TEXT:
            await websocket.send_json(_error(f"a message is at most {MAX_TEXT} characters"))
            return
        message = {
            "type": "message",
            "room": member.room,
            "name": member.name,
            "client": member.client,
            "text": text.strip(),
            "ts": round(time.time() * 1000),
        }
        self.history.setdefault(member.room, deque(maxlen=HISTORY)).append(message)
        room = self.rooms.get(member.room)
        if room is not None:
            await room.broadcast(message)

    async def disconnected(self, websocket: WebSocket) -> None:
        """Forget a connection; the others in its room see it leave."""
        member = self.members.pop(websocket, None)
        if member is not None:
            await self._leave(websocket, member)
            await self.handler.broadcast({"type": "rooms", "rooms": self.room_list()})

    async def _leave(self, websocket: WebSocket, member: Member) -> None:
        room = self.rooms.leave(member.room, websocket)
        if room is not None and len(room):
            await room.broadcast({"type": "system", "room": member.room, "text": f"{member.name} left"})
            await room.broadcast({"type": "presence", "room": member.room, "members": self.presence(member.room)})


def create_app() -> Application:
    """Build the demo application (a fresh chat each time, for tests)."""
    application = Application()
    application.expose_metrics()  # Prometheus metrics at GET /metrics (the metrics extra)
    demo = DemoChat()
    application.state.chat = demo

    @application.get("/")
    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse((STATIC / "demo.html").read_text(encoding="utf-8"))

    @application.get("/static/{name}")
    async def asset(request: Request, name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404, f"no asset {name!r}")
        return Response((STATIC / name).read_bytes(), media_type=media_type, headers={"cache-control": "no-cache"})

    @application.get("/favicon.ico")
    async def favicon(request: Request) -> Response:
        return Response((STATIC / "favicon.svg").read_bytes(), media_type="image/svg+xml")

    @application.websocket("/chat")
    async def chat(websocket: WebSocket) -> None:
        await demo.handler.handle_connection(websocket)

    @application.get("/guide-client")
    async def guide_client(request: Request) -> HTMLResponse:
        return HTMLResponse(chat_app.CHAT_PAGE.read_text(encoding="utf-8"))

    @application.websocket("/ws")
    async def guide_chat(websocket: WebSocket) -> None:
        await chat_app.ws_handler.handle_connection(websocket)

    return application


app = create_app()
