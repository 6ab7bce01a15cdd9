"""The guide's "WebSocket with Authentication" app (``examples_app.auth_app``)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import pytest_asyncio

from examples_app import settings
from examples_app.auth_app import app, authenticator
from qakeapi import AuthenticationError
from qakeapi.security.websocket_auth import AuthConfig, InsecureKeyWarning, JWTAuthenticator
from qakeapi.testing import TestClient, WebSocketTestSession

AUTH_REQUIRED = {"type": "auth_required", "message": "Please authenticate"}
NEEDS_AUTH = {"type": "error", "message": "Authentication required"}


@pytest_asyncio.fixture
async def client() -> AsyncIterator[TestClient]:
    async with TestClient(app) as test_client:
        yield test_client


async def assert_silent(ws: WebSocketTestSession) -> None:
    """Nothing more arrives on ``ws``."""
    with pytest.raises(TimeoutError):
        await ws.receive_json(timeout=0.1)


async def issue(client: TestClient, user_id: Any) -> str:
    response = await client.post("/api/generate-token", json={"user_id": user_id})
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, dict)
    assert set(body) == {"token"}
    token = body["token"]
    assert isinstance(token, str)
    return token


def welcome(user: str) -> dict[str, str]:
    return {"type": "welcome", "message": f"Welcome, {user}!"}


# -- the token endpoint -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_token_endpoint_issues_a_verifiable_token(client: TestClient) -> None:
    response = await client.post("/api/generate-token", json={"user_id": "alice"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    token = response.json()["token"]
    claims = authenticator.verify_token(token)
    assert claims["sub"] == "alice"
    assert claims["exp"] > claims["iat"]


@pytest.mark.asyncio
async def test_token_endpoint_accepts_an_integer_user_id(client: TestClient) -> None:
    token = await issue(client, 123)
    assert authenticator.verify_token(token)["sub"] == "123"


@pytest.mark.asyncio
async def test_token_is_not_valid_for_another_secret(client: TestClient) -> None:
    token = await issue(client, "alice")
    other = JWTAuthenticator(AuthConfig(secret_key=secrets.token_urlsafe(32)))
    with pytest.raises(AuthenticationError) as rejected:
        other.verify_token(token)
    assert rejected.value.reason == "invalid_signature"


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [{}, {"user_id": None}, {"user_id": ""}, {"user_id": True}, {"user_id": [1]}])
async def test_token_endpoint_rejects_a_missing_or_invalid_user_id(client: TestClient, body: dict[str, Any]) -> None:
    response = await client.post("/api/generate-token", json=body)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"detail": "user_id must be a non-empty string or an integer"}


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [[], ["alice"], "alice", 42, None])
async def test_token_endpoint_rejects_a_non_object_body(client: TestClient, body: Any) -> None:
    response = await client.post(
        "/api/generate-token", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "expected a JSON object with 'user_id'"}


@pytest.mark.asyncio
@pytest.mark.parametrize("content", ["{not json", '{"user_id": "alice"', "user_id=alice"])
async def test_token_endpoint_rejects_malformed_json(client: TestClient, content: str) -> None:
    response = await client.post("/api/generate-token", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert detail.startswith("malformed JSON body: ")
    assert set(response.json()) == {"detail"}


@pytest.mark.asyncio
async def test_token_endpoint_rejects_an_empty_body(client: TestClient) -> None:
    response = await client.post("/api/generate-token")
    assert response.status_code == 400
    assert response.json() == {"detail": "request body is empty; expected JSON"}


@pytest.mark.asyncio
async def test_token_endpoint_only_accepts_post(client: TestClient) -> None:
    response = await client.get("/api/generate-token")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


# -- authenticated connections ------------------------------------------------------------


@pytest.mark.asyncio
async def test_welcome_with_query_token(client: TestClient) -> None:
    token = await issue(client, "alice")
    async with client.websocket_connect(f"/ws?token={token}") as ws:
        assert ws.accepted_subprotocol is None
        assert await ws.receive_json() == welcome("alice")
        await assert_silent(ws)


@pytest.mark.asyncio
async def test_welcome_with_authorization_header(client: TestClient) -> None:
    token = await issue(client, "bob")
    async with client.websocket_connect("/ws", headers={"Authorization": f"Bearer {token}"}) as ws:
        assert ws.accepted_subprotocol is None
        assert await ws.receive_json() == welcome("bob")
        await assert_silent(ws)


@pytest.mark.asyncio
async def test_welcome_with_bearer_subprotocol(client: TestClient) -> None:
    token = await issue(client, "carol")
    async with client.websocket_connect("/ws", subprotocols=["bearer", token]) as ws:
        assert ws.accepted_subprotocol == "bearer"
        assert await ws.receive_json() == welcome("carol")
        await assert_silent(ws)


@pytest.mark.asyncio
async def test_query_token_takes_precedence_over_header(client: TestClient) -> None:
    alice = await issue(client, "alice")
    bob = await issue(client, "bob")
    async with client.websocket_connect(f"/ws?token={alice}", headers={"Authorization": f"Bearer {bob}"}) as ws:
        assert await ws.receive_json() == welcome("alice")


@pytest.mark.asyncio
async def test_integer_user_id_is_welcomed_as_string(client: TestClient) -> None:
    token = await issue(client, 7)
    async with client.websocket_connect(f"/ws?token={token}") as ws:
        assert await ws.receive_json() == welcome("7")
        await ws.send_json({"text": "hi"})
        assert await ws.receive_json() == {"type": "message", "data": {"text": "hi"}, "user": "7"}


@pytest.mark.asyncio
async def test_authenticated_messages_are_answered_with_the_user(client: TestClient) -> None:
    token = await issue(client, "alice")
    async with client.websocket_connect("/ws", headers={"Authorization": f"Bearer {token}"}) as ws:
        assert await ws.receive_json() == welcome("alice")
        await ws.send_json({"text": "hi"})
        assert await ws.receive_json() == {"type": "message", "data": {"text": "hi"}, "user": "alice"}
        await ws.send_text("plain text")
        assert await ws.receive_json() == {"type": "message", "data": "plain text", "user": "alice"}
        await ws.send_json([1, 2])
        assert await ws.receive_json() == {"type": "message", "data": [1, 2], "user": "alice"}
        await assert_silent(ws)


# -- unauthenticated connections ----------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "headers", "subprotocols"),
    [
        ("/ws", None, None),
        ("/ws?token=", None, None),
        ("/ws", {"Authorization": "Bearer "}, None),
        ("/ws", {"Authorization": "Basic dXNlcjpwYXNz"}, None),
        ("/ws", None, ["bearer"]),
        ("/ws", None, ["chat"]),
    ],
)
async def test_anonymous_connection_gets_auth_required_missing(
    client: TestClient, path: str, headers: dict[str, str] | None, subprotocols: list[str] | None
) -> None:
    async with client.websocket_connect(path, headers=headers, subprotocols=subprotocols) as ws:
        # the app speaks "chat" (and selects it when offered), anonymous or not
        assert ws.accepted_subprotocol == ("chat" if subprotocols == ["chat"] else None)
        assert await ws.receive_json() == {**AUTH_REQUIRED, "reason": "missing"}
        await assert_silent(ws)


def expired_token() -> str:
    past = datetime.now(timezone.utc) - timedelta(hours=2)
    return authenticator.create_token("alice", iat=past, nbf=past, exp=past + timedelta(minutes=1))


def forged_token() -> str:
    return JWTAuthenticator(AuthConfig(secret_key=secrets.token_urlsafe(32))).create_token("alice")


def future_token() -> str:
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    return authenticator.create_token("alice", nbf=later, exp=later + timedelta(hours=1))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda: "not-a-token", "malformed"),
        (lambda: "a.b.c", "malformed"),
        (forged_token, "invalid_signature"),
        (lambda: authenticator.create_token("alice")[:-4] + "AAAA", "invalid_signature"),
        (expired_token, "expired"),
        (future_token, "not_yet_valid"),
    ],
)
@pytest.mark.parametrize("how", ["query", "header", "subprotocol"])
async def test_bad_token_gets_auth_required_with_reason(
    client: TestClient, make_token: Callable[[], str], reason: str, how: str
) -> None:
    token = make_token()
    if how == "query":
        session = client.websocket_connect(f"/ws?token={token}")
    elif how == "header":
        session = client.websocket_connect("/ws", headers={"Authorization": f"Bearer {token}"})
    else:
        session = client.websocket_connect("/ws", subprotocols=["bearer", token])
    async with session as ws:
        # A client that offered ["bearer", token] gets "bearer" selected, valid token or not:
        # browsers drop a connection that selects none of the offered subprotocols.
        assert ws.accepted_subprotocol == ("bearer" if how == "subprotocol" else None)
        assert await ws.receive_json() == {**AUTH_REQUIRED, "reason": reason}
        await ws.send_json({"text": "hi"})
        assert await ws.receive_json() == NEEDS_AUTH
        await assert_silent(ws)


@pytest.mark.asyncio
async def test_unauthenticated_messages_get_an_error_and_the_connection_stays_open(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as ws:
        assert await ws.receive_json() == {**AUTH_REQUIRED, "reason": "missing"}
        for _ in range(3):
            await ws.send_json({"text": "hi"})
            assert await ws.receive_json() == NEEDS_AUTH
        await ws.send_text("plain")
        assert await ws.receive_json() == NEEDS_AUTH
        await assert_silent(ws)


@pytest.mark.asyncio
async def test_authentication_is_per_connection(client: TestClient) -> None:
    token = await issue(client, "alice")
    async with client.websocket_connect(f"/ws?token={token}") as alice, client.websocket_connect("/ws") as anon:
        assert await alice.receive_json() == welcome("alice")
        assert await anon.receive_json() == {**AUTH_REQUIRED, "reason": "missing"}
        await anon.send_json({"text": "hi"})
        assert await anon.receive_json() == NEEDS_AUTH
        await alice.send_json({"text": "hi"})
        assert await alice.receive_json() == {"type": "message", "data": {"text": "hi"}, "user": "alice"}
        await assert_silent(alice)
        await assert_silent(anon)


# -- settings -----------------------------------------------------------------------------


def test_auth_config_reads_the_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = secrets.token_urlsafe(32)
    monkeypatch.setenv("QAKEAPI_SECRET_KEY", secret)
    config = settings.auth_config()
    assert config.secret_key == secret
    assert config.algorithm == "HS256"
    assert config.token_expiry == timedelta(hours=1)


def test_auth_config_without_secret_key_is_random_and_long_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QAKEAPI_SECRET_KEY", raising=False)
    first, second = settings.auth_config(), settings.auth_config()
    assert first.secret_key != second.secret_key
    assert len(first.secret_key.encode()) >= 32
    assert not first.short_key


def test_auth_config_with_empty_secret_key_is_random(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QAKEAPI_SECRET_KEY", "")
    assert len(settings.auth_config().secret_key.encode()) >= 32


def test_auth_config_warns_about_a_short_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QAKEAPI_SECRET_KEY", "short")
    with pytest.warns(InsecureKeyWarning):
        config = settings.auth_config()
    assert config.short_key
