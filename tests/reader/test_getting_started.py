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
from tests.reader.shown import assert_printed, assert_server_printed, output_of
from tests.reader.test_guide import assert_stops_cleanly, recv_json

pytestmark = pytest.mark.e2e

PAGE = ROOT / "docs" / "getting-started.rst"


def test_install_command_is_covered_by_the_tested_one() -> None:
    """What this page installs is what the reader tests install (the guide's command adds test tools)."""
    venv, mine = Page.read(PAGE).commands("Install")
    assert venv == ["python -m venv .venv", "source .venv/bin/activate"], "the virtualenv comes before the install"
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
    blocks = [block for block in page.blocks if block.language == "console" and block.section == "Quickstart"]
    assert_server_printed(output_of(blocks[0], start[0]), server)

    (answer,) = reader.shell.run_block(health)  # before any client, as the page shows it
    assert isinstance(answer, subprocess.CompletedProcess)
    assert_printed(output_of(blocks[1], health[0]), answer.stdout)

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
        # The ids differ (this is the third connection): the lines are those shown, numbers aside.
        assert_printed(output_of(blocks[2], talk[0]), printed, any_number=True)
        for ws in (one, two):
            message = await recv_json(ws)
            assert message["message"] == "hello"
            assert message["from"] != welcome["id"]
    assert_stops_cleanly(server)
