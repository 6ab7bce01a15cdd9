"""The README's first command on a fresh checkout: ``./scripts/demo.sh`` installs what the demo needs and serves it.

The checkout is a copy of the files git knows (tracked, or new and not ignored) in a temporary
folder, with no ``.venv``: ``demo.sh`` makes its own from ``requirements/demo.lock`` alone, so a
module the demo imports but the demo set does not install fails here (PyJWT did). The suite's
other README command, ``./scripts/test.sh``, is what ``.ci/run`` runs on a fresh clone.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from tests.e2e.servers import ROOT, free_port, wait_for_port

pytestmark = pytest.mark.e2e

# Creating the virtualenv and installing the demo set takes a while on a cold pip cache.
INSTALL_LIMIT = 600.0
RECEIVE_LIMIT = 10.0


def fresh_checkout(destination: Path) -> Path:
    """Copy what a clone of this tree would hold (no ``.venv``, no build output) to ``destination``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a file deleted in the working tree is listed but gone
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """``PORT=<free> ./scripts/demo.sh`` running in a fresh checkout; yields the port and the checkout."""
    tmp_path = tmp_path_factory.mktemp("fresh")
    checkout = fresh_checkout(tmp_path / "qakeapi")
    port = free_port()
    log = tmp_path / "demo.log"
    environment = {
        key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PIP_CONSTRAINT")
    }
    # Whatever runs this suite has .venv/bin first on PATH: the demo must not lean on it.
    environment["PATH"] = os.pathsep.join(
        part for part in environment.get("PATH", "").split(os.pathsep) if not part.startswith(str(ROOT))
    )
    environment["PORT"] = str(port)
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["./scripts/demo.sh"],
            cwd=checkout,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            wait_for_port(port, process, timeout=INSTALL_LIMIT)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}; demo.sh printed:\n{log.read_text(errors='replace')}") from exc
        yield port, checkout
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_demo_sh_serves_the_page_with_only_the_demo_set_installed(demo: tuple[int, Path]) -> None:
    port, checkout = demo
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=RECEIVE_LIMIT) as response:
        assert response.status == 200
        page = response.read().decode()
    assert "<html" in page.lower()
    # What it installed is the demo set only: PyJWT and uvicorn, not the test tools.
    installed = subprocess.run(
        [str(checkout / ".venv" / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {entry["name"].lower() for entry in json.loads(installed)}
    assert {"pyjwt", "uvicorn", "qakeapi-realtime"} <= names
    assert "pytest" not in names


def token(port: int, name: str) -> str:
    """A token for ``name`` from the demo's ``POST /token``."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/token",
        data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=RECEIVE_LIMIT) as response:
        value: str = json.loads(response.read())["token"]
        return value


@pytest.mark.asyncio
async def test_two_clients_chat_through_the_demo_of_a_fresh_checkout(demo: tuple[int, Path]) -> None:
    port, _ = demo
    origin = Origin(f"http://127.0.0.1:{port}")
    tokens = [await asyncio.to_thread(token, port, name) for name in ("Ada", "Bob")]
    async with (
        connect(f"ws://127.0.0.1:{port}/chat", origin=origin, subprotocols=bearer(tokens[0])) as ada,
        connect(f"ws://127.0.0.1:{port}/chat", origin=origin, subprotocols=bearer(tokens[1])) as bob,
    ):
        for client, name in ((ada, "Ada"), (bob, "Bob")):
            await client.send(json.dumps({"type": "join", "room": "general", "client": name}))
            await until(client, "joined")
        await ada.send(json.dumps({"type": "say", "room": "general", "text": "hello from a fresh clone"}))
        publication = await until(bob, "publication")
        said = publication["data"]
        assert isinstance(said, dict)
        assert (said["type"], said["from"], said["text"]) == ("said", "Ada", "hello from a fresh clone")


def bearer(token: str) -> list[Subprotocol]:
    """The subprotocols that carry ``token`` (what ``qakeapi.js`` offers)."""
    return [Subprotocol("bearer"), Subprotocol(token)]


async def until(client: ClientConnection, kind: str) -> dict[str, object]:
    """The next frame of type ``kind`` (others, such as presence updates, are read and passed over)."""
    while True:
        frame: dict[str, object] = json.loads(await asyncio.wait_for(client.recv(), RECEIVE_LIMIT))
        if frame["type"] == kind:
            return frame
