"""ASGI middleware on :class:`Application`: ``middleware=[Middleware(...)]`` and ``add_middleware``."""

from __future__ import annotations

import asyncio
import textwrap
import traceback
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from qakeapi import Application, Request, WebSocket, WebSocketHandler
from qakeapi.core.middleware import Middleware
from qakeapi.exceptions import WebSocketClosedError, WebSocketDisconnect
from qakeapi.testing import TestClient
from qakeapi.types import ASGIApp, Message, Receive, Scope, Send


class Recorder:
    """A pure ASGI middleware: records the scopes it sees, tags the scope, counts frames sent."""

    def __init__(self, app: ASGIApp, *, name: str, log: list[str]) -> None:
        self.app = app
        self.name = name
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.log.append(f"{self.name}:{scope['type']}")
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)  # passes it through unchanged
            return
        scope.setdefault("state", {}).setdefault("seen_by", []).append(self.name)

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-" + self.name.encode(), b"1")]}
            await send(message)

        await self.app(scope, receive, counting_send)


class SendDeadline:
    """Built on anyio: every ``send`` runs inside a task group, under a ``fail_after`` deadline."""

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_in_child(message: Message) -> None:
            await send(message)

        async def guarded_send(message: Message) -> None:
            with anyio.fail_after(self.seconds):
                async with anyio.create_task_group() as group:
                    group.start_soon(send_in_child, message)

        with anyio.CancelScope():
            await self.app(scope, receive, guarded_send)


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling."""
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def frames(exc: BaseException) -> list[str]:
    """The names of the functions in ``exc``'s traceback."""
    return [frame.name for frame in traceback.extract_tb(exc.__traceback__)]


def build_app(log: list[str], release: asyncio.Event | None = None) -> Application:
    app = Application(
        middleware=[Middleware(Recorder, name="outer", log=log), Middleware(Recorder, name="inner", log=log)]
    )
    started: list[bool] = []

    @app.on_startup
    async def startup() -> None:
        started.append(True)
        log.append("startup hook")

    @app.get("/seen")
    async def seen(request: Request) -> dict[str, Any]:
        return {"seen_by": request.scope["state"]["seen_by"]}

    @app.get("/wait")
    async def wait(request: Request) -> str:
        assert release is not None
        await release.wait()
        return "released"

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"seen_by": websocket.scope["state"]["seen_by"]})
        async for message in websocket:
            await websocket.send_text(f"echo {message!s}")

    return app


@pytest.mark.asyncio
async def test_middleware_wraps_http_in_order_outermost_first() -> None:
    log: list[str] = []
    response = await TestClient(build_app(log)).get("/seen")
    assert response.json() == {"seen_by": ["outer", "inner"]}
    assert response.headers["x-outer"] == "1"
    assert response.headers["x-inner"] == "1"
    assert log == ["outer:http", "inner:http"]


@pytest.mark.asyncio
async def test_middleware_wraps_websockets() -> None:
    log: list[str] = []
    async with TestClient(build_app(log)).websocket_connect("/ws") as session:
        assert await session.receive_json() == {"seen_by": ["outer", "inner"]}
        await session.send_text("hi")
        assert await session.receive_text() == "echo hi"
    assert log == ["outer:websocket", "inner:websocket"]


@pytest.mark.asyncio
async def test_lifespan_passes_through_the_middleware_to_the_hooks() -> None:
    log: list[str] = []
    async with TestClient(build_app(log)):
        assert log == ["outer:lifespan", "inner:lifespan", "startup hook"]


@pytest.mark.asyncio
async def test_add_middleware_wraps_everything_added_before() -> None:
    log: list[str] = []
    app = build_app(log)
    app.add_middleware(Recorder, name="added", log=log)
    response = await TestClient(app).get("/seen")
    assert response.json() == {"seen_by": ["added", "outer", "inner"]}
    assert app.user_middleware[0].cls is Recorder
    assert repr(app.user_middleware[0]) == f"Middleware(Recorder, name='added', log={log!r})"


@pytest.mark.asyncio
async def test_add_middleware_after_the_app_started_is_refused() -> None:
    app = build_app([])
    await TestClient(app).get("/seen")
    with pytest.raises(RuntimeError, match="cannot add middleware after the application has started serving"):
        app.add_middleware(Recorder, name="late", log=[])


@pytest.mark.asyncio
async def test_an_app_without_middleware_refuses_middleware_once_started() -> None:
    app = Application()
    await TestClient(app, raise_server_exceptions=False).get("/")
    with pytest.raises(RuntimeError, match="after the application has started"):
        app.add_middleware(Recorder, name="late", log=[])


def test_middleware_items_must_be_middleware() -> None:
    with pytest.raises(TypeError, match=r"middleware items must be Middleware\(cls, \*\*options\)"):
        Application(middleware=[Recorder])  # type: ignore[list-item]


