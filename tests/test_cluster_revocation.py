"""Revocation across a cluster, in process: ``WebSocketAuthMiddleware(..., transport=manager)`` on
nodes sharing a memory hub; a revocation on one node closes the user's sockets on every node."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from qakeapi import Application, WebSocket, WebSocketDisconnect, WebSocketHandler
from qakeapi.core.cluster.envelope import Envelope, Kind, encode_envelope
from qakeapi.core.clustering import ClusteredManager
from qakeapi.exceptions import ClusterUnavailableError
from qakeapi.security import AuthConfig, JWTAuthenticator, WebSocketAuthMiddleware
from qakeapi.security.sessions import AuthCloseCode
from qakeapi.testing import TestClient, WebSocketDenied, WebSocketTestSession
from tests.redis_server import wait_until
from tests.test_clustering import FAST, CuttableBackend

AUTH = JWTAuthenticator(AuthConfig(secret_key="r" * 32))


@dataclass
class AuthNode:
    manager: ClusteredManager
    auth: WebSocketAuthMiddleware
    client: TestClient
    backend: CuttableBackend

    async def connect(self, stack: AsyncExitStack, token: str) -> WebSocketTestSession:
        session = await stack.enter_async_context(self.client.websocket_connect(f"/ws?token={token}", timeout=3))
        assert (await session.receive_json())["type"] == "welcome"
        return session


def make_auth_node(hub: str, node_id: str, **options: Any) -> AuthNode:
    backend = CuttableBackend(hub)
    handler = WebSocketHandler()
    manager = ClusteredManager(handler, backend, node_id, **{**FAST, **options})
    auth = WebSocketAuthMiddleware(AUTH, required=True, transport=manager)
    app = Application()

    @handler.on_connect
    async def welcome(websocket: WebSocket) -> None:
        await websocket.send_json({"type": "welcome", "user": websocket.user_id})

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await auth(websocket, manager.handle_connection)

    return AuthNode(manager, auth, TestClient(app), backend)


@pytest_asyncio.fixture
async def make_nodes() -> AsyncIterator[Callable[..., list[AuthNode]]]:
    made: list[AuthNode] = []
    hub = uuid.uuid4().hex

    def factory(count: int = 2, **options: Any) -> list[AuthNode]:
        nodes = [make_auth_node(hub, f"node-{len(made) + n}", **options) for n in range(1, count + 1)]
        made.extend(nodes)
        return nodes

    yield factory
    for node in made:
        await node.manager.close()


async def closed_with(session: WebSocketTestSession) -> tuple[int, str]:
    with pytest.raises(WebSocketDisconnect) as closed:
        await session.receive(timeout=3)
    return closed.value.code, closed.value.reason


async def connected(*nodes: AuthNode) -> None:
    for node in nodes:
        await node.manager.start()
    for node in nodes:
        await wait_until(lambda node=node: len(node.manager.nodes) == len(nodes) - 1, "the nodes hear each other")  # type: ignore[misc]


@pytest.mark.asyncio
async def test_a_revocation_on_one_node_closes_the_user_everywhere_and_refuses_old_tokens(
    make_nodes: Callable[..., list[AuthNode]],
) -> None:
    a, b, c = make_nodes(3)
    await connected(a, b, c)
    token = AUTH.create_token("alice")
    async with AsyncExitStack() as stack:
        on_a = await a.connect(stack, token)
        on_b = [await b.connect(stack, token) for _ in range(2)]
        bob_on_c = await c.connect(stack, AUTH.create_token("bob"))
        assert await a.auth.revoke("alice", "signed out") == 1
        for session in (on_a, *on_b):
            assert await closed_with(session) == (AuthCloseCode.REVOKED, "signed out")
        assert (a.auth.sessions.revoked, b.auth.sessions.revoked, c.auth.sessions.revoked) == (1, 2, 0)
        await bob_on_c.send_json({"still": "here"})  # another user is untouched
        assert b.auth.sessions.connections_of("alice") == frozenset()
    for node in (b, c):  # the old token is refused on the other nodes too, before the upgrade
        with pytest.raises(WebSocketDenied) as refused:
            await node.client.websocket_connect(f"/ws?token={token}", timeout=3)
        assert (refused.value.status_code, refused.value.json()) == (401, {"detail": "revoked"})
        assert node.auth.sessions.is_revoked("alice", AUTH.verify_token(token))


@pytest.mark.asyncio
async def test_in_band_auth_reaches_the_middleware_through_the_manager(
    make_nodes: Callable[..., list[AuthNode]],
) -> None:
    (a,) = make_nodes(1)
    async with AsyncExitStack() as stack:
        session = await a.connect(stack, AUTH.create_token("alice"))
        await session.send_json({"type": "auth", "token": AUTH.create_token("alice")})
        answer = await session.receive_json()
        assert (answer["type"], answer["user"]) == ("auth.ok", "alice")  # consumed by the middleware


@pytest.mark.asyncio
async def test_a_revocation_during_an_outage_arrives_when_the_backend_is_back_even_past_the_bound(
    make_nodes: Callable[..., list[AuthNode]],
) -> None:
    a, b = make_nodes(2, buffer_seconds=0.2, node_timeout=10)
    await connected(a, b)
    token = AUTH.create_token("alice")
    async with AsyncExitStack() as stack:
        on_b = await b.connect(stack, token)
        a.backend.sever()
        assert await a.auth.revoke("alice") == 0  # accepted: the outage is younger than the bound
        await asyncio.sleep(0.4)  # past the bound: client messages would be dropped now, revocations wait
        a.manager.outbox.expire(asyncio.get_running_loop().time() + 60)
        assert len(a.manager.outbox) >= 1
        await on_b.send_json({"still": "open"})  # not revoked yet: the revocation has not arrived
        a.backend.restore()
        assert await closed_with(on_b) == (AuthCloseCode.REVOKED, "revoked")


@pytest.mark.asyncio
async def test_a_revocation_refused_past_the_bound_raises_and_still_closes_this_node(
    make_nodes: Callable[..., list[AuthNode]],
) -> None:
    a, b = make_nodes(2, buffer_seconds=0.1, node_timeout=10)
    await connected(a, b)
    async with AsyncExitStack() as stack:
        on_a = await a.connect(stack, AUTH.create_token("alice"))
        a.backend.sever()
        await a.manager.broadcast("probe")  # buffered; the sender notices the outage
        assert await on_a.receive_text() == "probe"
        await wait_until(lambda: a.manager.outbox.down_since is not None, "node-1 noticed the outage")
        await asyncio.sleep(0.2)
        with pytest.raises(ClusterUnavailableError, match="revocation not sent"):
            await a.auth.revoke("alice")
        assert await closed_with(on_a) == (AuthCloseCode.REVOKED, "revoked")


@pytest.mark.asyncio
async def test_a_malformed_revocation_is_logged_and_changes_nothing(
    make_nodes: Callable[..., list[AuthNode]], caplog: pytest.LogCaptureFixture
) -> None:
    (a,) = make_nodes(1)
    await a.manager.start()
    async with AsyncExitStack() as stack:
        on_a = await a.connect(stack, AUTH.create_token("alice"))
        stranger = CuttableBackend(a.backend.name)
        await stranger.connect()
        bad = Envelope(Kind.REVOKE, "feedfeedfeed", "node-x", 0, {"user": ["alice"], "reason": "x", "at": 1.0})
        await stranger.publish(a.manager.channel, encode_envelope(bad))
        await wait_until(lambda: "malformed revocation" in caplog.text, "the bad revocation is logged")
        await on_a.send_json({"still": "open"})
        assert a.auth.sessions.connections_of("alice") != frozenset()
        await stranger.disconnect()
