"""Token carriers, subprotocol choice, refusal headers, expiry, in-band refresh, revocation and caps
of qakeapi.security.websocket_auth / qakeapi.security.sessions, in process (TestClient)."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any

import pytest

from qakeapi import Application, WebSocket, WebSocketDisconnect, WebSocketHandler
from qakeapi.core.datastructures import Headers, QueryParams
from qakeapi.security import AuthConfig, JWTAuthenticator, WebSocketAuthMiddleware
from qakeapi.security.carriers import K8S_SUBPROTOCOL_PREFIX, extract_token, is_token_carrier
from qakeapi.security.sessions import AuthCloseCode, AuthSessions
from qakeapi.testing import TestClient, WebSocketDenied, WebSocketTestSession

KEY = "k" * 32
AUTH = JWTAuthenticator(AuthConfig(secret_key=KEY))


def k8s(token: str) -> str:
    return K8S_SUBPROTOCOL_PREFIX + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def short_token(user: str, seconds: float) -> str:
    """A token of ``user`` that expires ``seconds`` from now (rounded up to the next whole second)."""
    return AUTH.create_token(user, exp=int(time.time() + seconds) + 1)


def app_with(middleware: WebSocketAuthMiddleware) -> tuple[Application, WebSocketHandler]:
    app = Application()
    handler = WebSocketHandler()
    seen: list[Any] = []

    @handler.on_connect
    async def hello(websocket: WebSocket) -> None:
        await websocket.send_json(
            {"user": websocket.user_id, "error": websocket.auth_error, "subprotocol": websocket.accepted_subprotocol}
        )

    @handler.on_message
    async def echo(websocket: WebSocket, message: Any) -> None:
        seen.append(message)
        await websocket.send_json({"echo": message, "user": websocket.user_id})

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await middleware(websocket, handler.handle_connection)

    app.state.seen = seen
    return app, handler


async def closed_with(session: WebSocketTestSession, timeout: float = 3.0) -> tuple[int, str]:
    """Receive until the app closes ``session`` (bounded); return the code and reason."""
    deadline = time.monotonic() + timeout
    with pytest.raises(WebSocketDisconnect) as info:  # noqa: PT012 - messages may come first
        while True:
            await session.receive_json(timeout=max(0.01, deadline - time.monotonic()))
    return info.value.code, info.value.reason


# -- carriers -------------------------------------------------------------------------------------


def test_k8s_subprotocol_carries_a_base64url_token() -> None:
    token = AUTH.create_token("alice")
    offered = ["v4.channel.k8s.io", k8s(token)]
    assert extract_token(QueryParams(b""), Headers(), offered) == (token, "k8s_subprotocol")


@pytest.mark.parametrize(
    "bad", [K8S_SUBPROTOCOL_PREFIX, K8S_SUBPROTOCOL_PREFIX + "!!!", K8S_SUBPROTOCOL_PREFIX + "/w=="]
)
def test_k8s_subprotocol_that_does_not_decode_is_no_token(bad: str) -> None:
    assert extract_token(QueryParams(b""), Headers(), ["chat", K8S_SUBPROTOCOL_PREFIX + bad]) == (None, None)


def test_bearer_pair_takes_precedence_over_k8s() -> None:
    assert extract_token(QueryParams(b""), Headers(), [k8s("k"), "bearer", "b"]) == ("b", "subprotocol")


def test_token_carriers_are_recognised() -> None:
    offered = ["bearer", "tok", "chat", k8s("x")]
    assert [is_token_carrier(offered, i) for i in range(4)] == [False, True, False, True]
    assert not is_token_carrier(["chat", "bearer"], 0)


@pytest.mark.parametrize(
    ("offered", "wanted", "selected"),
    [
        (["bearer", "TOKEN", "chat"], ("chat",), "chat"),
        (["chat", "bearer", "TOKEN"], ("superchat", "chat"), "chat"),
        (["bearer", "TOKEN"], ("chat",), "bearer"),
        (["bearer", "chat"], ("chat",), "bearer"),  # "chat" is the token here: never selected
        (["v4.channel.k8s.io", "K8S"], ("v4.channel.k8s.io",), "v4.channel.k8s.io"),
        (["chat"], (), None),
        (["bearer", "TOKEN", "chat"], (), "bearer"),
    ],
)
def test_subprotocol_selection(offered: list[str], wanted: tuple[str, ...], selected: str | None) -> None:
    middleware = WebSocketAuthMiddleware(AUTH, subprotocols=wanted)
    offered = [k8s("t") if o == "K8S" else o for o in offered]
    assert middleware.select_subprotocol(offered) == selected


@pytest.mark.asyncio
async def test_the_app_picks_its_own_subprotocol_next_to_a_bearer_token() -> None:
    app, _ = app_with(WebSocketAuthMiddleware(AUTH, subprotocols=["chat"]))
    token = AUTH.create_token("alice")
    async with TestClient(app).websocket_connect("/ws", subprotocols=["bearer", token, "chat"]) as session:
        assert await session.receive_json() == {"user": "alice", "error": None, "subprotocol": "chat"}
        assert session.accepted_subprotocol == "chat"


@pytest.mark.asyncio
async def test_a_k8s_token_authenticates_and_its_real_subprotocol_is_selected() -> None:
    app, _ = app_with(WebSocketAuthMiddleware(AUTH, subprotocols=["v4.channel.k8s.io"]))
    offered = ["v4.channel.k8s.io", k8s(AUTH.create_token("alice"))]
    async with TestClient(app).websocket_connect("/ws", subprotocols=offered) as session:
        assert await session.receive_json() == {"user": "alice", "error": None, "subprotocol": "v4.channel.k8s.io"}


# -- refusal --------------------------------------------------------------------------------------


def test_challenge_headers() -> None:
    middleware = WebSocketAuthMiddleware(AUTH, realm='my "app"')
    assert middleware.challenge("missing")[0] == (b"www-authenticate", b'Bearer realm="my \\"app\\""')
    assert middleware.challenge("expired")[0] == (
        b"www-authenticate",
        b'Bearer realm="my \\"app\\"", error="invalid_token", error_description="expired"',
    )


@pytest.mark.asyncio
async def test_required_refusal_is_logged_at_warning_with_the_reason_and_no_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, _ = app_with(WebSocketAuthMiddleware(AUTH, required=True))
    token = short_token("alice", -30)
    with caplog.at_level(logging.WARNING, logger="qakeapi.security"), pytest.raises(WebSocketDenied) as refused:
        await TestClient(app).websocket_connect(f"/ws?token={token}")
    assert (refused.value.status_code, refused.value.detail) == (401, "expired")
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "rejected (expired)" in caplog.text
    assert token not in caplog.text


# -- in-band auth ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_in_band_auth_authenticates_late_and_hooks_never_see_the_token() -> None:
    app, _ = app_with(WebSocketAuthMiddleware(AUTH))
    token = AUTH.create_token("alice")
    async with TestClient(app).websocket_connect("/ws") as session:
        assert await session.receive_json() == {"user": None, "error": "missing", "subprotocol": None}
        await session.send_json({"type": "auth", "token": "garbage"})
        assert await session.receive_json() == {"type": "auth.error", "reason": "malformed"}
        await session.send_json({"type": "auth", "token": token})
        answer = await session.receive_json()
        assert answer == {"type": "auth.ok", "user": "alice", "expires_at": AUTH.verify_token(token)["exp"]}
        await session.send_json({"hi": 1})
        assert await session.receive_json() == {"echo": {"hi": 1}, "user": "alice"}
    assert app.state.seen == [{"hi": 1}]


@pytest.mark.asyncio
async def test_in_band_token_for_another_user_is_refused_and_changes_nothing() -> None:
    app, _ = app_with(WebSocketAuthMiddleware(AUTH))
    async with TestClient(app).websocket_connect(f"/ws?token={AUTH.create_token('alice')}") as session:
        await session.receive_json()
        await session.send_json({"type": "auth", "token": AUTH.create_token("mallory")})
        assert await session.receive_json() == {"type": "auth.error", "reason": "user_mismatch"}
        await session.send_json({"type": "auth"})
        assert await session.receive_json() == {"type": "auth.error", "reason": "missing"}
        await session.send_json("still me?")
        assert await session.receive_json() == {"echo": "still me?", "user": "alice"}


@pytest.mark.asyncio
async def test_an_expired_token_closes_with_4001_after_the_grace_period() -> None:
    middleware = WebSocketAuthMiddleware(AUTH, expiry_grace=0.2)
    app, _ = app_with(middleware)
    token = short_token("alice", 0)
    exp = AUTH.verify_token(token)["exp"]
    async with TestClient(app).websocket_connect(f"/ws?token={token}") as session:
        await session.receive_json()
        assert await session.receive_json(timeout=3.0) == {"type": "auth.expired", "grace": 0.2}
        assert time.time() >= exp
        assert await closed_with(session, timeout=10.0) == (AuthCloseCode.TOKEN_EXPIRED, "token expired")
    assert middleware.sessions.expired == 1
    assert len(middleware.sessions) == 0


@pytest.mark.asyncio
async def test_an_in_band_refresh_keeps_the_connection_past_the_old_expiry() -> None:
    middleware = WebSocketAuthMiddleware(AUTH, expiry_grace=0.2)
    app, _ = app_with(middleware)
    old = short_token("alice", 0)
    old_exp = AUTH.verify_token(old)["exp"]
    async with TestClient(app).websocket_connect(f"/ws?token={old}") as session:
        await session.receive_json()
        await session.send_json({"type": "auth", "token": AUTH.create_token("alice")})
        assert (await session.receive_json())["type"] == "auth.ok"
        while time.time() < old_exp + 0.2 + 0.3:  # past the old deadline (bounded: about 1.5 s)
            await session.send_json("ping")
            assert await session.receive_json() == {"echo": "ping", "user": "alice"}
            await asyncio.sleep(0.1)
    assert middleware.sessions.expired == 0


@pytest.mark.asyncio
async def test_an_unauthenticated_connection_is_closed_after_the_auth_timeout() -> None:
    middleware = WebSocketAuthMiddleware(AUTH, auth_timeout=0.2)
    app, _ = app_with(middleware)
    started = time.monotonic()
    async with TestClient(app).websocket_connect("/ws") as session:
        await session.receive_json()
        assert await closed_with(session) == (AuthCloseCode.TOKEN_EXPIRED, "authentication timeout")
    assert time.monotonic() - started >= 0.2  # not before the auth timeout
    assert middleware.sessions.auth_timeouts == 1
    # authenticated in band in time: not closed
    async with TestClient(app).websocket_connect("/ws") as session:
        await session.receive_json()
        await session.send_json({"type": "auth", "token": AUTH.create_token("bob")})
        assert (await session.receive_json())["type"] == "auth.ok"
        await asyncio.sleep(0.4)
        await session.send_json("x")
        assert await session.receive_json() == {"echo": "x", "user": "bob"}
    assert middleware.sessions.auth_timeouts == 1


# -- revocation and caps --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_revoke_closes_every_socket_of_the_user_and_refuses_old_tokens() -> None:
    middleware = WebSocketAuthMiddleware(AUTH)
    app, _ = app_with(middleware)
    client = TestClient(app)
    alice_token = AUTH.create_token("alice")
    alice1 = await client.websocket_connect(f"/ws?token={alice_token}")
    alice2 = await client.websocket_connect("/ws", headers={"Authorization": f"Bearer {alice_token}"})
    bob = await client.websocket_connect(f"/ws?token={AUTH.create_token('bob')}")
    for session in (alice1, alice2, bob):
        await session.receive_json()
    assert await middleware.revoke("alice", "account disabled") == 2
    for session in (alice1, alice2):
        assert await closed_with(session) == (AuthCloseCode.REVOKED, "account disabled")
        await session.close()  # ends the session on the test's side too
    await bob.send_json("still here")
    assert await bob.receive_json() == {"echo": "still here", "user": "bob"}
    async with client.websocket_connect(f"/ws?token={alice_token}") as again:
        assert await again.receive_json() == {"user": None, "error": "revoked", "subprotocol": None}
    await bob.close()
    assert middleware.sessions.revoked == 2


def test_a_token_issued_after_the_revocation_is_accepted() -> None:
    sessions = AuthSessions()
    assert sessions.revoke_local("alice", revoked_at=time.time() - 5) == 0
    assert sessions.is_revoked("alice", {"iat": time.time() - 10})
    assert sessions.is_revoked("alice", {})
    assert not sessions.is_revoked("alice", {"iat": time.time()})
    assert not sessions.is_revoked("bob", {})


class RecordingTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, float]] = []
        self.subscribers: list[Any] = []

    async def publish_revocation(self, user_id: str, reason: str, revoked_at: float) -> None:
        self.sent.append((user_id, reason, revoked_at))

    def subscribe_revocations(self, apply: Any) -> None:
        self.subscribers.append(apply)


@pytest.mark.asyncio
async def test_revoke_publishes_through_the_transport_and_revoke_local_applies_it() -> None:
    transport = RecordingTransport()
    node_a = AuthSessions(transport=transport)
    node_b = AuthSessions()
    assert transport.subscribers == [node_a.revoke_local]  # what the transport calls on arrival
    assert await node_a.revoke("alice", "bye") == 0
    [(user, reason, revoked_at)] = transport.sent
    assert (user, reason) == ("alice", "bye")
    assert node_b.revoke_local(user, reason, revoked_at) == 0
    assert node_b.is_revoked("alice", {"iat": revoked_at - 1})


@pytest.mark.asyncio
async def test_connections_per_user_are_capped() -> None:
    app, _ = app_with(WebSocketAuthMiddleware(AUTH, max_connections_per_user=2))
    client = TestClient(app)
    token = AUTH.create_token("alice")
    first = await client.websocket_connect(f"/ws?token={token}")
    second = await client.websocket_connect(f"/ws?token={token}")
    for session in (first, second):
        assert (await session.receive_json())["user"] == "alice"
    async with client.websocket_connect(f"/ws?token={token}") as third:
        assert await third.receive_json() == {"user": None, "error": "too_many_connections", "subprotocol": None}
    await first.close()
    async with client.websocket_connect(f"/ws?token={token}") as fourth:
        assert (await fourth.receive_json())["user"] == "alice"
    await second.close()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="expiry_grace"):
        AuthSessions(expiry_grace=-1)
    with pytest.raises(ValueError, match="max_connections_per_user"):
        AuthSessions(max_connections_per_user=0)
