"""The reader's machine: QakeAPI's wheel, installed (not editable) in a fresh virtualenv outside the repository.

The wheel is built once per source tree (cached by a hash of the sources) and the virtualenv
once per test session, with the install command the guide shows its reader, run as written:
only pip's package source is pointed at the local wheel (``PIP_FIND_LINKS``), with the lock's
versions. Each test gets an empty working directory and a :class:`Shell`
that runs the page's commands with that virtualenv first on ``PATH``.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reader.page import Page
from tests.reader.shell import Shell, shell

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guide" / "websockets.rst"
WHEEL_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qakeapi-reader" / "wheels"


@dataclass(frozen=True)
class Reader:
    """A reader at work: an empty directory, the installed wheel and a terminal."""

    workdir: Path
    shell: Shell
    page: Page


WHEEL_INPUTS = ("pyproject.toml", "README.md", "LICENSE")
"""The files next to ``qakeapi/`` that go into the wheel (its metadata)."""


def source_hash() -> str:
    """A hash of everything that goes into the wheel."""
    digest = hashlib.sha256()
    files = [*(ROOT / name for name in WHEEL_INPUTS), *sorted((ROOT / "qakeapi").rglob("*"))]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


DISTRIBUTION = "qakeapi-realtime"
"""The name QakeAPI is published under (``qakeapi`` on the package index is another project)."""

LOCK = ROOT / "requirements" / "dev.lock"


def build_wheel() -> Path:
    """QakeAPI's wheel for the current sources, built once and cached, alone in its directory.

    The directory serves as the reader's package source: the install command the docs show runs
    as written, with this directory added to pip's ``--find-links``.

    Built from a copy of the sources, so that the build leaves nothing (``build/``,
    ``*.egg-info``) in the checkout.
    """
    directory = WHEEL_CACHE / source_hash()
    wheels = sorted(directory.glob("qakeapi_realtime-*.whl"))
    if not wheels:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="qakeapi-wheel-") as scratch:
            source = Path(scratch) / "source"
            shutil.copytree(ROOT / "qakeapi", source / "qakeapi", ignore=shutil.ignore_patterns("__pycache__"))
            for name in WHEEL_INPUTS:
                if (ROOT / name).exists():
                    shutil.copy2(ROOT / name, source / name)
            command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(directory), str(source)]
            subprocess.run(command, check=True, timeout=600)
        wheels = sorted(directory.glob("qakeapi_realtime-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {directory}, found {wheels}"
    return wheels[0]


def install_command(page: Page) -> str:
    """The page's one ``pip install`` command, exactly as the reader types it."""
    commands = [command for block in page.commands("Before you start") for command in block]
    assert len(commands) == 1, f"expected one install command, the page shows {commands}"
    words = shlex.split(commands[0])
    assert words[:2] == ["pip", "install"], commands[0]
    specs = [word for word in words if word.startswith(DISTRIBUTION)]
    assert len(specs) == 1, f"the install command names {DISTRIBUTION} {len(specs)} times: {commands[0]}"
    return commands[0]


def locked_constraints(directory: Path) -> Path:
    """The pins of ``requirements/dev.lock`` without their hashes, as a pip constraints file.

    The reader's install then resolves the same versions the suite was locked with.
    """
    lines = []
    for line in LOCK.read_text().splitlines():
        requirement = line.strip().removesuffix("\\").strip()
        if requirement and not requirement.startswith(("#", "--hash")):
            lines.append(requirement)
    constraints = directory / "constraints.txt"
    constraints.write_text("\n".join(lines) + "\n")
    return constraints


def package_source(wheel: Path, constraints: Path) -> dict[str, str]:
    """pip's environment for the reader: the index as usual, plus the local wheel's directory."""
    links = " ".join(filter(None, [str(wheel.parent), os.environ.get("PIP_FIND_LINKS", "")]))
    return {"PIP_FIND_LINKS": links, "PIP_CONSTRAINT": str(constraints)}


@pytest.fixture(scope="session")
def reader_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` directory of a fresh virtualenv holding the installed wheel and the guide's tools.

    It is made with the guide's install command, run as written; only pip's package source
    differs (the local wheel beside the index, and the lock's versions as constraints).
    """
    wheel = build_wheel()
    home = tmp_path_factory.mktemp("reader")
    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    bin_dir = venv / "bin"
    session = Shell(home, bin_dir, env=package_source(wheel, locked_constraints(home)))
    command = install_command(Page.read(GUIDE))
    result = session.run(command, home)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    check = (
        "import importlib.metadata, pathlib, qakeapi; "
        f"print(importlib.metadata.version({DISTRIBUTION!r})); print(qakeapi.__file__)"
    )
    version, where = subprocess.run(
        [str(bin_dir / "python"), "-c", check],
        cwd=home,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert Path(where).is_relative_to(venv), f"qakeapi is imported from {where}, not from the virtualenv"
    installed = Path(where).read_bytes()
    assert installed == (ROOT / "qakeapi" / "__init__.py").read_bytes(), f"{where} is not this checkout's qakeapi"
    assert wheel.name.startswith(f"qakeapi_realtime-{version}-"), (version, wheel.name)
    return bin_dir


@pytest.fixture
def reader(reader_venv: Path, tmp_path: Path) -> Iterator[Reader]:
    """An empty working directory outside the repository and a shell in the reader's virtualenv."""
    workdir = tmp_path / "guide"
    workdir.mkdir()
    with shell(workdir, reader_venv) as session:
        yield Reader(workdir, session, Page.read(GUIDE))
