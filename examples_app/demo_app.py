"""The demo chat served by ``scripts/demo.sh``, built on the browser client and the cluster.

``GET /`` serves the page (``static/demo.html``); the page imports ``qakeapi.js`` (served by
:meth:`~qakeapi.core.application.Application.serve_client`) and talks to the WebSocket ``/chat``.
Rooms, presence and history come from a :class:`~qakeapi.core.clustering.ClusteredManager` with
a :class:`~qakeapi.core.cluster.history.HistoryPolicy`: one node (``memory://``) by default; with
``QAKEAPI_REDIS_URL`` (and the same ``QAKEAPI_SECRET_KEY`` and ``QAKEAPI_CLUSTER_SECRET`` on every
node, each its own ``QAKEAPI_NODE_ID``) every demo node on that Redis is part of one chat. A page
whose node goes away reconnects to it when it is back and gets every message said meanwhile,
once, in order.

HTTP: ``POST /token`` with ``{"name": "Ada"}`` answers ``{"token": ...}`` (a JWT for the user
``Ada``; a demo asks for no password); ``POST /api/revoke`` with ``Authorization: Bearer <token>``
signs that user out everywhere (their pages are closed with 4003 and do not reconnect).

The protocol of ``/chat`` (every frame a JSON object with a ``type``), the tutorial's chat on the
client protocol of the docs' reference page:

client to server
    ``{"type": "join", "room": "general", "client": "<page id>", "since": {"epoch", "offset"}}``
    (``since`` when coming back) enters a room, leaving the previous one; ``{"type": "say",
    "room": "general", "text": "..."}``; ``{"type": "leave", "room": ...}``; ``{"type": "ping"}``;
    ``{"type": "auth", "token": ...}`` refreshes the token in band.
server to client
    ``welcome`` (who you are, the rooms to offer), ``recovery`` then ``joined`` (you, the
    members), ``publication`` (its ``data`` is a ``said``), ``presence`` (joins and leaves),
    ``rooms`` (every room and how many are in it), ``left``, ``pong``, ``error``.

Run: ``uvicorn examples_app.demo_app:app`` and open http://127.0.0.1:8000 in two tabs.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from examples_app import chat_app
from examples_app.settings import auth_config, auth_options, node_id, redis_url
from qakeapi import (
    Application,
    AuthenticationError,
    ClusterUnavailableError,
    HistoryPolicy,
    HTMLResponse,
    HTTPException,
    Position,
    PresenceDiff,
    Recovery,
    Request,
    Response,
    RoomLimitError,
    ValidationError,
    WebSocket,
    WebSocketHandler,
    create_clustered_manager,
)
from qakeapi.security import JWTAuthenticator, WebSocketAuthMiddleware

__all__ = ["DEFAULT_ROOMS", "HISTORY", "RECENT", "DemoChat", "app", "clean_name", "create_app"]

STATIC = Path(__file__).with_name("static")
DEFAULT_ROOMS = ("general", "random", "help")
HISTORY = 200
"""How many messages a room keeps for pages that come back after a lost connection."""
HISTORY_TTL = 3600.0
RECENT = 50
"""How many of a room's latest messages a page that enters it is shown."""
MAX_NAME = 32
MAX_TEXT = 2000
ROOM_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,23}")
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
ASSETS = {
    "demo.css": "text/css",
    "demo.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}


def _error(message: str) -> dict[str, str]:
    return {"type": "error", "message": message}


def clean_name(value: Any) -> str | None:
    """``value`` as a name (spaces collapsed), or ``None`` when it is not 1 to 32 printable characters."""
    if not isinstance(value, str):
        return None
    name = " ".join(value.split())
    if not 1 <= len(name) <= MAX_NAME or not name.isprintable():
        return None
    return name


class DemoChat:
    """The chat behind ``/chat``: one room per connection at a time, on a cluster node.

    Args:
        redis: The cluster's backend URL (``memory://...`` for one node).
        node: This node's label.
    """

    def __init__(self, redis: str, node: str) -> None:
        self.node = node
        self.handler = WebSocketHandler(max_message_size=16 * 1024)
        self.manager = create_clustered_manager(
            self.handler, redis_url=redis, node_id=node, history=HistoryPolicy(size=HISTORY, ttl=HISTORY_TTL)
        )
        self.authenticator = JWTAuthenticator(auth_config())
        options = {**auth_options(), "required": True}
        self.auth = WebSocketAuthMiddleware(self.authenticator, handler=self.manager, transport=self.manager, **options)
        self.pages: dict[WebSocket, str] = {}
        self.current: dict[WebSocket, str] = {}
        self.handler.on_connect(self.connected)
        self.handler.on_message(self.received)
        self.handler.on_disconnect(self.disconnected)
        self.manager.on_presence(self.presence_changed)
        self._handlers = {"join": self.join, "say": self.say, "leave": self.leave, "ping": self.ping}

    def room_list(self) -> list[dict[str, Any]]:
        """The default rooms and every room someone is in (on any node), with how many are there."""
        presence = self.manager.presence
        names = list(DEFAULT_ROOMS) + sorted(name for name in presence.rooms() if name not in DEFAULT_ROOMS)
        return [{"name": name, "online": len(presence.members(name))} for name in names]

    async def connected(self, websocket: WebSocket) -> None:
        """Greet a new connection: who it is, and the rooms it can join."""
        await websocket.send_json(
            {"type": "welcome", "user": websocket.user_id, "node": self.node, "rooms": self.room_list()}
        )

    async def received(self, websocket: WebSocket, message: Any) -> None:
        """Handle one frame from a page (the table ``_handlers`` by its ``type``)."""
        kind = message.get("type") if isinstance(message, dict) else None
        handle = self._handlers.get(kind) if isinstance(kind, str) else None
        if handle is None:
            await websocket.send_json(_error(f"expected a JSON object whose type is one of {sorted(self._handlers)}"))
            return
        await handle(websocket, message)

    async def join(self, websocket: WebSocket, message: dict[str, Any]) -> None:
        """Enter a room (leaving the previous one), recovering from ``since`` when given."""
        room, client = message.get("room"), message.get("client")
        if not isinstance(room, str) or not ROOM_NAME.fullmatch(room):
            await websocket.send_json(
                _error("a room name is 1 to 24 of a-z, 0-9 and '-', starting with a letter or digit")
            )
            return
        if not isinstance(client, str) or not CLIENT_ID.fullmatch(client):
            await websocket.send_json(_error("'client' is 1 to 64 of A-Z, a-z, 0-9, '_' and '-'"))
            return
        previous = self.current.get(websocket)
        if previous is not None and previous != room:
            self.manager.rooms.leave(previous, websocket)
        self.pages[websocket] = client
        try:
            if message.get("since") is not None:
                recovery = await self.manager.join(room, websocket, since=Position.parse(message["since"]))
            else:
                recovery = await self.join_with_recent(room, websocket)
        except (ValueError, RoomLimitError) as exc:  # RoomLimitError is a ValueError too
            await websocket.send_json(_error(str(exc)))
            return
        self.current[websocket] = room
        if recovery is not None:
            await websocket.send_json(recovery.as_message(room))
        members = [member.as_message() for member in self.manager.presence.members(room).values()]
        you = self.manager.connection_id(websocket)
        await websocket.send_json({"type": "joined", "room": room, "you": you, "node": self.node, "members": members})

    async def join_with_recent(self, room: str, websocket: WebSocket) -> Recovery | None:
        """Join ``room`` and replay its latest :data:`RECENT` messages (a newcomer sees the conversation).

        The first join asks for a position no history has, which replays nothing and answers the
        room's latest position; the second replays from :data:`RECENT` before it.
        """
        latest = await self.manager.join(room, websocket, since=Position("", 0))
        if latest is None or latest.position is None or latest.position.offset == 0:
            return None
        start = Position(latest.position.epoch, max(0, latest.position.offset - RECENT))
        return await self.manager.join(room, websocket, since=start)

    async def say(self, websocket: WebSocket, message: dict[str, Any]) -> None:
        """Say ``text`` in the connection's room: everyone there, on every node, gets it as a publication."""
        room, text = message.get("room", self.current.get(websocket)), message.get("text")
        joined = self.manager.rooms.get(room) if isinstance(room, str) else None
        if joined is None or websocket not in joined:
            await websocket.send_json(_error("join a room first"))
            return
        if not isinstance(text, str) or not text.strip():
            await websocket.send_json(_error("say something: 'text' is empty"))
            return
        if len(text) > MAX_TEXT:
            await websocket.send_json(_error(f"a message is at most {MAX_TEXT} characters"))
            return
        said = {
            "type": "said",
            "room": room,
            "from": websocket.user_id,
            "client": self.pages.get(websocket),
            "node": self.node,
            "text": text.strip(),
            "ts": round(time.time() * 1000),
        }
        try:
            await joined.broadcast(said)
        except ClusterUnavailableError as exc:  # this node's members got it; the other nodes' did not
            await websocket.send_json(_error(f"not delivered to the other nodes: {exc}"))

    async def leave(self, websocket: WebSocket, message: dict[str, Any]) -> None:
        """Leave a room."""
        room = message.get("room")
        if isinstance(room, str):
            self.manager.rooms.leave(room, websocket)
            if self.current.get(websocket) == room:
                del self.current[websocket]
        await websocket.send_json({"type": "left", "room": room})

    async def ping(self, websocket: WebSocket, message: dict[str, Any]) -> None:
        """Answer the client's keep-alive (its silence timeout)."""
        await websocket.send_json({"type": "pong"})

    async def disconnected(self, websocket: WebSocket) -> None:
        """Forget a connection (the manager takes it out of its rooms)."""
        self.pages.pop(websocket, None)
        self.current.pop(websocket, None)

    async def presence_changed(self, diff: PresenceDiff) -> None:
        """Tell this node's members of the room, and this node's pages the new room counts."""
        room = self.manager.rooms.get(diff.room)
        if room is not None:
            room.broadcast_local(diff.as_message())
        await self.handler.broadcast({"type": "rooms", "rooms": self.room_list()})

    def issue_token(self, name: Any) -> str:
        """A token for the user ``name``.

        Raises:
            ValidationError: ``name`` is not a name.
        """
        cleaned = clean_name(name)
        if cleaned is None:
            raise ValidationError(f"a name is 1 to {MAX_NAME} printable characters")
        return self.authenticator.create_token(cleaned)

    async def revoke(self, authorization: str) -> dict[str, Any]:
        """Sign the bearer of ``authorization`` (``Bearer <token>``) out everywhere.

        Raises:
            HTTPException: 401 without a valid token; 503 when the other nodes cannot be told.
        """
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, "expected Authorization: Bearer <token>")
        try:
            user = self.authenticator.verify_token(token.strip())["sub"]
        except AuthenticationError as exc:
            raise HTTPException(401, f"token rejected: {exc.reason}") from None
        try:
            closed = await self.auth.revoke(user, "signed out")
        except ClusterUnavailableError as exc:
            raise HTTPException(503, f"signed out on this node only: {exc}") from None
        return {"user": user, "closed": closed}


