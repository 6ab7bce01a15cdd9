"""One uvicorn server process for a benchmark: pinned to a CPU, on a free port, measurable.

Used by :mod:`benchmarks.run` and :mod:`benchmarks.memory`; every app is started with the same
command line, so only the app (and the ``--ws`` implementation asked for) differs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from types import TracebackType

__all__ = ["APPS", "SERVERS", "Server", "raise_fd_limit", "server_args", "taskset"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_DIR = os.environ.get("QAKEAPI_BENCH_LOGS", "/tmp/qakeapi-bench-logs")

APPS = {
    "raw": "benchmarks.raw_asgi_app:app",
    "starlette": "benchmarks.starlette_app:app",
    "starlette-once": "benchmarks.starlette_once_app:app",
    "fastapi": "benchmarks.fastapi_app:app",
    "qakeapi": "benchmarks.qakeapi_app:app",
}
"""Benchmark name -> uvicorn import string."""


def raise_fd_limit() -> int:
    """Raise this process's (and its children's) open-file limit to the hard limit; return it."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def taskset(cpu: int | None) -> list[str]:
    """The command prefix that pins a child to ``cpu`` (nothing when ``cpu`` is None)."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


SERVERS = ("uvicorn", "hypercorn", "granian")
"""The ASGI servers a benchmark can run on."""


def server_args(server: str, app: str, port: int, ws: str | None = None) -> list[str]:
    """The ``python -m ...`` arguments that serve ``app`` quietly on ``127.0.0.1:port``."""
    if server == "uvicorn":
        args = [
            *("uvicorn", app, "--host", "127.0.0.1", "--port", str(port)),
            *("--log-level", "warning", "--no-access-log", "--backlog", "4096"),
        ]
        return args + (["--ws", ws] if ws else [])
    if server == "hypercorn":
        return ["hypercorn", app, "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--backlog", "4096"]
    if server == "granian":
        return [
            *("granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)),
            *("--workers", "1", "--log-level", "warning", "--no-access-log", "--backlog", "4096", app),
        ]
    raise ValueError(f"unknown server {server!r}; choose from {SERVERS}")


class Server:
    """An ASGI server serving ``<app>`` in a child process; use as a context manager.

    Args:
        app: The import string (``module:attr``).
        ws: The uvicorn ``--ws`` implementation, or ``None`` for uvicorn's default.
        cpu: The CPU to pin the server to, or ``None``.
        extra: More server arguments.
        server: ``uvicorn`` (the default), ``hypercorn`` or ``granian``.
    """

    def __init__(
        self,
        app: str,
        *,
        ws: str | None = None,
        cpu: int | None = 0,
        extra: list[str] | None = None,
        server: str = "uvicorn",
    ) -> None:
        self.app = app
        self.port = _free_port()
        self.cmd = [*taskset(cpu), sys.executable, "-m", *server_args(server, app, self.port, ws)]
        self.cmd += extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = ""

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Server:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
        os.makedirs(LOG_DIR, exist_ok=True)
        self.log_path = os.path.join(LOG_DIR, f"{self.app.split(':')[0].rsplit('.', 1)[-1]}-{self.port}.log")
        with open(self.log_path, "wb") as log:  # a file, not a pipe: a chatty server must never block on stderr
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.log_tail()
                raise RuntimeError(f"server {self.app} exited with {self.proc.returncode}: {err[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server {self.app} did not listen on port {self.port} within 15s")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s). Idempotent."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, limit: int = 2000) -> str:
        """The end of the server's stderr."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-limit:].decode(errors="replace")
        except OSError:
            return ""

    def _status(self, field: str) -> int | None:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    def rss_kb(self) -> int | None:
        """The server's resident set size now, in KiB."""
        return self._status("VmRSS")

    def peak_rss_kb(self) -> int | None:
        """The server's peak resident set size, in KiB."""
        return self._status("VmHWM")

    def fd_count(self) -> int:
        """How many file descriptors the server has open."""
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return 0
