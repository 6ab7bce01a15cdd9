"""docs/getting-started.rst, followed by a reader in the virtualenv the guide's install command made."""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess

import pytest
from websockets.asyncio.client import connect

from tests.reader.conftest import GUIDE, ROOT, Reader
from tests.reader.page import Page
from tests.reader.test_guide import assert_stops_cleanly, recv_json

pytestmark = pytest.mark.e2e

PAGE = ROOT / "docs" / "getting-started.rst"


def test_install_command_is_covered_by_the_tested_one() -> None:
    """What this page installs is what the reader tests install (the guide's command adds test tools)."""
    (mine,) = Page.read(PAGE).commands("Install")
    (guides,) = Page.read(GUIDE).commands("Before you start")
    assert len(mine) == 1
    assert set(shlex.split(mine[0])) <= set(shlex.split(guides[0]))
    (index,) = Page.read(ROOT / "docs" / "index.rst").commands("QakeAPI")
    assert set(shlex.split(index[0])) <= set(shlex.split(guides[0]))


@pytest.mark.asyncio
async def test_quickstart(reader: Reader) -> None:
    page = Page.read(PAGE)
    page.write(reader.workdir, through="Quickstart")
    start, health, talk = page.commands("Quickstart")
    assert start == ["uvicorn quickstart:app"]
    (server,) = reader.shell.run_block(start)
    assert not isinstance(server, subprocess.CompletedProcess)

    async with connect(f"{server.ws_url}/ws") as one, connect(f"{server.ws_url}/ws") as two:
        welcome = await recv_json(one)
        assert welcome["type"] == "welcome"
        assert (await recv_json(two))["type"] == "welcome"
        (answer,) = reader.shell.run_block(health)
        assert isinstance(answer, subprocess.CompletedProcess)
        assert json.loads(answer.stdout) == {"status": "ok", "connections": 2}

        assert talk == ["python -m websockets ws://localhost:8000/ws"]
        printed = await asyncio.to_thread(reader.shell.interact, talk[0], reader.workdir, '"hello"\n', '"hello"}')
        assert '"message":"hello"' in printed
        for ws in (one, two):
            message = await recv_json(ws)
            assert message["message"] == "hello"
            assert message["from"] != welcome["id"]
    assert_stops_cleanly(server)
