"""Tests for qakeapi.security.websocket_auth: where tokens come from and what the middleware does."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest

from qakeapi import Application, WebSocket, WebSocketHandler
from qakeapi.core.clustering import create_clustered_manager
from qakeapi.core.datastructures import Headers, QueryParams
from qakeapi.exceptions import AuthLinkError
from qakeapi.security import AuthConfig, JWTAuthenticator, WebSocketAuthMiddleware
from qakeapi.security.carriers import BEARER_SUBPROTOCOL, extract_token
from qakeapi.testing import TestClient, WebSocketDenied, WebSocketTestSession

KEY = "k" * 32
AUTH = JWTAuthenticator(AuthConfig(secret_key=KEY))
FORGER = JWTAuthenticator(AuthConfig(secret_key="f" * 32))


def headers(**values: str) -> Headers:
    return Headers((name.replace("_", "-").encode(), value.encode()) for name, value in values.items())


def expired_token(user: str = "alice") -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) - 60}, KEY, algorithm="HS256")


# -- extract_token ----------------------------------------------------------------------------


def test_no_token_anywhere() -> None:
    assert extract_token(QueryParams(b""), Headers(), []) == (None, None)


def test_token_from_query() -> None:
    assert extract_token(QueryParams(b"room=1&token=abc"), Headers(), []) == ("abc", "query")


def test_token_from_a_custom_query_parameter() -> None:
    query = QueryParams(b"token=ignored&access_token=abc")
    assert extract_token(query, Headers(), [], query_param="access_token") == ("abc", "query")
    assert extract_token(QueryParams(b"token=abc"), Headers(), [], query_param="access_token") == (None, None)


@pytest.mark.parametrize("value", ["Bearer abc", "bearer abc", "BEARER abc", "Bearer  abc ", "Bearer abc\t"], ids=repr)
def test_token_from_authorization_header(value: str) -> None:
    assert extract_token(QueryParams(b""), headers(Authorization=value), []) == ("abc", "header")


@pytest.mark.parametrize("value", ["Basic abc", "Bearer", "Bearer ", "Bearer   ", "abc", "Token abc"], ids=repr)
def test_authorization_header_without_a_bearer_token_is_ignored(value: str) -> None:
    assert extract_token(QueryParams(b""), headers(Authorization=value), []) == (None, None)


@pytest.mark.parametrize(
    "subprotocols", [["bearer", "abc"], ["chat", "bearer", "abc"], ["bearer", "abc", "chat"]], ids=repr
)
def test_token_from_subprotocol_pair(subprotocols: list[str]) -> None:
    assert extract_token(QueryParams(b""), Headers(), subprotocols) == ("abc", "subprotocol")


@pytest.mark.parametrize("subprotocols", [["bearer"], ["abc", "bearer"], ["bearer", ""], ["chat", "abc"]], ids=repr)
def test_incomplete_subprotocol_pair_is_no_token(subprotocols: list[str]) -> None:
    assert extract_token(QueryParams(b""), Headers(), subprotocols) == (None, None)


def test_query_takes_precedence_over_header_and_subprotocol() -> None:
    result = extract_token(QueryParams(b"token=q"), headers(Authorization="Bearer h"), ["bearer", "s"])
    assert result == ("q", "query")


def test_header_takes_precedence_over_subprotocol() -> None:
    result = extract_token(QueryParams(b""), headers(Authorization="Bearer h"), ["bearer", "s"])
    assert result == ("h", "header")


def test_empty_query_token_falls_through_to_the_header() -> None:
    result = extract_token(QueryParams(b"token="), headers(Authorization="Bearer h"), [])
    assert result == ("h", "header")


# -- the middleware through the test client -----------------------------------------------------


@dataclass
class AuthApp:
    """A small app: the middleware in front of a handler that reports what it saw on connect."""

    app: Application
    seen: list[WebSocket] = field(default_factory=list)


def make_app(*, required: bool = False) -> AuthApp:
    app = Application()
    handler = WebSocketHandler()
    middleware = WebSocketAuthMiddleware(AUTH, required=required)
    result = AuthApp(app)

    @handler.on_connect
    async def report(websocket: WebSocket) -> None:
        result.seen.append(websocket)
        await websocket.send_json(
            {
                "user_id": websocket.user_id,
                "authenticated": websocket.authenticated,
                "auth_error": websocket.auth_error,
                "claims": dict(websocket.claims),
                "subprotocol": websocket.accepted_subprotocol,
            }
        )

    @handler.on_message
    async def echo(websocket: WebSocket, message: Any) -> None:
        await websocket.send_json({"echo": message, "user_id": websocket.user_id})

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await middleware(websocket, handler.handle_connection)

    return result


def connect(client: TestClient, source: str, token: str) -> WebSocketTestSession:
    if source == "query":
        return client.websocket_connect(f"/ws?token={token}")
    if source == "header":
        return client.websocket_connect("/ws", headers={"Authorization": f"Bearer {token}"})
    assert source == "subprotocol"
    return client.websocket_connect("/ws", subprotocols=[BEARER_SUBPROTOCOL, token])


SOURCES = ["query", "header", "subprotocol"]


@pytest.mark.asyncio
@pytest.mark.parametrize("source", SOURCES)
async def test_valid_token_authenticates_the_connection(source: str) -> None:
    server = make_app()
    token = AUTH.create_token("alice", role="admin")
    client = TestClient(server.app)

    async with connect(client, source, token) as session:
        report = await session.receive_json()
        await session.send_json({"hello": 1})
        echo = await session.receive_json()

    assert report["user_id"] == "alice"
    assert report["authenticated"] is True
    assert report["auth_error"] is None
    assert report["claims"]["sub"] == "alice"
    assert report["claims"]["role"] == "admin"
    assert set(report["claims"]) == {"sub", "iat", "nbf", "exp", "role"}
    assert echo == {"echo": {"hello": 1}, "user_id": "alice"}
    assert len(server.seen) == 1
    assert server.seen[0].user_id == "alice"
    assert server.seen[0].claims["role"] == "admin"


@pytest.mark.asyncio
async def test_subprotocol_token_selects_bearer_and_never_echoes_the_token() -> None:
    server = make_app()
    token = AUTH.create_token("alice")
    client = TestClient(server.app)

    async with client.websocket_connect("/ws", subprotocols=[BEARER_SUBPROTOCOL, token]) as session:
        report = await session.receive_json()
        assert session.accepted_subprotocol == "bearer"
        assert all(token.encode() not in name + value for name, value in session.response_headers)

    assert report["subprotocol"] == "bearer"
    assert report["user_id"] == "alice"


@pytest.mark.asyncio
@pytest.mark.parametrize("source", ["query", "header"])
async def test_other_sources_select_no_subprotocol(source: str) -> None:
    server = make_app()
    client = TestClient(server.app)

    async with connect(client, source, AUTH.create_token("alice")) as session:
        report = await session.receive_json()
        assert session.accepted_subprotocol is None

    assert report["subprotocol"] is None


@pytest.mark.asyncio
async def test_rejected_subprotocol_token_is_not_selected() -> None:
    server = make_app()
    token = FORGER.create_token("mallory")
    client = TestClient(server.app)

    async with client.websocket_connect("/ws", subprotocols=[BEARER_SUBPROTOCOL, token]) as session:
        report = await session.receive_json()
        assert session.accepted_subprotocol != token

    assert report["auth_error"] == "invalid_signature"


BAD_TOKENS = [
    pytest.param(expired_token(), "expired", id="expired"),
    pytest.param(FORGER.create_token("mallory"), "invalid_signature", id="forged"),
    pytest.param("abc", "malformed", id="malformed"),
    pytest.param(
        jwt.encode({"sub": "admin", "exp": int(time.time()) + 3600}, "", algorithm="none"),
        "invalid_algorithm",
        id="alg-none",
    ),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("token", "reason"), BAD_TOKENS)
async def test_bad_token_leaves_the_connection_unauthenticated(source: str, token: str, reason: str) -> None:
    server = make_app()
    client = TestClient(server.app)

    async with connect(client, source, token) as session:
        report = await session.receive_json()
        await session.send_text("hi")
        echo = await session.receive_json()

    assert report == {
        "user_id": None,
        "authenticated": False,
        "auth_error": reason,
        "claims": {},
        # an offered ["bearer", token] is selected even when the token is bad: browsers drop
        # a connection that selects none of the subprotocols they offered
        "subprotocol": "bearer" if source == "subprotocol" else None,
    }
    assert echo == {"echo": "hi", "user_id": None}


@pytest.mark.asyncio
async def test_missing_token_sets_auth_error_missing() -> None:
    server = make_app()
    client = TestClient(server.app)

    async with client.websocket_connect("/ws") as session:
        report = await session.receive_json()

    assert report["auth_error"] == "missing"
    assert report["user_id"] is None
    assert report["authenticated"] is False


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("source", "token"),
    [
        ("query", expired_token()),
        ("header", FORGER.create_token("mallory")),
        ("subprotocol", "abc"),
    ],
)
async def test_required_refuses_bad_tokens_with_401_and_the_reason(source: str, token: str) -> None:
    server = make_app(required=True)
    client = TestClient(server.app)

    with pytest.raises(WebSocketDenied) as info:
        await connect(client, source, token)

    reason = {"query": "expired", "header": "invalid_signature", "subprotocol": "malformed"}[source]
    assert (info.value.status_code, info.value.json()) == (401, {"detail": reason})
    assert info.value.headers["www-authenticate"] == (
        f'Bearer realm="qakeapi", error="invalid_token", error_description="{reason}"'
    )
    assert server.seen == []


@pytest.mark.asyncio
async def test_required_refuses_a_missing_token() -> None:
    server = make_app(required=True)
    client = TestClient(server.app)

    with pytest.raises(WebSocketDenied) as info:
        await client.websocket_connect("/ws")

    assert (info.value.status_code, info.value.json()) == (401, {"detail": "missing"})
    assert info.value.headers["www-authenticate"] == 'Bearer realm="qakeapi"'
    assert str(info.value) == "the WebSocket handshake was refused with HTTP 401 Unauthorized: missing"
    assert server.seen == []


@pytest.mark.asyncio
@pytest.mark.parametrize("source", SOURCES)
async def test_required_accepts_a_valid_token(source: str) -> None:
    server = make_app(required=True)
    client = TestClient(server.app)

    async with connect(client, source, AUTH.create_token("bob")) as session:
        report = await session.receive_json()

    assert report["user_id"] == "bob"
    assert len(server.seen) == 1


# -- tokens never reach the logs ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tokens_never_appear_in_log_records(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("qakeapi"):
            caplog.set_level(logging.DEBUG, logger=name)
    server = make_app()
    client = TestClient(server.app)
    rejected = [expired_token("carol"), FORGER.create_token("mallory"), expired_token("erin")]
    reasons = ["expired", "invalid_signature", "expired"]
    accepted = [AUTH.create_token("alice"), AUTH.create_token("bob"), AUTH.create_token("dave")]

    for source, token, reason in zip(SOURCES, rejected, reasons, strict=True):
        async with connect(client, source, token) as session:
            assert (await session.receive_json())["auth_error"] == reason
    for source, token in zip(SOURCES, accepted, strict=True):
        async with connect(client, source, token) as session:
            assert (await session.receive_json())["auth_error"] is None
    strict = make_app(required=True)
    with pytest.raises(WebSocketDenied) as refused:
        await connect(TestClient(strict.app), "header", rejected[1])
    assert rejected[1] not in repr(refused.value.headers) + refused.value.text

    messages = [record.getMessage() for record in caplog.records]
    rejections = [m for m in messages if "rejected" in m]
    assert len(rejections) == 4, messages
    assert any("token from query rejected (expired)" in m for m in rejections), rejections
    assert any("token from header rejected (invalid_signature)" in m for m in rejections), rejections
    for token in rejected + accepted:
        for record in caplog.records:
            formatted = caplog.handler.format(record)
            assert token not in formatted, f"a token leaked into a log record of {record.name}: {formatted}"
            for part in token.split("."):
                assert part not in formatted, f"part of a token leaked into a log record of {record.name}"


# -- the link between the middleware and its handler ----------------------------------------------


def wrapped(kind: str, handler: WebSocketHandler) -> Callable[[WebSocket], Awaitable[None]]:
    """``handler.handle_connection`` behind the three wrappings an app writes."""
    if kind == "lambda":
        return lambda ws: handler.handle_connection(ws)
    if kind == "partial":
        return functools.partial(WebSocketHandler.handle_connection, handler)

    async def run(ws: WebSocket) -> None:
        await handler.handle_connection(ws)

    return run


WRAPPINGS = ["lambda", "partial", "async_def"]


def linked_app(kind: str, link: str) -> tuple[Application, list[Any]]:
    """An app whose endpoint calls the middleware with a wrapped handler; ``link`` says how they are bound."""
    app = Application()
    handler = WebSocketHandler()
    middleware = WebSocketAuthMiddleware(AUTH, handler=handler if link == "parameter" else None)
    if link == "bind":
        middleware.bind(handler)
    seen: list[Any] = []

    @handler.on_message
    async def record(websocket: WebSocket, message: Any) -> None:
        seen.append(message)
        await websocket.send_json({"echo": message, "user": websocket.user_id})

    runner = wrapped(kind, handler)

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await middleware(websocket, runner)

    return app, seen


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", WRAPPINGS)
async def test_a_wrapped_handler_without_a_binding_is_refused_with_the_line_to_write(kind: str) -> None:
    app, seen = linked_app(kind, "none")
    with pytest.raises(AuthLinkError, match=r"auth_middleware\.bind\(ws_handler\)"):  # noqa: PT012 - at connect
        async with TestClient(app).websocket_connect("/ws") as session:
            await session.send_json({"type": "auth", "token": AUTH.create_token("alice")})
            await session.receive_json()
    assert seen == []


@pytest.mark.asyncio
async def test_an_unbound_wrapper_is_refused_before_the_upgrade() -> None:
    app, _ = linked_app("lambda", "none")
    client = TestClient(app, raise_server_exceptions=False)
    # The AuthLinkError escapes before the accept: a server answers 500, and so does the test client.
    with pytest.raises(WebSocketDenied) as refused:
        async with client.websocket_connect("/ws") as session:
            await session.receive_json()
    assert (refused.value.status_code, refused.value.json()) == (500, {"detail": "Internal Server Error"})


@pytest.mark.asyncio
@pytest.mark.parametrize("link", ["bind", "parameter"])
@pytest.mark.parametrize("kind", WRAPPINGS)
async def test_a_bound_wrapped_handler_never_shows_in_band_tokens_to_hooks(kind: str, link: str) -> None:
    app, seen = linked_app(kind, link)
    token = AUTH.create_token("alice")
    async with TestClient(app).websocket_connect("/ws") as session:
        await session.send_json({"type": "auth", "token": token})  # late authentication
        assert (await session.receive_json())["type"] == "auth.ok"
        await session.send_json({"type": "auth", "token": AUTH.create_token("alice")})  # refresh
        assert (await session.receive_json())["type"] == "auth.ok"
        await session.send_json("hi")
        assert await session.receive_json() == {"echo": "hi", "user": "alice"}
    assert seen == ["hi"]


@pytest.mark.parametrize("target", [object(), "ws_handler", None.__class__])
def test_bind_refuses_what_is_not_a_handler(target: object) -> None:
    middleware = WebSocketAuthMiddleware(AUTH)
    with pytest.raises(AuthLinkError, match="cannot bind"):
        middleware.bind(target)
    with pytest.raises(AuthLinkError, match="cannot bind"):
        WebSocketAuthMiddleware(AUTH, handler=target)


@pytest.mark.asyncio
async def test_a_clustered_manager_binds_through_its_handler() -> None:
    handler = WebSocketHandler()
    cluster = create_clustered_manager(handler, redis_url="memory://auth-link", node_id="n1")
    middleware = WebSocketAuthMiddleware(AUTH, handler=cluster)
    seen: list[Any] = []

    @handler.on_message
    async def record(websocket: WebSocket, message: Any) -> None:
        seen.append(message)
        await websocket.send_json({"echo": message, "user": websocket.user_id})

    app = Application()
    app.on_startup(cluster.start)
    app.on_shutdown(cluster.close)

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await middleware(websocket, lambda ws: cluster.handle_connection(ws))

    async with TestClient(app) as client, client.websocket_connect("/ws") as session:
        await session.send_json({"type": "auth", "token": AUTH.create_token("alice")})
        assert (await session.receive_json())["type"] == "auth.ok"
        await session.send_json("hi")
        assert await session.receive_json() == {"echo": "hi", "user": "alice"}
    assert seen == ["hi"]
    assert handler.rejections.counts["auth_unbound"] == 0  # its own interceptor took it


@pytest.mark.asyncio
async def test_a_handler_bound_elsewhere_still_hands_in_band_tokens_to_the_middleware(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Application()
    bound, other = WebSocketHandler(), WebSocketHandler()
    middleware = WebSocketAuthMiddleware(AUTH, handler=bound)
    seen: list[Any] = []

    @other.on_message
    async def record(websocket: WebSocket, message: Any) -> None:
        seen.append(message)
        await websocket.send_json({"echo": message, "user": websocket.user_id})

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await middleware(websocket, lambda ws: other.handle_connection(ws))  # the wrong handler

    token = AUTH.create_token("alice")
    async with TestClient(app).websocket_connect("/ws") as session:
        await session.send_json({"type": "auth", "token": token})
        assert (await session.receive_json())["type"] == "auth.ok"
        await session.send_json({"type": "auth", "token": token})
        assert (await session.receive_json())["type"] == "auth.ok"
        await session.send_json("hi")
        assert await session.receive_json() == {"echo": "hi", "user": "alice"}
    assert seen == ["hi"]
    assert other.rejections.counts["auth_unbound"] == 2
    warnings = [r.getMessage() for r in caplog.records if "auth_middleware.bind(ws_handler)" in r.getMessage()]
    assert len(warnings) == 1
    assert token not in caplog.text


@pytest.mark.asyncio
async def test_without_a_middleware_auth_messages_are_the_apps() -> None:
    app = Application()
    handler = WebSocketHandler()
    seen: list[Any] = []

    @handler.on_message
    async def record(websocket: WebSocket, message: Any) -> None:
        seen.append(message)
        await websocket.send_json("ok")

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await handler.handle_connection(websocket)

    async with TestClient(app).websocket_connect("/ws") as session:
        await session.send_json({"type": "auth", "password": "app-defined"})
        assert await session.receive_json() == "ok"
    assert seen == [{"type": "auth", "password": "app-defined"}]


@pytest.mark.asyncio
async def test_a_numeric_string_exp_is_refused_at_the_handshake() -> None:
    # Accepted, such a token would make a connection that never expires (its exp is not a number).
    server = make_app()
    token = jwt.encode({"sub": "alice", "exp": str(int(time.time()) + 10**6)}, KEY, algorithm="HS256")
    async with connect(TestClient(server.app), "header", token) as session:
        report = await session.receive_json()
    assert (report["user_id"], report["auth_error"]) == (None, "invalid_claim")