def test_middleware_unpacks_like_starlettes() -> None:
    item = Middleware(SendDeadline, seconds=1.0)
    cls, args, kwargs = item
    assert (cls, args, kwargs) == (SendDeadline, (), {"seconds": 1.0})


# -- a middleware built on anyio ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_anyio_middleware_serves_http_and_websocket() -> None:
    app = build_app([])
    app.add_middleware(SendDeadline, seconds=2.0)
    client = TestClient(app)
    assert (await client.get("/seen")).status_code == 200
    async with client.websocket_connect("/ws") as session:
        await session.receive_json()
        for i in range(3):
            await session.send_text(str(i))
            assert await session.receive_text() == f"echo {i}"


@pytest.mark.asyncio
async def test_anyio_deadline_on_a_send_to_a_reader_that_stopped_fails_that_connection_only() -> None:
    app = build_app([])
    app.add_middleware(SendDeadline, seconds=0.1)
    client = TestClient(app, timeout=2.0)
    async with client.websocket_connect("/ws") as healthy:
        stuck = await client.websocket_connect("/ws")
        await stuck.receive_json()
        await healthy.receive_json()
        stuck.pause_reading()
        await stuck.send_text("never delivered")
        # The deadline fires in the stuck connection's send (the echo, then the 1011 close):
        # the application's TimeoutError surfaces in that session, not a receive timeout.
        # (WebSocket treats a failed send as a closed connection: TimeoutError is an OSError.)
        with pytest.raises((TimeoutError, WebSocketClosedError)) as info:
            await stuck.receive_text()
        assert not str(info.value).startswith("no message from the application")
        chain = list(causes(info.value))
        assert any(isinstance(exc, TimeoutError) and "guarded_send" in frames(exc) for exc in chain), chain
        await healthy.send_text("still fine")
        assert await healthy.receive_text() == "echo still fine"
        await stuck.close()


@pytest.mark.asyncio
async def test_anyio_middleware_around_handler_broadcast() -> None:
    app = Application(middleware=[Middleware(SendDeadline, seconds=2.0)])
    handler = WebSocketHandler()

    @handler.on_connect
    async def ready(websocket: WebSocket) -> None:
        await websocket.send_json("ready")  # sent once the handler counts it among its connections

    @handler.on_message
    async def relay(websocket: WebSocket, message: Any) -> None:
        await handler.broadcast(message)

    @app.websocket("/room")
    async def room(websocket: WebSocket) -> None:
        await handler.handle_connection(websocket)

    client = TestClient(app, timeout=2.0)
    async with client.websocket_connect("/room") as one, client.websocket_connect("/room") as two:
        assert [await one.receive_json(), await two.receive_json()] == ["ready", "ready"]
        for i in range(3):
            await one.send_json({"n": i})
            assert await one.receive_json() == {"n": i}
            assert await two.receive_json() == {"n": i}


@pytest.mark.asyncio
async def test_a_deadline_in_an_http_middleware_surfaces_in_the_test() -> None:
    class RequestDeadline:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            with anyio.fail_after(0.05):
                await self.app(scope, receive, send)

    release = asyncio.Event()
    app = build_app([], release)
    app.add_middleware(RequestDeadline)
    with pytest.raises(TimeoutError):
        await TestClient(app).get("/wait")
    release.set()
    assert (await TestClient(app).get("/wait")).text == "released"


@pytest.mark.asyncio
async def test_a_middleware_can_refuse_a_websocket_before_the_app() -> None:
    class Gate:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "websocket" and scope["path"] == "/ws" and b"let=me" not in scope["query_string"]:
                await receive()
                await send({"type": "websocket.close", "code": 4403, "reason": "gate"})
                return
            await self.app(scope, receive, send)

    app = build_app([])
    app.add_middleware(Gate)
    with pytest.raises(WebSocketDisconnect) as info:
        await TestClient(app).websocket_connect("/ws")
    assert (info.value.code, info.value.reason) == (4403, "gate")
    async with TestClient(app).websocket_connect("/ws?let=me") as session:
        assert await session.receive_json() == {"seen_by": ["outer", "inner"]}


@pytest.mark.asyncio
async def test_the_modules_example_runs() -> None:
    import qakeapi.core.middleware as module

    assert module.__doc__ is not None
    example = textwrap.dedent(module.__doc__.split("::\n", 1)[1].split("\n\nThe application applies")[0])
    namespace: dict[str, Any] = {
        "Application": Application,
        "Middleware": Middleware,
        "ASGIApp": ASGIApp,
        "Scope": Scope,
        "Receive": Receive,
        "Send": Send,
        "Message": Message,
    }
    exec(compile(example, "qakeapi.core.middleware example", "exec"), namespace)
    app: Application = namespace["app"]

    @app.get("/")
    async def home(request: Request) -> str:
        return "home"

    response = await TestClient(app).get("/")
    assert response.text == "home"
    assert response.headers.getlist("server") == ["demo", "outer"]  # inner first, then the outer one
