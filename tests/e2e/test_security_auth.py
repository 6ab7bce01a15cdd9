"""Authentication under attack, over the network: ``examples_app.auth_app`` under uvicorn.

Refusal before the upgrade (401 + ``WWW-Authenticate``) on each uvicorn WebSocket
implementation, the Kubernetes-style and ``bearer, <token>, chat`` subprotocols, expiry with a
grace period (4001), in-band refresh, revocation (4003 within 2 s, on one node and across two
nodes on a private Redis) and the auth timeout.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.typing import Origin, Subprotocol

from tests.e2e.conftest import Serve, generate_token, recv_json
from tests.e2e.servers import Server
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

HANG = 10.0
"""Seconds that only catch a hang: how soon a revocation or an expiry acts is measured in benchmarks/."""

IMPLEMENTATIONS = ["websockets-sansio", "websockets", "wsproto"]


def welcome(user: str) -> dict[str, str]:
    return {"type": "welcome", "message": f"Welcome, {user}!"}


def k8s(token: str) -> Subprotocol:
    encoded = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    return Subprotocol(f"base64url.bearer.authorization.k8s.io.{encoded}")


async def closed_by_server(ws: ClientConnection, timeout: float) -> tuple[int, str]:
    """Read (bounded by ``timeout``) until the server closes ``ws``; return its close code and reason."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosedError) as closed:  # noqa: PT012 - messages may come first
        while True:
            await recv_json(ws, timeout=max(0.01, deadline - time.monotonic()))
    assert closed.value.rcvd is not None, "the server dropped the connection without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