def create_app(redis: str | None = None) -> Application:
    """Build the demo application (a fresh chat each time, for tests).

    Args:
        redis: The cluster's backend URL; ``None``: ``QAKEAPI_REDIS_URL``, else ``memory://demo``.
    """
    application = Application()
    application.expose_metrics()  # Prometheus metrics at GET /metrics (the metrics extra)
    demo = DemoChat(redis or redis_url("memory://demo"), node_id("demo-1"))
    application.state.chat = demo
    application.on_startup(demo.manager.start)
    application.on_shutdown(demo.manager.close)
    client_url = application.serve_client()
    page = (STATIC / "demo.html").read_text(encoding="utf-8").replace("__QAKEAPI_JS__", client_url)

    @application.get("/")
    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    @application.get("/static/{name}")
    async def asset(request: Request, name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404, f"no asset {name!r}")
        return Response((STATIC / name).read_bytes(), media_type=media_type, headers={"cache-control": "no-cache"})

    @application.get("/favicon.ico")
    async def favicon(request: Request) -> Response:
        return Response((STATIC / "favicon.svg").read_bytes(), media_type="image/svg+xml")

    @application.post("/token")
    async def token(request: Request) -> dict[str, str]:
        data = await request.json()
        return {"token": demo.issue_token(data.get("name") if isinstance(data, dict) else None)}

    @application.post("/api/revoke")
    async def revoke(request: Request) -> dict[str, Any]:
        return await demo.revoke(request.headers.get("authorization", ""))

    @application.websocket("/chat")
    async def chat(websocket: WebSocket) -> None:
        await demo.auth(websocket, demo.manager.handle_connection)

    @application.get("/guide-client")
    async def guide_client(request: Request) -> HTMLResponse:
        return HTMLResponse(chat_app.CHAT_PAGE.read_text(encoding="utf-8"))

    @application.websocket("/ws")
    async def guide_chat(websocket: WebSocket) -> None:
        await chat_app.ws_handler.handle_connection(websocket)

    return application


app = create_app()
