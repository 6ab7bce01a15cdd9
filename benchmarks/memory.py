"""Memory per idle WebSocket connection.

For each count (5,000 and 10,000 by default) a fresh ``uvicorn`` server is started pinned to
CPU 0, warmed with 20 connections, and its RSS read (the baseline). The load generator
(``loadgen hold``, on CPU 1) then opens the connections and waits for every welcome; the
server's RSS is read again while they are held::

    KB per connection = (RSS holding N - baseline RSS) / N

Also reported: whether all N were held (every handshake completed and every welcome arrived)
and the server's open file descriptors.

Run one app: ``python -m benchmarks.memory benchmarks.qakeapi_app:app [--counts 5000,10000] [--ws IMPL]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from benchmarks.server import ROOT, Server, raise_fd_limit, taskset

__all__ = ["measure", "measure_count"]


class _Holder:
    """``loadgen hold`` in a child process; ``ready`` is its first JSON line."""

    def __init__(self, url: str, conns: int, cpu: int | None) -> None:
        self.proc = subprocess.Popen(
            [*taskset(cpu), sys.executable, "-m", "benchmarks.loadgen", "hold", url, "--conns", str(conns)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        try:
            self.ready: dict[str, Any] = json.loads(line)
        except ValueError:
            self.release()
            self.ready = {"error": (line + self.stderr_tail()).strip()[-500:]}

    def stderr_tail(self) -> str:
        try:
            return self.proc.communicate(timeout=10)[1] or ""
        except (subprocess.TimeoutExpired, ValueError):
            return ""

    def release(self) -> None:
        try:
            self.proc.communicate(input="", timeout=30)
        except (subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
            self.proc.wait()


def measure_count(
    app: str, conns: int, *, ws: str | None = None, server_cpu: int = 0, client_cpu: int = 1
) -> dict[str, Any]:
    """Measure the RSS cost of ``conns`` idle connections to a fresh server running ``app``."""
    with Server(app, ws=ws, cpu=server_cpu) as server:
        warm = _Holder(server.url + "/ws", 20, client_cpu)
        warm.release()
        time.sleep(0.3)
        base = server.rss_kb() or 0
        holder = _Holder(server.url + "/ws", conns, client_cpu)
        try:
            if "error" in holder.ready:
                return {"conns": conns, "error": holder.ready["error"], "server": server.log_tail(300)}
            time.sleep(0.5)  # let the server finish any per-connection work after the welcome
            full = server.rss_kb() or 0
            fds = server.fd_count()
        finally:
            holder.release()
    held = holder.ready.get("welcomed", 0)
    return {
        "conns": conns,
        "held": held,
        "all_held": held == conns and holder.ready.get("open") == conns,
        "base_rss_mb": round(base / 1024, 1),
        "rss_mb": round(full / 1024, 1),
        "kb_per_conn": round((full - base) / conns, 2),
        "server_fds": fds,
        "connect_seconds": holder.ready.get("connect_seconds"),
    }


def measure(
    app: str,
    counts: tuple[int, ...] = (5000, 10000),
    *,
    ws: str | None = None,
    server_cpu: int = 0,
    client_cpu: int = 1,
) -> dict[str, Any]:
    """Run :func:`measure_count` for every count; return ``{"<count>": result}``."""
    raise_fd_limit()
    return {str(n): measure_count(app, n, ws=ws, server_cpu=server_cpu, client_cpu=client_cpu) for n in counts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("app", help="uvicorn import string, e.g. benchmarks.qakeapi_app:app")
    ap.add_argument("--counts", default="5000,10000")
    ap.add_argument("--ws", default=None, help="uvicorn --ws implementation")
    a = ap.parse_args()
    counts = tuple(int(c) for c in a.counts.split(","))
    print(json.dumps({"app": a.app, "ws": a.ws, **measure(a.app, counts, ws=a.ws)}))


if __name__ == "__main__":
    main()
