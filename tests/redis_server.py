"""A private ``redis-server`` process for tests that break Redis on purpose.

Tests that kill connections or stop the server must not disturb the shared Redis other tests
use, so they start their own on a free port::

    with RedisServer(tmp_path, password="s3cret") as server:
        backend = RedisBackend(server.url)
        ...
        server.stop()   # Redis goes away
        server.start()  # and comes back on the same port

Starting waits (bounded) until the server answers ``PING``; stopping waits until the process
has exited. The process is always terminated when the ``with`` block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType

import redis

__all__ = ["RedisServer", "free_port", "wait_until"]

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


async def wait_until(condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` (a plain or ``async`` predicate) until it holds; fail the test after ``timeout``.

    Args:
        condition: What to wait for.
        what: A description for the failure message ("the listener resubscribed").
        timeout: The most seconds to wait.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        await asyncio.sleep(0.01)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process on a fixed free port, restartable on that port.

    Args:
        directory: A scratch directory for the server's working files.
        password: When set, the server requires it (``--requirepass``) and :attr:`url` carries it.
    """

    def __init__(self, directory: Path, *, password: str | None = None) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not on PATH; the Redis fault tests need it")
        self.executable = executable
        self.directory = directory
        self.password = password
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL, with the password when there is one."""
        credentials = f":{self.password}@" if self.password else ""
        return f"redis://{credentials}127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it answers ``PING``.

        Raises:
            RuntimeError: It is already running, or did not answer within ``START_TIMEOUT`` seconds.
        """
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        command = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
        ]
        if self.password:
            command += ["--requirepass", self.password]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited with code {self._process.returncode}")
            try:
                if self._ping():
                    return
            except redis.RedisError as exc:
                last_error = exc
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"redis-server on port {self.port} did not answer PING within {START_TIMEOUT}s: {last_error}"
        )

    def _ping(self) -> bool:
        client = redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_connect_timeout=0.5, socket_timeout=0.5
        )
        try:
            return bool(client.ping())
        finally:
            client.close()

    def stop(self) -> None:
        """Terminate the server and wait until the process has exited. Idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(Exception):
            self.stop()
