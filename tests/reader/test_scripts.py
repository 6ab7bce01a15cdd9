"""Pages whose examples are scripts: each saved as the page says and run with ``python``, as shown."""

from __future__ import annotations

import subprocess

import pytest

from tests.reader.conftest import ROOT, Reader
from tests.reader.page import Page

pytestmark = pytest.mark.e2e

PAGES = [
    "reference/application.rst",
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


@pytest.mark.parametrize("name", PAGES)
def test_every_script_runs(reader: Reader, name: str) -> None:
    page = Page.read(ROOT / "docs" / name)
    written = page.write(reader.workdir)
    commands = [command for block in page.blocks if block.language == "console" for command in block.commands]
    assert commands, f"{name} shows no command"
    assert sorted(commands) == sorted(f"python {path}" for path in written), "every saved file is run, and only those"
    for command in commands:
        (result,) = reader.shell.run_block([command])
        assert isinstance(result, subprocess.CompletedProcess)
        assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
        assert "Warning" not in result.stderr, result.stderr
