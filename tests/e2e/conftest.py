"""Fixtures and helpers for the end-to-end tests: real uvicorn processes, real sockets, real clients.

``serve("basic_app")`` starts ``examples_app.basic_app:app`` under uvicorn for the rest of the
test and stops it (gracefully) at teardown. When a test fails, the output of every server it
started is attached to the failure report, one section per server.

The servers log through a logging configuration that names the logger of every line
(``WARNING qakeapi.broadcast.redis: ...``), so tests can tell which part of QakeAPI said what.

Every receive has a timeout: :func:`recv_json` fails after :data:`RECV_TIMEOUT` seconds and
:func:`assert_no_message` proves silence for a short, bounded window.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Generator, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol

import pytest
from websockets.asyncio.client import ClientConnection

from tests.e2e.servers import Server, free_port, uvicorn_server
from tests.redis_server import RedisServer

__all__ = [
    "QUIET_TIMEOUT",
    "RECV_TIMEOUT",
    "Serve",
    "assert_no_message",
    "generate_token",
    "http_post",
    "http_post_json",
    "recv_json",
]

RECV_TIMEOUT = 5.0
"""How long a test waits for a message it expects, in seconds."""
QUIET_TIMEOUT = 0.3
"""How long a test listens to prove that no (further) message arrives, in seconds."""

LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"named": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "named", "stream": "ext://sys.stderr"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
}

_SERVERS = pytest.StashKey[list[Server]]()


class Serve(Protocol):
    """Start ``examples_app.<module>:app`` under uvicorn until the test ends."""

    def __call__(
        self, module: str, *, env: Mapping[str, str] | None = None, args: tuple[str, ...] = (), port: int | None = None
    ) -> Server: ...


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the output of the test's servers to its report when it fails."""
    report = yield
    if report.failed:
        for server in item.stash.get(_SERVERS, []):
            try:
                text = server.output()
            except OSError as exc:  # the report must not fail because a log is unreadable
                text = f"(cannot read {server.log}: {exc})"
            title = f"uvicorn {server.app} on port {server.port} (exit code {server.process.poll()})"
            report.sections.append((title, text))
    return report


@pytest.fixture
def serve(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Serve]:
    """A factory starting ``examples_app`` modules under uvicorn; all of them stop at teardown."""
    log_config = tmp_path / "logging.json"
    log_config.write_text(json.dumps(LOGGING_CONFIG), encoding="utf-8")
    started = request.node.stash.setdefault(_SERVERS, [])

    with ExitStack() as stack:

        def start(
            module: str, *, env: Mapping[str, str] | None = None, args: tuple[str, ...] = (), port: int | None = None
        ) -> Server:
            port = port or free_port()
            server_args = ("--log-config", str(log_config), *args)
            try:
                server = stack.enter_context(
                    uvicorn_server(f"examples_app.{module}:app", tmp_path, port=port, env=env, args=server_args)
                )
            except RuntimeError as exc:  # it did not start: say what it printed
                output = "\n".join(log.read_text(errors="replace") for log in tmp_path.glob(f"uvicorn-*-{port}.log"))
                raise RuntimeError(f"{exc}; its output:\n{output}") from exc
            started.append(server)
            return server

        yield start


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private ``redis-server`` on a free port, password-protected, stopped at teardown."""
    directory = tmp_path / "redis"
    directory.mkdir()
    with RedisServer(directory, password=secrets.token_hex(16)) as server:
        yield server


# -- client helpers ---------------------------------------------------------------------------


async def recv_json(ws: ClientConnection, timeout: float = RECV_TIMEOUT) -> Any:
    """Receive one text message from ``ws`` and decode it as JSON, waiting at most ``timeout`` s."""
    data = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(data, str), f"expected a text frame, got {data!r}"
    return json.loads(data)


async def assert_no_message(*sessions: ClientConnection, timeout: float = QUIET_TIMEOUT) -> None:
    """Assert that nothing arrives on any of ``sessions`` within ``timeout`` seconds (listening to all at once)."""

    async def silent(ws: ClientConnection) -> None:
        try:
            data = await asyncio.wait_for(ws.recv(), timeout)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"expected no message, got {data!r}")

    await asyncio.gather(*(silent(ws) for ws in sessions))


def _post(url: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=RECV_TIMEOUT) as response:
            status: int = response.status
            return status, json.loads(response.read())
    except urllib.error.HTTPError as error:  # a 4xx/5xx answer: its status and body are the result
        with error:
            return error.code, json.loads(error.read())


async def http_post(url: str, body: bytes) -> tuple[int, Any]:
    """POST ``body`` (as ``application/json``) to ``url`` in a thread; return the status and the decoded answer."""
    return await asyncio.to_thread(_post, url, body)


async def http_post_json(url: str, payload: Any) -> tuple[int, Any]:
    """POST ``payload`` as JSON to ``url`` in a thread; return the status and the decoded answer."""
    return await http_post(url, json.dumps(payload).encode())


async def generate_token(server: Server, user_id: str) -> str:
    """Ask ``server`` for a token for ``user_id``: ``POST /token`` with ``{"name": ...}``, or for
    the guide's own app (``examples_app.websocket_app``) the guide's ``POST /api/generate-token``
    with ``{"user_id": ...}``."""
    if server.app.startswith("examples_app.websocket_app:"):
        status, body = await http_post_json(f"{server.http_url}/api/generate-token", {"user_id": user_id})
    else:
        status, body = await http_post_json(f"{server.http_url}/token", {"name": user_id})
    assert status == 200
    assert isinstance(body, dict)
    assert set(body) == {"token"}
    token = body["token"]
    assert isinstance(token, str)
    return token
