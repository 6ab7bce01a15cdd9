"""The in-process benchmark (``benchmarks/inproc.py`` and its fake server): every app delivers every frame expected.

Behaviour only, on tiny counts: no speed figure is asserted here (speed is measured by running
the benchmark; see ``benchmarks/README.md``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import inproc
from benchmarks.fake_server import Message, Result, Workload, load_app, measure
from benchmarks.inproc import WORKLOADS

# Starlette is a benchmark tool, not a test dependency: its apps are left out here.
APPS = ["raw", "qakeapi"]
MEASURED = [name for name, w in WORKLOADS.items() if all(spec is not None for spec in w.apps.values())]


def _run(app: Any, workload: Workload, *, n: int = 20, members: int = 200, k: int = 3) -> Result:
    return asyncio.run(measure(app, workload, n=n, members=members, k=k))


# Each workload with each of its apps (the metrics workloads compare QakeAPI with itself: no raw app).
CASES = [(name, app) for name in MEASURED for app in APPS if WORKLOADS[name].apps.get(app) is not None]


@pytest.mark.parametrize(("name", "app_name"), CASES)
def test_every_app_delivers_every_frame(name: str, app_name: str) -> None:
    workload = WORKLOADS[name]
    spec = workload.apps[app_name]
    assert spec is not None
    result = _run(load_app(spec), workload)
    if workload.kind == "echo":
        assert result.delivered == 20  # one reply per message, each checked
    else:
        assert result.delivered == 200 * 3  # each of the 200 members got each of the 3 broadcasts
    assert result.wall_us > 0
    assert result.cpu_us >= 0


def _duplicating(app: Any) -> Any:
    """``app``, but the first data frame after the welcome of every connection is sent twice."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await app(scope, receive, send)
            return
        frames = 0

        async def twice(message: Message) -> None:
            nonlocal frames
            await send(message)
            if message["type"] == "websocket.send":
                frames += 1
                if frames == 2:
                    await send(message)

        await app(scope, receive, twice)

    return wrapped


def _rewriting(app: Any) -> Any:
    """``app``, but every echo reply says something else."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        async def rewrite(message: Message) -> None:
            if message["type"] == "websocket.send" and '"echo"' in (message.get("text") or ""):
                message = {"type": "websocket.send", "text": json.dumps({"type": "echo", "data": None})}
            await send(message)

        await app(scope, receive, rewrite)

    return wrapped


def test_a_frame_too_many_is_caught() -> None:
    app = _duplicating(load_app("benchmarks.raw_asgi_app:app"))
    with pytest.raises(AssertionError, match="member 0 got 5 frames, expected 4"):
        _run(app, WORKLOADS["fanout"], members=3)


def test_a_wrong_reply_is_caught() -> None:
    app = _rewriting(load_app("benchmarks.raw_asgi_app:app"))
    with pytest.raises(AssertionError, match="echo"):
        _run(app, WORKLOADS["echo"], n=5)


def test_the_command_line_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "inproc.json"
    inproc.main(
        [
            *("--workloads", "echo,fanout,metrics_echo", "--apps", ",".join([*APPS, "qakeapi+metrics"])),
            *("--repeats", "2", "--n", "10", "--members", "5", "--k", "2", "--json", str(out)),
        ]
    )
    report = json.loads(out.read_text())
    assert set(report["workloads"]) == {"echo", "fanout", "metrics_echo"}
    expected = {
        "echo": ("raw", "qakeapi"),
        "fanout": ("raw", "qakeapi"),
        "metrics_echo": ("qakeapi", "qakeapi+metrics"),
    }
    for name, rows in report["workloads"].items():
        base, other = expected[name]
        assert set(rows) == {base, other}
        assert rows[base]["ratio_wall"] == 1.0  # the first app of the workload is the base
        for row in rows.values():
            for clock in ("wall_us", "cpu_us"):
                assert row[clock]["min"] <= row[clock]["median"] <= row[clock]["max"]
    assert report["skipped"] == {}
