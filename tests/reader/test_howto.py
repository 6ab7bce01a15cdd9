"""docs/howto/*.rst, followed by a reader: files written as each page says, its commands run.

The deployment page is followed with a real nginx (Debian's ``nginx``/``nginx-light`` package)
terminating TLS in front of the documented uvicorn command; what a test cannot run as the page
shows it (``sudo``, ``systemctl``, port 443, a certificate from a CA) is swapped for the local
equivalent, as listed in :func:`nginx_config`.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import signal
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as sync_connect

from tests.e2e.conftest import http_post_json
from tests.e2e.servers import Server, free_port, wait_for_port
from tests.reader.conftest import GUIDE, ROOT, Reader
from tests.reader.page import Page
from tests.reader.shown import assert_printed, assert_server_printed, output_of
from tests.reader.test_guide import RECV_TIMEOUT, assert_stops_cleanly, pytest_outcome, recv_json
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

HOWTO = ROOT / "docs" / "howto"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def started(results: list[Server | subprocess.CompletedProcess[str]]) -> Server:
    (server,) = results
    assert isinstance(server, Server)
    return server


def assert_shown(page: Page, commands: list[str], printed: str) -> None:
    """``printed`` has what the page shows after the last of ``commands`` (numbers aside)."""
    (block,) = [block for block in page.blocks if block.commands == commands]
    assert_printed(output_of(block, commands[-1]), printed, any_number=True)


def test_testing_howto(reader: Reader) -> None:
    page = Page.read(HOWTO / "testing.rst")
    install, run = (blocks for blocks in page.commands("Test your app"))
    (guide_install,) = Page.read(GUIDE).commands("Before you start")
    assert set(shlex.split(install[0])) <= set(shlex.split(guide_install[0])), "installs what the venv holds"
    page.write(reader.workdir)
    assert run == ["cd board", "pytest -q test_app.py"]
    (result,) = reader.shell.run_block(run)
    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode == 0, result.stdout
    assert pytest_outcome(result.stdout) == {"passed": 3}, result.stdout
    assert "Deprecation" not in result.stdout + result.stderr, "the page's pytest.ini sets what pytest-asyncio asks for"
    (shown,) = [block for block in page.blocks if block.commands == run]
    assert_printed(output_of(shown, run[1]), result.stdout, any_number=True)


@pytest.mark.asyncio
async def test_authenticate_howto(reader: Reader) -> None:
    page = Page.read(HOWTO / "authenticate.rst")
    written = page.write(reader.workdir)
    (start,) = page.commands("The page")
    assert start == ["cd login", "uvicorn app:app"]
    server = started(reader.shell.run_block(start))
    assert "QAKEAPI_SECRET_KEY is not set" in server.output()
    assert_shown(page, start, server.output())
    from tests.reader.browser import run_login_page  # Playwright: only where the browser tests run

    shots = await run_login_page(written["login/index.html"], server, reader.workdir)
    assert set(shots) == {"ann", "bob"}

    status, body = await http_post_json(f"{server.http_url}/token", {"name": "bob", "password": "battery staple"})
    assert status == 200
    headers = {"Authorization": f"Bearer {body['token']}"}
    async with connect(f"{server.ws_url}/ws", additional_headers=headers) as ws:
        assert await recv_json(ws) == {"type": "welcome", "user": "bob"}
        await ws.send(json.dumps("hi"))
        assert await recv_json(ws) == {"type": "said", "user": "bob", "message": "hi"}
    async with connect(f"{server.ws_url}/ws?token=forged") as ws:
        assert await recv_json(ws) == {"type": "error", "message": "not authenticated: malformed"}
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
    assert_stops_cleanly(server)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    with RedisServer(directory, password="reader-howto") as server:
        yield server


@pytest.mark.asyncio
async def test_cluster_howto(reader: Reader, private_redis: RedisServer) -> None:
    page = Page.read(HOWTO / "cluster.rst")
    page.write(reader.workdir)
    first, second, health = page.commands("Run several nodes with Redis")
    secret = "QAKEAPI_CLUSTER_SECRET=howto-cluster-secret-0123456789"
    assert first == ["cd nodes", f"{secret} QAKEAPI_NODE_ID=node-1 uvicorn app:app --port 8001"]
    assert second == ["cd nodes", f"{secret} QAKEAPI_NODE_ID=node-2 uvicorn app:app --port 8002"]
    reader.shell.env = {"QAKEAPI_REDIS_URL": private_redis.url}  # the reader's Redis, as the page allows
    node_1 = started(reader.shell.run_block(first))
    node_2 = started(reader.shell.run_block(second))
    shown = [block for block in page.blocks if block.language == "console" and block.section == "Run two nodes"]
    for block, node in zip(shown[:2], (node_1, node_2), strict=True):
        assert_server_printed(output_of(block, block.commands[-1]), node)

    async with connect(f"{node_1.ws_url}/ws") as on_1, connect(f"{node_2.ws_url}/ws") as on_2:
        assert await recv_json(on_1) == {"type": "hello", "node": "node-1"}
        assert await recv_json(on_2) == {"type": "hello", "node": "node-2"}
        await on_1.send(json.dumps("from one"))
        for ws in (on_1, on_2):
            assert await recv_json(ws) == {"type": "message", "node": "node-1", "message": "from one"}
        await on_2.send(json.dumps("from two"))
        for ws in (on_1, on_2):
            assert await recv_json(ws) == {"type": "message", "node": "node-2", "message": "from two"}
        (answer,) = reader.shell.run_block(health)
        assert isinstance(answer, subprocess.CompletedProcess)
        assert json.loads(answer.stdout) == {"node": "node-1", "connections": 1}
        (health_block,) = [block for block in page.blocks if block.commands == health]
        assert_printed(output_of(health_block, health[0]), answer.stdout)
    assert private_redis.password is not None
    assert private_redis.password not in node_1.output() + node_2.output(), "the Redis password reached a log"
    assert_stops_cleanly(node_1)
    assert_stops_cleanly(node_2)


def self_signed_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for ``name`` and its key, as a CA would issue them."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}"),
            *("-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def nginx_config(site: str, directory: Path, *, port: int, upstream: int, cert: Path, key: Path) -> Path:
    """A main ``nginx.conf`` including the page's site file, with only these local swaps.

    - ``listen 443`` -> a free loopback port (the test does not run as the machine's web server);
    - the certificate paths -> a self-signed certificate for the same name;
    - the upstream ``127.0.0.1:8000`` -> the port the documented uvicorn command got.
    """
    swaps = {
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "/etc/ssl/certs/chat.example.com.pem": str(cert),
        "/etc/ssl/private/chat.example.com.key": str(key),
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{upstream};",
    }
    for documented, local in swaps.items():
        assert site.count(documented) == 1, f"the page's nginx config no longer has {documented!r}"
        site = site.replace(documented, local)
    (directory / "site.conf").write_text(site, encoding="utf-8")
    temp = directory / "temp"
    temp.mkdir(mode=0o777)
    temp.chmod(0o777)  # nginx's workers may run as another user
    main = directory / "nginx.conf"
    main.write_text(
        f"""daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{}}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {directory}/site.conf;
}}
""",
        encoding="utf-8",
    )
    return main


def first_message_over_tls(url: str, cert: Path, headers: dict[str, str]) -> Any:
    """Connect to ``url`` as ``chat.example.com``, trusting ``cert``; return the first message, decoded.

    The synchronous client, in a thread: Python 3.10's asyncio leaves TLS transports to the
    garbage collector (a ResourceWarning in some later test); plain ``ssl`` sockets close.
    """
    context = ssl.create_default_context(cafile=str(cert))
    with sync_connect(url, ssl=context, server_hostname="chat.example.com", additional_headers=headers) as ws:
        return json.loads(ws.recv(timeout=RECV_TIMEOUT))


NGINX_CHECK_SHOWN = output_of(
    next(block for block in Page.read(HOWTO / "deploy.rst").blocks if "sudo nginx -t" in block.commands),
    "sudo nginx -t",
)
"""What the deployment how-to shows ``nginx -t`` printing (for the machine's own nginx.conf)."""


@contextmanager
def nginx_in_front_of(site: str, upstream: Server, directory: Path) -> Iterator[tuple[int, Path]]:
    """Run nginx with the page's site config (see :func:`nginx_config`); yield its port and certificate."""
    assert Path(NGINX).exists(), "nginx is not installed (apt-get install nginx-light)"
    cert, key = self_signed_certificate(directory, "chat.example.com")
    port = free_port()
    config = nginx_config(site, directory, port=port, upstream=upstream.port, cert=cert, key=key)
    check = subprocess.run([NGINX, "-t", "-c", str(config)], capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stderr  # the page's "nginx -t"
    shown = [line.replace("/etc/nginx/nginx.conf", str(config)) for line in NGINX_CHECK_SHOWN]
    assert_printed(shown, check.stderr)
    with (directory / "nginx.out").open("wb") as out:
        nginx = subprocess.Popen([NGINX, "-c", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, None)
        yield port, cert
    finally:
        nginx.send_signal(signal.SIGQUIT)  # graceful shutdown
        try:
            nginx.wait(10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()


LIMITS = (
    "--http qakeapi.core.websockets.uvicorn_protocol:DeadlineH11Protocol"
    " --ws qakeapi.core.websockets.uvicorn_protocol:AbortableWebSocketProtocol"
    " --ws-max-size 1048576 --timeout-keep-alive 5"
)
"""The limits the page's command turns on (tests/e2e/test_handshake_limits.py checks what they do)."""


@pytest.mark.asyncio
async def test_deploy_behind_nginx_with_tls(reader: Reader, tmp_path: Path) -> None:
    page = Page.read(HOWTO / "deploy.rst")
    written = page.write(reader.workdir)
    (start,) = page.commands("uvicorn")
    assert start == [
        "cd deploy",
        f"uvicorn main:app --host 127.0.0.1 --port 8000 --proxy-headers --forwarded-allow-ips 127.0.0.1 {LIMITS}",
    ]
    app = started(reader.shell.run_block(start))
    assert_shown(page, start, app.output())
    directory = tmp_path / "nginx"
    directory.mkdir()
    site = written["deploy/chat.conf"].read_text(encoding="utf-8")
    with nginx_in_front_of(site, app, directory) as (port, cert):
        url = f"wss://127.0.0.1:{port}/ws"
        # A client behind another proxy: nginx appends our address, uvicorn trusts nginx only.
        seen = await asyncio.to_thread(first_message_over_tls, url, cert, {"X-Forwarded-For": "203.0.113.7"})
        assert seen == {"client": "203.0.113.7", "scheme": "wss"}
        assert await asyncio.to_thread(first_message_over_tls, url, cert, {}) == {
            "client": "127.0.0.1",
            "scheme": "wss",
        }
    async with connect(f"{app.ws_url}/ws") as ws:  # straight to uvicorn: no TLS, no proxy
        assert await recv_json(ws) == {"client": "127.0.0.1", "scheme": "ws"}
    assert_stops_cleanly(app)


def test_systemd_unit_verifies(reader: Reader, reader_venv: Path) -> None:
    """``systemd-analyze verify`` accepts the page's unit, with its paths pointing at this machine's."""
    page = Page.read(HOWTO / "deploy.rst")
    written = page.write(reader.workdir)
    unit = written["deploy/chat.service"].read_text(encoding="utf-8")
    for documented, local in {"/srv/chat/.venv": str(reader_venv.parent), "/srv/chat": str(reader.workdir)}.items():
        assert documented in unit
        unit = unit.replace(documented, local)
    path = reader.workdir / "chat.service"
    path.write_text(unit, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "chat.service" not in result.stdout + result.stderr, result.stdout + result.stderr
