"""A live dashboard of one node, built with QakeAPI itself: a page and a WebSocket of its own.

:meth:`Application.expose_dashboard <qakeapi.core.application.Application.expose_dashboard>`
serves, at ``GET /dashboard``, a page that connects to ``/dashboard/ws`` and shows, updated
every second: the nodes of the cluster, this node's connections by route, its message rates,
slow consumers and drops, and the rooms of the cluster with their members. Off unless that call
is made; the WebSocket answers only a client that sends the dashboard's token as its first
message (the page reads it from the URL's fragment, ``/dashboard#token=...``, which browsers
never send to the server, so it stays out of access logs). Room names and user ids are shown:
keep the token secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from typing import TYPE_CHECKING, Any

from qakeapi.core.counters import counters, default_node, observed
from qakeapi.core.requests import Request
from qakeapi.core.responses import HTMLResponse
from qakeapi.core.websockets.outbox import stats
from qakeapi.exceptions import WebSocketDisconnect
from qakeapi.status import CloseCode

if TYPE_CHECKING:
    from qakeapi.core.routing import Routes
    from qakeapi.core.websockets.connection import WebSocket

__all__ = ["DEFAULT_DASHBOARD_PATH", "MIN_TOKEN_LENGTH", "dashboard_state", "expose_dashboard"]

logger = logging.getLogger("qakeapi.dashboard")

DEFAULT_DASHBOARD_PATH = "/dashboard"
MIN_TOKEN_LENGTH = 16
_AUTH_TIMEOUT = 10.0
_MAX_MEMBERS_SHOWN = 50


def dashboard_state(node: str | None = None) -> dict[str, Any]:
    """What the dashboard shows now, as JSON-ready data.

    Args:
        node: This node's label (``None``: :func:`~qakeapi.core.counters.default_node`).

    Returns:
        ``{"node", "time", "nodes", "connections", "received", "sent", "received_bytes",
        "sent_bytes", "slow_consumers", "dropped", "rooms"}``: ``nodes`` maps instance ids to
        node labels (this process's included), ``connections`` open connections by route, and
        ``rooms`` each room of the cluster with its member count and (up to 50) members.
    """
    nodes: dict[str, str] = {}
    rooms: dict[str, dict[str, Any]] = {}
    for manager in list(observed.clusters):
        nodes[manager.instance_id] = manager.node_id
        nodes.update(manager.nodes)
        presence = manager.presence
        for room in sorted(presence.rooms()):
            members = presence.members(room)
            shown = [
                {"connection": member.connection_id, "user": member.user_id, "node": member.node_id}
                for member in list(members.values())[:_MAX_MEMBERS_SHOWN]
            ]
            rooms[room] = {"count": len(members), "members": shown}
    return {
        "node": node or default_node(),
        "time": time.time(),
        "nodes": nodes,
        "connections": {route: count for route, count in counters.open_connections().items() if count},
        "received": counters.received,
        "sent": counters.sent,
        "received_bytes": counters.received_bytes,
        "sent_bytes": counters.sent_bytes,
        "slow_consumers": stats.disconnected,
        "dropped": stats.dropped,
        "rooms": rooms,
    }


def expose_dashboard(
    app: Routes,
    path: str = DEFAULT_DASHBOARD_PATH,
    *,
    token: str,
    node: str | None = None,
    interval: float = 1.0,
) -> None:
    """Serve the dashboard page at ``GET path`` and its WebSocket at ``path + "/ws"``.

    Args:
        app: The application (or anything that takes routes and lifespan hooks).
        path: Where the page is.
        token: What a client must send first to be shown anything (at least 16 characters).
        node: This node's label (``None``: the cluster node's id, else the host name).
        interval: Seconds between two updates.

    Raises:
        ValueError: ``token`` is shorter than 16 characters, or ``interval`` is not positive.
    """
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"the dashboard token must have at least {MIN_TOKEN_LENGTH} characters")
    if not interval > 0:
        raise ValueError("interval must be positive")
    expected = token.encode()
    page = _PAGE.replace("__SOCKET_PATH__", path.rstrip("/") + "/ws")

    async def dashboard_page(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async def dashboard_socket(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            first = await asyncio.wait_for(websocket.receive_json(), _AUTH_TIMEOUT)
        except (asyncio.TimeoutError, ValueError, WebSocketDisconnect):
            first = None
        given = first.get("token") if isinstance(first, dict) else None
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected):
            logger.warning(
                "dashboard: refused WebSocket %s from %s: wrong or missing token", websocket.id, websocket.client
            )
            await websocket.close(CloseCode.POLICY_VIOLATION, "unauthorized")
            return
        await _stream(websocket, node, interval)

    app.get(path)(dashboard_page)
    app.websocket(path.rstrip("/") + "/ws")(dashboard_socket)


async def _stream(websocket: WebSocket, node: str | None, interval: float) -> None:
    """Send the state every ``interval`` seconds until the client leaves."""
    gone = asyncio.ensure_future(_until_disconnect(websocket))
    try:
        while not gone.done():
            await websocket.send_json(dashboard_state(node))
            await asyncio.wait({gone}, timeout=interval)
    finally:
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone


async def _until_disconnect(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_message()  # the client says nothing more; read until it leaves


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>QakeAPI dashboard</title>
<style>
 body { font: 14px system-ui, sans-serif; margin: 1.5rem; color: #222; }
 h1 { font-size: 1.3rem; } h2 { font-size: 1rem; margin-top: 1.5rem; }
 table { border-collapse: collapse; } td, th { padding: .2rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }
 .num { text-align: right; font-variant-numeric: tabular-nums; }
 #status { color: #a00; } #status.live { color: #080; }
</style>
</head>
<body>
<h1>QakeAPI · node <span id="node">…</span> <small id="status">connecting</small></h1>
<form id="login" hidden><label>Token <input id="token" type="password" autocomplete="off"></label>
 <button>Open</button></form>
<h2>Nodes</h2><table><tbody id="nodes"></tbody></table>
<h2>This node</h2>
<table><tbody>
 <tr><th>Connections</th><td class="num" id="connections">0</td></tr>
 <tr><th>Messages received / s</th><td class="num" id="received-rate">0</td></tr>
 <tr><th>Frames sent / s</th><td class="num" id="sent-rate">0</td></tr>
 <tr><th>Messages received</th><td class="num" id="received">0</td></tr>
 <tr><th>Frames sent</th><td class="num" id="sent">0</td></tr>
 <tr><th>Slow consumers closed</th><td class="num" id="slow">0</td></tr>
 <tr><th>Frames dropped</th><td class="num" id="dropped">0</td></tr>
</tbody></table>
<h2>Connections by route</h2><table><tbody id="routes"></tbody></table>
<h2>Rooms</h2><table><tbody id="rooms"></tbody></table>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
function rows(body, items) {
  body.replaceChildren(...items.map((cells) => {
    const tr = document.createElement("tr");
    for (const [text, numeric] of cells) {
      const td = document.createElement("td");
      td.textContent = String(text);
      if (numeric) td.className = "num";
      tr.append(td);
    }
    return tr;
  }));
}
let last = null;
function show(state) {
  $("node").textContent = state.node;
  const nodes = Object.entries(state.nodes).map(([instance, node]) => [[node], [instance]]);
  rows($("nodes"), nodes.sort((a, b) => a[0][0].localeCompare(b[0][0])));
  const routes = Object.entries(state.connections);
  $("connections").textContent = routes.reduce((sum, [, n]) => sum + n, 0);
  rows($("routes"), routes.map(([route, n]) => [[route], [n, true]]));
  if (last !== null && state.time > last.time) {
    const seconds = state.time - last.time;
    $("received-rate").textContent = ((state.received - last.received) / seconds).toFixed(1);
    $("sent-rate").textContent = ((state.sent - last.sent) / seconds).toFixed(1);
  }
  last = state;
  $("received").textContent = state.received;
  $("sent").textContent = state.sent;
  $("slow").textContent = state.slow_consumers;
  $("dropped").textContent = state.dropped;
  rows($("rooms"), Object.entries(state.rooms).map(([room, info]) =>
    [[room], [info.count, true], [info.members.map((m) => (m.user || m.connection) + "@" + m.node).join(", ")]]));
}
function open(token) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}__SOCKET_PATH__`);
  socket.onopen = () => socket.send(JSON.stringify({type: "auth", token}));
  socket.onmessage = (event) => {
    $("status").textContent = "live"; $("status").className = "live"; show(JSON.parse(event.data));
  };
  socket.onclose = (event) => {
    $("status").className = "";
    $("status").textContent = event.code === 1008 ? "refused: wrong token" : "disconnected; retrying";
    if (event.code !== 1008) setTimeout(() => open(token), 2000);
  };
}
const fragment = new URLSearchParams(location.hash.slice(1)).get("token");
if (fragment) {
  open(fragment);
} else {
  $("login").hidden = false;
  $("login").onsubmit = (event) => { event.preventDefault(); $("login").hidden = true; open($("token").value); };
}
</script>
</body>
</html>
"""
