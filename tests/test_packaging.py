"""The package as it is published: metadata, licence, changelog, README links, sdist and wheel contents.

The sdist and the wheel are built once for the module (``python -m build --no-isolation``, so
nothing is downloaded) from the checkout the tests run in.
"""

from __future__ import annotations

import email
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

import qakeapi

ROOT = Path(__file__).resolve().parents[1]
HOME = "https://github.com/qakeapi/qakeapi"
SUPPORTED = ["3.10", "3.11", "3.12", "3.13"]


@dataclass
class Built:
    sdist: list[str]
    """Member names, without the leading ``qakeapi-<version>/``."""
    wheel: list[str]
    metadata: Message
    wheel_license: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [sdist_path] = out.glob("qakeapi_realtime-*.tar.gz")
    [wheel_path] = out.glob("qakeapi_realtime-*.whl")
    with tarfile.open(sdist_path) as sdist:
        prefix = f"qakeapi_realtime-{qakeapi.__version__}/"
        members = [name.removeprefix(prefix) for name in sdist.getnames()]
    with zipfile.ZipFile(wheel_path) as wheel:
        names = wheel.namelist()
        info = f"qakeapi_realtime-{qakeapi.__version__}.dist-info"
        metadata = email.message_from_bytes(wheel.read(f"{info}/METADATA"))
        wheel_license = wheel.read(f"{info}/licenses/LICENSE").decode()
    return Built(members, names, metadata, wheel_license)


# -- metadata ------------------------------------------------------------------------------------


def test_the_version_is_the_packages(built: Built) -> None:
    assert built.metadata["Version"] == qakeapi.__version__


def test_the_licence_is_mit_and_shipped(built: Built) -> None:
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License\n\nCopyright (c) 2026 QakeAPI maintainers\n")
    assert built.metadata["License-Expression"] == "MIT"
    assert built.wheel_license == licence
    assert "LICENSE" in built.sdist


def test_the_classifiers_name_every_supported_python_and_no_other(built: Built) -> None:
    classifiers = built.metadata.get_all("Classifier") or []
    versions = sorted(c.rpartition(" :: ")[2] for c in classifiers if re.fullmatch(r".* :: 3\.\d+", c))
    assert versions == SUPPORTED
    assert built.metadata["Requires-Python"] == f">={SUPPORTED[0]}"
    assert "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")], "the licence is an SPDX expression"


def test_the_project_urls_are_on_the_projects_home(built: Built) -> None:
    urls = dict(entry.split(", ", 1) for entry in built.metadata.get_all("Project-URL") or [])
    assert set(urls) >= {"Homepage", "Source", "Issues", "Changelog", "Documentation"}
    assert all(url == HOME or url.startswith(HOME + "/") for url in urls.values()), urls


def test_the_extras_are_declared(built: Built) -> None:
    extras = set(built.metadata.get_all("Provides-Extra") or [])
    assert extras == {"jwt", "redis", "server", "metrics", "demo", "test", "dev", "bench"}
    requires_metrics = [r for r in built.metadata.get_all("Requires-Dist") or [] if 'extra == "metrics"' in r]
    assert [r.split(";")[0].strip().split(">")[0] for r in requires_metrics] == ["prometheus-client"]
    assert built.metadata["Name"] == "qakeapi-realtime"  # "qakeapi" on the package index is another project
    requires = built.metadata.get_all("Requires-Dist") or []
    bench = {re.split(r"[<>=\[ ;]", r)[0].lower() for r in requires if 'extra == "bench"' in r}
    assert bench >= {"picows", "uvloop", "starlette", "fastapi", "wsproto", "py-spy", "pyjwt"}
    assert not [r for r in requires if "extra" not in r], "QakeAPI has no required dependencies"


# -- what the archives carry ---------------------------------------------------------------------


def test_the_wheel_carries_the_package_only(built: Built) -> None:
    tops = {name.split("/", 1)[0] for name in built.wheel}
    assert tops == {"qakeapi", f"qakeapi_realtime-{qakeapi.__version__}.dist-info"}
    assert "qakeapi/py.typed" in built.wheel
    assert {"qakeapi/static/qakeapi.js", "qakeapi/static/qakeapi.d.ts"} <= set(built.wheel)  # serve_client() reads them
    assert "qakeapi/testing/websocket_session.py" in built.wheel
    assert not [name for name in built.wheel if "__pycache__" in name or name.endswith(".pyc")]


def test_the_sdist_carries_what_its_tests_need(built: Built) -> None:
    # Chosen on purpose: the unpacked sdist runs its own unit suite (scripts/check_package.sh does).
    needed = {
        "pyproject.toml",
        "MANIFEST.in",
        "README.md",
        "CHANGELOG.md",
        "conftest.py",
        "tests/test_packaging.py",
        "tests/redis_server.py",
        "tests/e2e/servers.py",
        "examples_app/chat_app.py",
        "examples_app/static/chat.html",
        "docs/conf.py",
        "docs/guide/websockets.rst",
        "scripts/check_package.sh",
        "requirements/test.lock",
    }
    assert needed <= set(built.sdist), needed - set(built.sdist)
    tracked = subprocess.run(["git", "ls-files", "tests"], cwd=ROOT, capture_output=True, text=True, check=False)
    if tracked.returncode == 0 and tracked.stdout:  # in a checkout: every tracked test file is in the sdist
        missing = set(tracked.stdout.split()) - set(built.sdist)
        assert not missing, missing


def test_the_sdist_leaves_out_build_products(built: Built) -> None:
    unwanted = [
        name
        for name in built.sdist
        if "__pycache__" in name or name.endswith(".pyc") or name.startswith(("docs/_build", ".venv", "dist/"))
    ]
    assert unwanted == []


# -- documents -----------------------------------------------------------------------------------


def test_readme_links_are_absolute() -> None:
    links = re.findall(r"\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert links, "the README has links"
    relative = [link for link in links if not link.startswith("https://")]
    assert relative == [], "relative links break on the package index"
    ours = [link for link in links if "github.com" in link]
    assert all(link.startswith(HOME + "/") for link in ours), ours


def test_readme_links_point_at_files_that_exist() -> None:
    prefix = HOME + "/blob/main/"
    for link in re.findall(r"\]\(([^)]+)\)", (ROOT / "README.md").read_text()):
        if link.startswith(prefix):
            assert (ROOT / link.removeprefix(prefix).partition("?")[0]).exists(), link


def test_the_changelog_keeps_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.MULTILINE)
    assert headings[0] == ("Unreleased", "")
    assert (qakeapi.__version__, "2026-11-26") in headings
    assert f"[Unreleased]: {HOME}/compare/v{qakeapi.__version__}...HEAD" in text
    assert f"[{qakeapi.__version__}]: {HOME}/releases/tag/v{qakeapi.__version__}" in text
    sections = set(re.findall(r"^### (\w+)$", text, re.MULTILINE))
    assert sections <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_the_benchmarks_readme_installs_from_the_repository() -> None:
    text = (ROOT / "benchmarks" / "README.md").read_text()
    assert "pip install --require-hashes --no-deps -r requirements/bench.lock" in text
    assert "pip install --no-deps -e ." in text
    assert (ROOT / "requirements" / "bench.lock").is_file()
    assert "/work/" not in text, "a path of one machine"
