"""Start ``examples_app`` modules under a real uvicorn process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 15.0) -> None:
    """Wait until something accepts connections on ``port``.

    Raises:
        RuntimeError: The process exited, or nothing listened in time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


@dataclass
class Server:
    """A running uvicorn process.

    Attributes:
        app: The ``module:attribute`` it serves.
        port: The loopback port it listens on.
        log: The file its output goes to.
    """

    app: str
    port: int
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:<port>``."""
        return f"ws://127.0.0.1:{self.port}"

    def output(self) -> str:
        """What the server printed so far."""
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, limit: float = 10.0) -> str:
        """Wait until the server printed ``text``; return the output.

        Raises:
            AssertionError: ``text`` did not appear within ``limit`` seconds.
        """
        deadline = time.monotonic() + limit
        while text not in (output := self.output()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not print {text!r} within {limit}s:\n{output}")
            time.sleep(0.05)
        return output

    def stop(self, timeout: float = 10.0) -> int:
        """Stop the server gracefully (SIGINT, as Ctrl+C), killing it if it does not exit in time.

        Returns:
            The exit code.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextmanager
def uvicorn_server(
    app: str,
    log_dir: Path,
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[Server]:
    """Serve ``app`` (``module:attribute``) with uvicorn for the duration of the ``with`` block.

    Args:
        app: What to serve, e.g. ``examples_app.chat_app:app``.
        log_dir: Where the server's output file goes.
        port: The port; a free one when ``None``.
        env: Extra environment variables.
        args: Extra uvicorn arguments.
    """
    port = port or free_port()
    log = log_dir / f"uvicorn-{app.replace(':', '-')}-{port}.log"
    environment = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT)
    server = Server(app, port, log, process)
    try:
        wait_for_port(port, process)
        yield server
    finally:
        server.stop()


SERVERS = (
    "uvicorn-sansio",
    "uvicorn-sansio-uvloop",
    "uvicorn-websockets",
    "uvicorn-websockets-uvloop",
    "uvicorn-wsproto",
    "uvicorn-wsproto-uvloop",
    "hypercorn",
    "daphne",
    "granian",
)
"""The ASGI servers (and uvicorn WebSocket implementations and loops) the delivery core is tested on."""

_UVICORN_WS = {"sansio": "websockets-sansio", "websockets": "websockets", "wsproto": "wsproto"}


def server_command(name: str, app: str, port: int) -> list[str]:
    """The command line that serves ``app`` on ``127.0.0.1:port`` with the server ``name`` (see :data:`SERVERS`)."""
    if name.startswith("uvicorn-"):
        _, ws, *loop = name.split("-")
        return [
            *(sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)),
            *("--ws", _UVICORN_WS[ws], "--loop", "uvloop" if loop else "asyncio"),
        ]
    if name == "hypercorn":
        return [sys.executable, "-m", "hypercorn", app, "--bind", f"127.0.0.1:{port}"]
    if name == "daphne":
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app]
    if name == "granian":
        return [
            *(sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1"),
            *("--port", str(port), "--workers", "1", app),
        ]
    raise ValueError(f"unknown server {name!r}; expected one of {SERVERS}")


@contextmanager
def asgi_server(name: str, app: str, log_dir: Path, *, env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """Serve ``app`` with the ASGI server ``name`` (see :data:`SERVERS`) for the ``with`` block.

    Args:
        name: The server, e.g. ``"hypercorn"`` or ``"uvicorn-wsproto-uvloop"``.
        app: What to serve, ``module:attribute``.
        log_dir: Where the server's output file goes.
        env: Extra environment variables.
    """
    port = free_port()
    log = log_dir / f"{name}-{app.replace(':', '-')}-{port}.log"
    environment = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            server_command(name, app, port), cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(app, port, log, process)
    try:
        wait_for_port(port, process)
        yield server
    finally:
        server.stop()
