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
from typing import Any

import redis


def sync_client(port: int, password: str | None = None, **options: Any) -> Any:
    """A plain (blocking) redis-py client of ``127.0.0.1:port``, for set-up and inspection in tests.

    Typed ``Any`` on purpose: redis-py's sync client is annotated differently across the versions
    ``pyproject.toml`` allows (5.0 types replies as ``Awaitable | Any`` and leaves ``close()``
    unannotated; 8.2 types both), and mypy --strict runs on the floors and the newest alike.
    """
    return redis.Redis(host="127.0.0.1", port=port, password=password, **options)


__all__ = ["RedisClusterServers", "RedisServer", "SentinelServer", "cluster_port", "free_port", "wait_until"]

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

    def __init__(
        self, directory: Path, *, password: str | None = None, args: tuple[str, ...] = (), port: int | None = None
    ) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not on PATH; the Redis fault tests need it")
        self.executable = executable
        self.directory = directory
        self.password = password
        self.args = args
        self.port = port or free_port()
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
            command += ["--requirepass", self.password, "--masterauth", self.password]
        command += self.args
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
        client = sync_client(self.port, self.password, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def stop(self, *, kill: bool = False) -> None:
        """Terminate the server (``kill``: SIGKILL, no goodbye) and wait until it has exited. Idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        if kill:
            process.kill()
        else:
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


class SentinelServer:
    """One Redis Sentinel process (``redis-server <conf> --sentinel``) watching ``master``.

    Args:
        directory: A scratch directory for its config file (Sentinel rewrites it).
        master: The master to monitor as ``service``.
        service: The monitored service's name.
        quorum: How many Sentinels must agree the master is down.
        down_after_ms: How long the master may be silent before it counts as down.
    """

    def __init__(
        self,
        directory: Path,
        master: RedisServer,
        *,
        service: str = "mymaster",
        quorum: int = 2,
        down_after_ms: int = 500,
    ) -> None:
        self.port = free_port()
        self.service = service
        config = directory / f"sentinel-{self.port}.conf"
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {directory}",
            f"sentinel monitor {service} 127.0.0.1 {master.port} {quorum}",
            f"sentinel down-after-milliseconds {service} {down_after_ms}",
            f"sentinel failover-timeout {service} 3000",
            f"sentinel parallel-syncs {service} 1",
        ]
        if master.password:
            lines.append(f"sentinel auth-pass {service} {master.password}")
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not on PATH; the Sentinel tests need it")
        self._process = subprocess.Popen(
            [executable, str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis sentinel on port {self.port} exited with code {self._process.returncode}")
            try:
                client = sync_client(self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis sentinel on port {self.port} did not answer PING within {START_TIMEOUT}s")
            time.sleep(0.02)

    def master_port(self) -> int | None:
        """The port of the master this Sentinel believes in now."""
        client = sync_client(self.port, socket_timeout=1)
        try:
            address = client.sentinel_get_master_addr_by_name(self.service)
        finally:
            client.close()
        return int(address[1]) if isinstance(address, tuple) else None

    def stop(self) -> None:
        """Terminate the Sentinel. Idempotent."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(STOP_TIMEOUT)


def cluster_port() -> int:
    """A free port whose cluster bus port (the port + 10000) is free and valid too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisClusterServers:
    """A Redis Cluster of ``masters`` private ``redis-server`` processes, no replicas.

    Args:
        directory: A scratch directory (one folder per shard is made in it).
        password: The password of every shard.
        masters: How many masters.
    """

    def __init__(self, directory: Path, *, password: str, masters: int = 3) -> None:
        self.password = password
        self.shards: list[RedisServer] = []
        for port in (cluster_port() for _ in range(masters)):
            shard_dir = directory / str(port)
            shard_dir.mkdir()
            args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
            self.shards.append(RedisServer(shard_dir, password=password, port=port, args=args))

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL of the first shard (the client discovers the others)."""
        return f"redis+cluster://:{self.password}@127.0.0.1:{self.shards[0].port}"

    async def start(self) -> None:
        """Start the shards, create the cluster and wait until it is ``ok``."""
        self.start_shards()
        await self.create()

    def start_shards(self) -> None:
        """Start the shards (each a lone node that serves no slot until :meth:`create`)."""
        for shard in self.shards:
            shard.start()

    async def create(self) -> None:
        """Create the cluster of the running shards and wait until it is ``ok``."""
        await asyncio.to_thread(
            subprocess.run,
            ["redis-cli", "-a", self.password, "--no-auth-warning", "--cluster", "create"]
            + [f"127.0.0.1:{shard.port}" for shard in self.shards]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        admin = self.admin()
        try:
            await wait_until(lambda: admin.cluster("info")["cluster_state"] == "ok", "the cluster is up")
        finally:
            admin.close()

    def admin(self) -> Any:
        """A plain client of the first shard (for ``CLUSTER`` commands; see :func:`sync_client`)."""
        return sync_client(self.shards[0].port, self.password)

    def owner_of(self, key: str) -> RedisServer:
        """The shard serving ``key``'s slot (from ``CLUSTER SLOTS``: ``[start, end, [host, port, id], ...]``)."""
        admin = self.admin()
        try:
            slot = int(admin.cluster("keyslot", key))
            slots = admin.execute_command("CLUSTER", "SLOTS")
        finally:
            admin.close()
        for start, end, primary, *_replicas in slots:
            if int(start) <= slot <= int(end):
                return next(shard for shard in self.shards if shard.port == int(primary[1]))
        raise AssertionError(f"nobody serves slot {slot}: {slots}")

    def stop(self) -> None:
        """Stop every shard. Idempotent."""
        for shard in self.shards:
            shard.stop()
