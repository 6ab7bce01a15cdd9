"""What a real client sees for each way a handshake goes wrong, on every server of the matrix.

The table on ``docs/troubleshooting.rst`` ("What the client sees") is this test's expectation:
through the ASGI ``websocket.http.response`` extension (uvicorn's three implementations,
hypercorn, granian) each refusal is its own HTTP status with a JSON ``detail``; daphne lacks the
extension, so every refusal reaches its clients as a bare 403, and a failure before the accept as
its own 500. A failure after the accept is the close 1011 everywhere (daphne drops its reason).
The in-process :class:`~qakeapi.testing.TestClient` reports each refusal with the status, body
and headers uvicorn sends (``test_the_test_client_reports_what_uvicorn_sends``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from qakeapi.testing import TestClient, WebSocketDenied
from tests.e2e.refusal_app import app, authenticator
from tests.e2e.servers import SERVERS, asgi_server

WITHOUT_DENIAL = frozenset({"daphne"})
"""Servers without the ``websocket.http.response`` extension."""
NO_CLOSE_REASON = frozenset({"daphne"})
"""Servers that send a close frame's code without its reason."""


@dataclass(frozen=True)
class Refused:
    """The HTTP response that refused a handshake (its headers are not compared: servers add theirs)."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict, compare=False)


async def refusal(url: str, *, host: str | None = None, origin: str | None = None) -> Refused:
    """Open ``url`` (``host``: what the ``Host`` header says instead) and return the refusal."""
    options: dict[str, object] = {"open_timeout": 10}
    if origin is not None:
        options["origin"] = origin
    if host is not None:  # connect to the server, but name another host in the request
        address, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
        options.update(host=address, port=int(port))
        url = url.replace(f"{address}:{port}", host)
    try:
        async with connect(url, **options):  # type: ignore[arg-type]
            raise AssertionError(f"{url} was accepted")
    except InvalidStatus as refused:
        response = refused.response
        headers = {name.lower(): value for name, value in response.headers.raw_items()}
        return Refused(response.status_code, bytes(response.body), headers)


def expected(server: str, status: int, detail: str) -> Refused:
    if server in WITHOUT_DENIAL:
        return Refused(500 if status == 500 else 403, b"")
    return Refused(status, b'{"detail":"' + detail.encode() + b'"}')


@pytest.mark.e2e
@pytest.mark.parametrize("server_name", SERVERS)
@pytest.mark.asyncio
async def test_each_refusal_is_told_apart_by_a_real_client(server_name: str, tmp_path: Path) -> None:
    with asgi_server(server_name, "tests.e2e.refusal_app:app", tmp_path) as server:
        ws = server.ws_url
        assert await refusal(f"{ws}/wss") == expected(server_name, 404, "no WebSocket route for /wss")
        cross_site = await refusal(f"{ws}/ws", origin="http://evil.example")
        assert cross_site == expected(server_name, 403, "origin not allowed")
        rebinding = await refusal(f"{ws}/ws", host="evil.example", origin="http://evil.example")
        assert rebinding == expected(server_name, 403, "host not allowed")
        assert await refusal(f"{ws}/auth") == expected(server_name, 401, "missing")
        assert await refusal(f"{ws}/auth?token=forged") == expected(server_name, 401, "malformed")
        assert await refusal(f"{ws}/fails") == expected(server_name, 500, "Internal Server Error")
        assert await refusal(f"{ws}/forgot-accept") == expected(server_name, 500, "Internal Server Error")

        token = authenticator.create_token("ann")
        async with connect(f"{ws}/auth?token={token}", open_timeout=10) as accepted:
            assert await asyncio.wait_for(accepted.recv(), 10) == '{"type":"hello","user":"ann"}'
        async with connect(f"{ws}/crash", open_timeout=10) as crashing:
            await crashing.send("go")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(crashing.recv(), 10)
            assert closed.value.rcvd is not None
            reason = "" if server_name in NO_CLOSE_REASON else "internal error"
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1011, reason)

        output = server.output()
        assert "no WebSocket route for '/wss'; answering 404" in output
        assert "origin 'http://evil.example' refused (host_not_allowed); answering 403" in output
        # The missing accept is logged (by the server, with the traceback) in words that say what to write.
        assert "write 'await websocket.accept()' before the first send" in output


REFUSALS = [  # path, the Host header to name instead of the server's, the Origin header
    ("/wss", None, None),
    ("/ws", None, "http://evil.example"),
    ("/ws", "evil.example", "http://evil.example"),
    ("/auth", None, None),
    ("/auth?token=forged", None, None),
    ("/fails", None, None),
    ("/forgot-accept", None, None),
]


@pytest.mark.e2e
@pytest.mark.parametrize("server_name", ["uvicorn-websockets", "uvicorn-wsproto", "uvicorn-sansio"])
@pytest.mark.asyncio
async def test_the_test_client_reports_what_uvicorn_sends(server_name: str, tmp_path: Path) -> None:
    with asgi_server(server_name, "tests.e2e.refusal_app:app", tmp_path) as server:
        for path, host, origin in REFUSALS:
            real = await refusal(f"{server.ws_url}{path}", host=host, origin=origin)
            base_url = f"http://{host or '127.0.0.1'}"
            async with TestClient(app, base_url=base_url, raise_server_exceptions=False) as client:
                with pytest.raises(WebSocketDenied) as denied:
                    await client.websocket_connect(path, headers={"origin": origin} if origin else None)
            in_process = Refused(denied.value.status_code, denied.value.body, dict(denied.value.headers))
            assert in_process == real, path
            assert in_process.headers.items() <= real.headers.items(), path  # the app's headers, as sent
            assert real.status in (401, 403, 404, 500)
