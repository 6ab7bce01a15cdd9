"""A private Prometheus server (Debian's ``prometheus``) that scrapes test servers, and PromQL over its HTTP API."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.e2e.servers import free_port

__all__ = ["SCRAPE_INTERVAL", "PrometheusServer"]

SCRAPE_INTERVAL = "1s"
START_TIMEOUT = 30.0


class PrometheusServer:
    """One ``prometheus`` process on a free port, scraping ``targets`` (``host:port``) every second.

    Args:
        directory: Its configuration and storage.
        targets: ``{"node-1": "127.0.0.1:8001", ...}``: each target is scraped with the label
            ``target`` set to its key.
        metrics_path: The path scraped.
    """

    def __init__(self, directory: Path, targets: dict[str, str], metrics_path: str = "/metrics") -> None:
        executable = shutil.which("prometheus")
        if executable is None:
            raise RuntimeError("prometheus is not on PATH; scripts/services.sh installs it (apt: prometheus)")
        self.executable = executable
        self.directory = directory
        self.targets = targets
        self.metrics_path = metrics_path
        self.port = free_port()
        self.log = directory / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        """The configuration file's text (YAML is a superset of JSON)."""
        jobs = [
            {
                "job_name": name,
                "metrics_path": self.metrics_path,
                "scrape_interval": SCRAPE_INTERVAL,
                "scrape_timeout": SCRAPE_INTERVAL,
                "static_configs": [{"targets": [address], "labels": {"target": name}}],
            }
            for name, address in self.targets.items()
        ]
        return json.dumps({"global": {"scrape_interval": SCRAPE_INTERVAL}, "scrape_configs": jobs}, indent=1)

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(self, *args: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start it and wait until it is ready.

        Raises:
            RuntimeError: It exited or was not ready within ``START_TIMEOUT`` seconds.
        """
        config = self.directory / "prometheus.yml"
        config.write_text(self.config())
        command = [
            self.executable,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with self.log.open("wb") as out:
            self._process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._process.returncode}: {self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus was not ready within {START_TIMEOUT}s: {self.output()}")

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 10 s)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def output(self) -> str:
        """What it logged."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result of an instant query: ``[{"metric": {labels}, "value": [time, "value"]}, ...]``.

        Raises:
            RuntimeError: Prometheus answered with an error.
        """
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            answer = json.loads(response.read())
        if answer.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {answer}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def values(self, promql: str, by: str = "node") -> dict[str, float]:
        """The query's values, keyed by the label ``by``."""
        return {item["metric"].get(by, ""): float(item["value"][1]) for item in self.query(promql)}

    def wait_for(
        self,
        promql: str,
        condition: Callable[[dict[str, float]], bool],
        what: str,
        *,
        by: str = "node",
        timeout: float = 30.0,
    ) -> dict[str, float]:
        """Poll ``promql`` until ``condition(values)`` holds; return the values.

        Raises:
            AssertionError: It did not hold within ``timeout`` seconds (the last values are shown).
        """
        deadline = time.monotonic() + timeout
        values: dict[str, float] = {}
        while time.monotonic() < deadline:
            values = self.values(promql, by)
            if condition(values):
                return values
            time.sleep(0.25)
        raise AssertionError(f"{what}: {promql} was {values} after {timeout}s")

    def targets_up(self, names: Sequence[str]) -> None:
        """Wait until every target in ``names`` was scraped successfully."""
        self.wait_for("up", lambda v: all(v.get(name) == 1.0 for name in names), "every target is scraped", by="target")
