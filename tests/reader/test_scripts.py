"""Pages whose examples are scripts: each saved as the page says and run with ``python``, as shown."""

from __future__ import annotations

import subprocess

import pytest

from tests.reader.conftest import ROOT, Reader
from tests.reader.page import Page
from tests.reader.shown import output_of

pytestmark = pytest.mark.e2e

PAGES = [
    "reference/application.rst",
    "reference/client.rst",
    "reference/clustering.rst",
    "reference/rooms.rst",
    "reference/security.rst",
    "reference/testing.rst",
    "reference/websockets.rst",
    "topics/lifecycle.rst",
    "topics/clustering.rst",
    "topics/delivery.rst",
    "topics/security.rst",
]


SILENT_SCRIPTS = {"topics/security.rst"}
"""Pages whose scripts may print nothing (they check with assertions only). Every other page
shows, after each command, what the script prints."""


@pytest.mark.parametrize("name", PAGES)
def test_every_script_runs(reader: Reader, name: str) -> None:
    page = Page.read(ROOT / "docs" / name)
    written = page.write(reader.workdir)
    shown = {
        command: output_of(block, command)
        for block in page.blocks
        if block.language == "console"
        for command in block.commands
    }
    commands = list(shown)
    assert commands, f"{name} shows no command"
    assert sorted(commands) == sorted(f"python {path}" for path in written), "every saved file is run, and only those"
    for command in commands:
        (result,) = reader.shell.run_block([command])
        assert isinstance(result, subprocess.CompletedProcess)
        assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
        assert "Warning" not in result.stderr, result.stderr
        if name not in SILENT_SCRIPTS:
            assert shown[command], f"{name}: the page does not show what {command!r} prints"
        # What the page shows is what the script printed, line for line.
        assert result.stdout.splitlines() == shown[command] or not shown[command], (
            f"{name}: {command!r} printed\n{result.stdout}\nbut the page shows\n" + "\n".join(shown[command])
        )
