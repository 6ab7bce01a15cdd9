"""The guide's "WebSocket with Authentication" app (``examples_app.auth_app``)."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import pytest_asyncio

from examples_app import settings
from examples_app.auth_app import app, authenticator
from qakeapi import AuthenticationError, WebSocketDisconnect
from qakeapi.security import AuthConfig, InsecureKeyWarning, JWTAuthenticator
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
    response = await client.post("/token", json={"name": user_id})
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
    response = await client.post("/token", json={"name": "alice"})
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
@pytest.mark.parametrize("body", [{}, {"name": None}, {"name": ""}, {"name": True}, {"name": [1]}])
async def test_token_endpoint_rejects_a_missing_or_invalid_user_id(client: TestClient, body: dict[str, Any]) -> None:
    response = await client.post("/token", json=body)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"detail": "user_id must be a non-empty string or an integer"}


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [[], ["alice"], "alice", 42, None])
async def test_token_endpoint_rejects_a_non_object_body(client: TestClient, body: Any) -> None:
    response = await client.post("/token", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"detail": "expected a JSON object with 'name'"}


@pytest.mark.asyncio
@pytest.mark.parametrize("content", ["{not json", '{"name": "alice"', "user_id=alice"])
async def test_token_endpoint_rejects_malformed_json(client: TestClient, content: str) -> None:
    response = await client.post("/token", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert detail.startswith("malformed JSON body: ")
    assert set(response.json()) == {"detail"}


@pytest.mark.asyncio
async def test_token_endpoint_rejects_an_empty_body(client: TestClient) -> None:
    response = await client.post("/token")
    assert response.status_code == 400
    assert response.json() == {"detail": "request body is empty; expected JSON"}


@pytest.mark.asyncio
async def test_token_endpoint_only_accepts_post(client: TestClient) -> None:
    response = await client.get("/token")
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


@pytest.mark.asyncio
async def test_binary_messages_get_one_clear_error_and_no_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    token = await issue(client, "alice")
    with caplog.at_level(logging.INFO, logger="qakeapi"):
        async with client.websocket_connect("/ws", headers={"Authorization": f"Bearer {token}"}) as ws:
            assert await ws.receive_json() == welcome("alice")
            for n in range(20):
                await ws.send_bytes(bytes([n, 0xFF]))
                assert await ws.receive_json() == {
                    "type": "error",
                    "message": "Binary messages are not supported; send JSON text",
                }
            await ws.send_json({"text": "hi"})  # the connection keeps working
            assert await ws.receive_json() == {"type": "message", "data": {"text": "hi"}, "user": "alice"}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


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
    first = settings.auth_config()
    settings._process_secret.cache_clear()  # as a new process would
    second = settings.auth_config()
    assert first.secret_key != second.secret_key
    assert len(first.secret_key.encode()) >= 32
    assert not first.short_key


def test_auth_config_with_empty_secret_key_is_random(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QAKEAPI_SECRET_KEY", "")
    assert len(settings.auth_config().secret_key.encode()) >= 32


def test_auth_config_warns_about_a_short_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QAKEAPI_SECRET_KEY", "your-secret-key")
    with pytest.warns(InsecureKeyWarning):
        config = settings.auth_config()
    assert config.short_key


def test_auth_options_default_to_the_guide_and_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QAKEAPI_AUTH_REQUIRED", "QAKEAPI_EXPIRY_GRACE", "QAKEAPI_AUTH_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("QAKEAPI_MAX_CONNECTIONS_PER_USER", raising=False)
    assert settings.auth_options() == {
        "required": False,
        "expiry_grace": 10.0,
        "auth_timeout": 60.0,
        "max_connections_per_user": 16,
    }
    monkeypatch.setenv("QAKEAPI_AUTH_REQUIRED", "1")
    monkeypatch.setenv("QAKEAPI_EXPIRY_GRACE", "0.5")
    monkeypatch.setenv("QAKEAPI_AUTH_TIMEOUT", "none")
    monkeypatch.setenv("QAKEAPI_MAX_CONNECTIONS_PER_USER", "3")
    assert settings.auth_options() == {
        "required": True,
        "expiry_grace": 0.5,
        "auth_timeout": None,
        "max_connections_per_user": 3,
    }
    monkeypatch.setenv("QAKEAPI_EXPIRY_GRACE", "-1")
    with pytest.raises(ValueError, match="must not be negative"):
        settings.auth_options()


def test_handler_options_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from qakeapi.core.limits import RateLimit

    for name in ("QAKEAPI_RATE_LIMIT", "QAKEAPI_MAX_CONNECTIONS_PER_IP", "QAKEAPI_MAX_MESSAGE_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert settings.handler_options() == {}  # the handler's own defaults
    monkeypatch.setenv("QAKEAPI_RATE_LIMIT", "5/20")
    monkeypatch.setenv("QAKEAPI_MAX_CONNECTIONS_PER_IP", "none")
    monkeypatch.setenv("QAKEAPI_MAX_MESSAGE_SIZE", "1024")
    assert settings.handler_options() == {
        "rate_limit": RateLimit(5.0, 20),
        "max_connections_per_ip": None,
        "max_message_size": 1024,
    }
    monkeypatch.setenv("QAKEAPI_RATE_LIMIT", "none")
    assert settings.handler_options()["rate_limit"] is None


@pytest.mark.asyncio
async def test_revoke_endpoint_needs_a_valid_bearer_token(client: TestClient) -> None:
    assert (await client.post("/api/revoke")).status_code == 401
    forged = JWTAuthenticator(AuthConfig(secret_key="f" * 32)).create_token("alice")
    response = await client.post("/api/revoke", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="qakeapi"'
    token = await issue(client, "zoe")
    async with client.websocket_connect(f"/ws?token={token}") as ws:
        assert await ws.receive_json() == welcome("zoe")
        response = await client.post("/api/revoke", headers={"Authorization": f"Bearer {token}"})
        assert (response.status_code, response.json()) == (200, {"user_id": "zoe", "closed": 1})
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json()
        assert (closed.value.code, closed.value.reason) == (4003, "signed out")
    response = await client.post("/api/revoke", headers={"Authorization": f"Bearer {token}"})
    assert (response.status_code, response.json()) == (401, {"detail": "token rejected: revoked"})


def test_without_a_secret_every_example_shares_one_key_announced_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from examples_app import settings

    monkeypatch.delenv("QAKEAPI_SECRET_KEY", raising=False)
    settings._process_secret.cache_clear()
    with caplog.at_level(logging.WARNING, logger="examples_app"):
        first, second = settings.auth_config(), settings.auth_config()
    assert first.secret_key == second.secret_key
    assert [r.getMessage() for r in caplog.records].count(
        "QAKEAPI_SECRET_KEY is not set: signing tokens with a random key of this process; "
        "tokens will not verify on other processes or after a restart"
    ) == 1
    settings._process_secret.cache_clear()
