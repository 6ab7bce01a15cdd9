"""Run the commands a page shows, the way a reader would type them, on loopback ports of our choosing.

``uvicorn`` commands start a server in the background (a reader opens a terminal for each);
the documented port (``--port``, else uvicorn's default 8000) is swapped for a free one, and
every later ``localhost:<documented port>`` in a command is rewritten to the real one. Any other
command runs to completion. Commands are split with :func:`shlex.split` and never go through a
shell, so what runs is exactly the words on the page.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.e2e.servers import ROOT, Server, free_port, wait_for_port

__all__ = ["CommandError", "Shell", "shell", "split_env"]

UVICORN_DEFAULT_PORT = 8000
COMMAND_TIMEOUT = 180.0


class CommandError(AssertionError):
    """A documented command failed; the message has its output."""


@dataclass
class Shell:
    """Runs documented commands in ``workdir``.

    Attributes:
        workdir: The reader's working directory (where the page's files were written).
        bin_dir: The virtualenv's ``bin`` directory, first on ``PATH``; ``None`` runs tools
            with this interpreter (``python -m uvicorn``), for the in-repository harness.
        env: Extra environment variables.
    """

    workdir: Path
    bin_dir: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    servers: list[Server] = field(default_factory=list)
    ports: dict[int, int] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
        if self.bin_dir is not None:
            environment["PATH"] = f"{self.bin_dir}{os.pathsep}{environment.get('PATH', '')}"
            environment["VIRTUAL_ENV"] = str(self.bin_dir.parent)
        else:  # the docs harness: this checkout's qakeapi, installed or not
            environment["PYTHONPATH"] = str(ROOT)
        environment["PYTHONUNBUFFERED"] = "1"
        environment.update(self.env)
        return environment

    def argv(self, words: list[str]) -> list[str]:
        """``words`` with the program resolved in the virtualenv (or this interpreter)."""
        program = words[0]
        if self.bin_dir is not None:
            return [str(self.bin_dir / program) if (self.bin_dir / program).exists() else program, *words[1:]]
        if program in ("python", "python3"):
            return [sys.executable, *words[1:]]
        if program in ("uvicorn", "pytest"):
            return [sys.executable, "-m", program, *words[1:]]
        return words

    def localize(self, command: str) -> str:
        """Rewrite ``localhost:<documented port>`` to the port the server really listens on."""
        for documented, actual in self.ports.items():
            command = command.replace(f"localhost:{documented}", f"127.0.0.1:{actual}")
        return command

    def run_block(
        self, commands: list[str], *, inputs: Mapping[str, str] | None = None
    ) -> list[Server | subprocess.CompletedProcess[str]]:
        """Run one console block: ``cd`` for the lines after it, servers in the background.

        Args:
            commands: The block's commands (:attr:`tests.reader.page.Block.commands`).
            inputs: Standard input for commands, by the command as documented.

        Returns:
            A server or a finished process per command other than ``cd``.
        """
        cwd = self.workdir
        results: list[Server | subprocess.CompletedProcess[str]] = []
        for command in commands:
            env, words = split_env(shlex.split(command))
            if words[0] == "cd":
                cwd = cwd / words[1]
            elif words[0] == "uvicorn":
                results.append(self.start(words, cwd, env=env))
            else:
                results.append(self.run(command, cwd, stdin=(inputs or {}).get(command)))
        return results

    def start(self, words: list[str], cwd: Path, *, env: Mapping[str, str] | None = None) -> Server:
        """Start a documented ``uvicorn`` command on a free port, with ``env`` added to its environment."""
        words = list(words)
        documented = UVICORN_DEFAULT_PORT
        if "--port" in words:
            at = words.index("--port")
            documented = int(words[at + 1])
            del words[at : at + 2]
        port = free_port()
        argv = self.argv([*words, "--host", "127.0.0.1", "--port", str(port)])
        log = cwd / f"uvicorn-{port}.log"
        with log.open("wb") as out:
            environment = {**self.environment(), **(env or {})}
            process = subprocess.Popen(argv, cwd=cwd, env=environment, stdout=out, stderr=subprocess.STDOUT)
        server = Server(" ".join(words), port, log, process)
        self.servers.append(server)
        try:
            wait_for_port(port, process)
        except RuntimeError as exc:
            raise CommandError(f"{' '.join(words)} (in {cwd}) did not start: {exc}\n{server.output()}") from None
        self.ports[documented] = port
        return server

    def run(self, command: str, cwd: Path, *, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a documented command to completion; fail with its output when it fails."""
        env, words = split_env(shlex.split(self.localize(command)))
        result = subprocess.run(
            self.argv(words),
            cwd=cwd,
            env={**self.environment(), **env},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        return result

    def interact(self, command: str, cwd: Path, send: str, until: str, timeout: float = 10.0) -> str:
        """Run an interactive documented command: type ``send``, read its output until ``until`` shows.

        Returns:
            What it printed.

        Raises:
            CommandError: ``until`` did not show within ``timeout`` seconds.
        """
        argv = self.argv(shlex.split(self.localize(command)))
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=self.environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        output = bytearray()
        reader = threading.Thread(target=_read_into, args=(process.stdout, output), daemon=True)
        reader.start()
        try:
            process.stdin.write(send.encode())
            process.stdin.flush()
            deadline = time.monotonic() + timeout
            while until.encode() not in output:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise CommandError(f"{command}: no {until!r} within {timeout}s; it printed:\n{output.decode()}")
                time.sleep(0.05)
        finally:
            process.stdin.close()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            reader.join(5)
            process.stdout.close()
        return output.decode(errors="replace")

    def stop(self) -> None:
        """Stop every server (SIGINT, as Ctrl+C), newest first."""
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()


def split_env(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split leading ``NAME=value`` words (a shell's per-command environment) from the command."""
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, _, value = words[0].partition("=")
        env[name] = value
        words = words[1:]
    return env, words


def _read_into(stream: IO[bytes], output: bytearray) -> None:
    while chunk := stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096):
        output.extend(chunk)


@contextmanager
def shell(workdir: Path, bin_dir: Path | None = None, env: Mapping[str, str] | None = None) -> Iterator[Shell]:
    """A :class:`Shell` whose servers stop when the ``with`` block ends."""
    session = Shell(workdir, bin_dir, dict(env or {}))
    try:
        yield session
    finally:
        session.stop()