def _post_revoke(url: str, token: str) -> tuple[int, object]:
    request = urllib.request.Request(url, data=b"{}", headers={"Authorization": f"Bearer {token}"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:  # a 4xx answer: its status and body are the result
        with error:
            return error.code, json.loads(error.read())


async def post_revoke(server: Server, token: str) -> tuple[int, object]:
    """``POST /api/revoke`` with ``Authorization: Bearer <token>`` (in a thread)."""
    return await asyncio.to_thread(_post_revoke, f"{server.http_url}/api/revoke", token)


async def refused(url: str, **kwargs: object) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, **kwargs):  # type: ignore[arg-type]
            pass
    return info.value


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
async def test_required_auth_refuses_before_the_upgrade(serve: Serve, implementation: str) -> None:
    server = serve("auth_app", env={"QAKEAPI_AUTH_REQUIRED": "1"}, args=("--ws", implementation))
    token = await generate_token(server, "alice")
    missing = await refused(f"{server.ws_url}/ws")
    forged = await refused(f"{server.ws_url}/ws?token={token[:-4]}AAAA")
    assert missing.response.status_code == 401
    assert missing.response.headers["WWW-Authenticate"] == 'Bearer realm="qakeapi"'
    assert json.loads(missing.response.body) == {"detail": "missing"}
    assert forged.response.status_code == 401
    assert forged.response.headers["WWW-Authenticate"] == (
        'Bearer realm="qakeapi", error="invalid_token", error_description="invalid_signature"'
    )
    async with connect(f"{server.ws_url}/ws?token={token}") as ws:
        assert await recv_json(ws) == welcome("alice")
    output = server.output()
    assert "token from query rejected (invalid_signature)" in output
    assert "refused, no token" in output
    assert token[-20:] not in output


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
async def test_token_subprotocols_and_the_apps_own(serve: Serve, implementation: str) -> None:
    server = serve("auth_app", env={"QAKEAPI_AUTH_REQUIRED": "1"}, args=("--ws", implementation))
    token = await generate_token(server, "alice")
    offers = [
        ([Subprotocol("bearer"), Subprotocol(token), Subprotocol("chat")], "chat"),
        ([Subprotocol("chat"), k8s(token)], "chat"),
        ([Subprotocol("bearer"), Subprotocol(token)], "bearer"),
    ]
    for offered, selected in offers:
        async with connect(f"{server.ws_url}/ws", subprotocols=offered) as ws:
            assert ws.subprotocol == selected
            assert await recv_json(ws) == welcome("alice")


async def test_an_expired_token_is_closed_after_the_grace_unless_refreshed(serve: Serve) -> None:
    server = serve("auth_app", env={"QAKEAPI_TOKEN_EXPIRY": "2", "QAKEAPI_EXPIRY_GRACE": "1"})
    stale_token = await generate_token(server, "alice")
    async with connect(f"{server.ws_url}/ws?token={stale_token}") as stale:
        assert await recv_json(stale) == welcome("alice")
        refreshing_token = await generate_token(server, "bob")
        async with connect(f"{server.ws_url}/ws?token={refreshing_token}") as refreshing:
            assert await recv_json(refreshing) == welcome("bob")
            assert await recv_json(stale, timeout=5) == {"type": "auth.expired", "grace": 1.0}
            expired_at = time.monotonic()
            # bob is told too, and refreshes in band within the grace
            assert await recv_json(refreshing, timeout=3) == {"type": "auth.expired", "grace": 1.0}
            await refreshing.send(json.dumps({"type": "auth", "token": await generate_token(server, "bob")}))
            answer = await recv_json(refreshing)
            assert (answer["type"], answer["user"]) == ("auth.ok", "bob")
            code, reason = await closed_by_server(stale, timeout=HANG)
            assert (code, reason) == (4001, "token expired")
            assert time.monotonic() - expired_at > 0.5  # not before the grace of 1 s (give or take when we read)
            # a client that refreshes whenever told stays connected across more expiries
            deadline, pongs, refreshes, oks = time.monotonic() + 3.5, 0, 0, 0
            while time.monotonic() < deadline:
                await refreshing.send(json.dumps("ping"))
                while (answer := await recv_json(refreshing)) != {"type": "message", "data": "ping", "user": "bob"}:
                    if answer == {"type": "auth.expired", "grace": 1.0}:
                        token = await generate_token(server, "bob")
                        await refreshing.send(json.dumps({"type": "auth", "token": token}))
                        refreshes += 1
                    else:
                        assert (answer["type"], answer["user"]) == ("auth.ok", "bob")
                        oks += 1
                pongs += 1
                await asyncio.sleep(0.05)
            assert refreshes >= 1  # it crossed an expiry, refreshed, and is still connected
            assert oks >= refreshes - 1  # the last answer may still be on its way
            assert pongs >= 1


async def test_revoke_closes_every_socket_of_the_user(serve: Serve) -> None:
    server = serve("auth_app")
    alice = await generate_token(server, "alice")
    bob = await generate_token(server, "bob")
    async with (
        connect(f"{server.ws_url}/ws?token={alice}") as alice1,
        connect(f"{server.ws_url}/ws", additional_headers={"Authorization": f"Bearer {alice}"}) as alice2,
        connect(f"{server.ws_url}/ws?token={bob}") as bob1,
    ):
        for ws, user in ((alice1, "alice"), (alice2, "alice"), (bob1, "bob")):
            assert await recv_json(ws) == welcome(user)
        status, body = await post_revoke(server, alice)
        assert (status, body) == (200, {"user_id": "alice", "closed": 2})
        for ws in (alice1, alice2):
            assert await closed_by_server(ws, timeout=HANG) == (4003, "signed out")
        await bob1.send(json.dumps("still here"))
        assert await recv_json(bob1) == {"type": "message", "data": "still here", "user": "bob"}
    async with connect(f"{server.ws_url}/ws?token={alice}") as again:  # the old token is dead
        assert await recv_json(again) == {
            "type": "auth_required",
            "message": "Please authenticate",
            "reason": "revoked",
        }
    assert (await post_revoke(server, alice))[0] == 401


async def test_revoke_on_one_node_closes_the_user_on_every_node(serve: Serve, redis_server: RedisServer) -> None:
    env = {"QAKEAPI_REDIS_URL": redis_server.url, "QAKEAPI_SECRET_KEY": secrets.token_urlsafe(32)}
    node1, node2 = (serve("auth_app", env={**env, "QAKEAPI_NODE_ID": f"auth-{n}"}) for n in (1, 2))
    alice = await generate_token(node1, "alice")
    bob = await generate_token(node2, "bob")
    async with (
        connect(f"{node1.ws_url}/ws?token={alice}") as alice1,
        connect(f"{node2.ws_url}/ws?token={alice}") as alice2,
        connect(f"{node2.ws_url}/ws", subprotocols=[Subprotocol("bearer"), Subprotocol(alice)]) as alice3,
        connect(f"{node2.ws_url}/ws?token={bob}") as bob2,
    ):
        for ws, user in ((alice1, "alice"), (alice2, "alice"), (alice3, "alice"), (bob2, "bob")):
            assert await recv_json(ws) == welcome(user)
        status, body = await post_revoke(node1, alice)
        assert (status, body) == (200, {"user_id": "alice", "closed": 1})  # node 1's own; node 2 closes its two
        for ws in (alice1, alice2, alice3):  # how fast: benchmarks/security.py (revocation across nodes)
            assert await closed_by_server(ws, timeout=HANG) == (4003, "signed out")
        await bob2.send(json.dumps("still here"))
        assert await recv_json(bob2) == {"type": "message", "data": "still here", "user": "bob"}
    async with connect(f"{node2.ws_url}/ws?token={alice}") as again:  # the old token is dead on node 2 too
        assert (await recv_json(again))["reason"] == "revoked"
    assert (await post_revoke(node2, alice))[0] == 401
    for node in (node1, node2):
        assert alice[-20:] not in node.output()
        assert "Traceback" not in node.output()
    assert "node auth-1 revoked user alice" in node2.output()


async def test_a_socket_that_never_authenticates_is_closed(serve: Serve) -> None:
    server = serve("auth_app", env={"QAKEAPI_AUTH_TIMEOUT": "0.5"})
    async with connect(f"{server.ws_url}/ws") as anonymous:
        assert (await recv_json(anonymous))["type"] == "auth_required"
        assert await closed_by_server(anonymous, timeout=3) == (4001, "authentication timeout")
    async with connect(f"{server.ws_url}/ws") as late:
        assert (await recv_json(late))["type"] == "auth_required"
        await late.send(json.dumps({"type": "auth", "token": await generate_token(server, "carol")}))
        assert (await recv_json(late))["type"] == "auth.ok"
        start = time.monotonic()
        while time.monotonic() - start < 1.0:  # past the timeout: still served
            await late.send(json.dumps("hi"))
            assert await recv_json(late) == {"type": "message", "data": "hi", "user": "carol"}
            await asyncio.sleep(0.05)  # a chat's pace, well under the rate limit


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://127.0.0.1.evil.com",
        "ftp://127.0.0.1:{port}",  # not a web origin
        "http://127.0.0.1:1",  # wrong port
        "null",
        "http://localhost:{port}",  # another host name for the same server is another origin
    ],
)
async def test_a_foreign_origin_is_refused_with_403(serve: Serve, origin: str) -> None:
    server = serve("auth_app", env={"QAKEAPI_ALLOWED_ORIGINS": "https://app.example"})
    token = await generate_token(server, "alice")
    bad = origin.format(port=server.port)
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{server.ws_url}/ws?token={token}", origin=Origin(bad)):
            pass
    assert info.value.response.status_code == 403
    for good in (f"http://127.0.0.1:{server.port}", "https://app.example"):
        async with connect(f"{server.ws_url}/ws?token={token}", origin=Origin(good)) as ws:
            assert await recv_json(ws) == welcome("alice")
    assert f"origin {bad!r} refused" in server.output()


async def handshake_status(server: Server, host: str, origin: str) -> int:
    """The status of a raw handshake to ``server`` that sends ``Host: host`` and ``Origin: origin``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        writer.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10.0)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_dns_rebinding_a_matching_origin_on_an_unlisted_host_is_refused(serve: Serve) -> None:
    # A page of http://evil.com:<port> whose name now points at this server: Origin and Host match.
    server = serve("auth_app")
    port = server.port
    assert await handshake_status(server, f"evil.com:{port}", f"http://evil.com:{port}") == 403
    assert await handshake_status(server, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}") == 101
    assert await handshake_status(server, f"localhost:{port}", f"http://localhost:{port}") == 101
    assert "refused (host_not_allowed)" in server.output()
    assert "allowed_hosts=" in server.output()
    listed = serve("auth_app", env={"QAKEAPI_ALLOWED_HOSTS": "evil.com"})
    assert await handshake_status(listed, f"evil.com:{listed.port}", f"http://evil.com:{listed.port}") == 101
