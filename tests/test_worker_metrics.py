"""Tests for qakeapi.core.worker_metrics: the workers of one server add up their readings in a directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qakeapi.core.counters import counters
from qakeapi.core.snapshot import Family, take, to_data
from qakeapi.core.worker_metrics import WorkerMetrics


def _sample(families: list[Family], name: str, **labels: str) -> float:
    family = next(f for f in families if f.name == name)
    wanted = tuple(sorted(labels.items()))
    values = [value for key, value in family.samples if key == wanted]
    assert len(values) <= 1
    if not values:
        return 0.0
    value = values[0]
    assert isinstance(value, float | int)
    return float(value)


def _other_worker(directory: Path, pid: int, received: int, open_: int) -> None:
    counter = Family("qakeapi_messages_received", "counter", "h")
    counter.add(received, node="n")
    gauge = Family("qakeapi_connections", "gauge", "h")
    gauge.add(open_, node="n", route="/ws")
    (directory / f"{pid}.json").write_text(json.dumps(to_data([counter, gauge])))


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_scrape_adds_the_live_and_dead_workers_counters_and_only_the_live_ones_gauges(tmp_path: Path) -> None:
    mine = WorkerMetrics(tmp_path)
    own = take("n")
    own_received = _sample(own, "qakeapi_messages_received", node="n")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _other_worker(tmp_path, alive.pid, received=5, open_=3)
        _other_worker(tmp_path, _dead_pid(), received=7, open_=4)
        merged = mine.read("n")
    finally:
        alive.kill()
        alive.wait()
    assert _sample(merged, "qakeapi_messages_received", node="n") == own_received + 5 + 7
    own_open = counters.open_connections().get("/ws", 0)
    assert _sample(merged, "qakeapi_connections", node="n", route="/ws") == own_open + 3


def test_a_worker_writes_its_reading_and_its_final_one_without_gauges(tmp_path: Path) -> None:
    worker = WorkerMetrics(tmp_path / "sub", node="n")
    worker.write()
    data = json.loads((tmp_path / "sub" / f"{os.getpid()}.json").read_text())
    assert {"qakeapi_connections", "qakeapi_messages_received"} <= {item["name"] for item in data}
    worker.write(final=True)
    data = json.loads((tmp_path / "sub" / f"{os.getpid()}.json").read_text())
    assert "qakeapi_connections" not in {item["name"] for item in data}
    assert "qakeapi_messages_received" in {item["name"] for item in data}
    assert not list((tmp_path / "sub").glob("*.tmp"))


def test_a_torn_file_is_skipped_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "12345.json").write_text('[{"name": "qakeapi_x"')
    merged = WorkerMetrics(tmp_path).read("n")
    assert any(f.name == "qakeapi_messages_received" for f in merged)
    assert "ignoring" in caplog.text
    assert "12345.json" in caplog.text
