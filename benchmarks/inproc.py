"""The framework's own overhead per message, measured in process: no sockets, no server.

A minimal fake ASGI server (:mod:`benchmarks.fake_server`: a ``receive`` fed from a queue, a
``send`` that records) drives each app through the same workloads, so what differs between two figures is
the app's own work per message:

``echo``
    one connection on ``/ws``; N messages are queued at once and the time runs until the N-th
    reply is recorded: microseconds per message.
``fanout``
    ``--members`` connections on ``/room``; the first sends K messages and the time runs until
    every member has every broadcast: microseconds per delivery.
``secure``
    the fan-out through a room with every limit at QakeAPI's default (token bucket, size limit,
    per-address cap, strict JSON decoder); the bare and Starlette apps apply the same limits by
    hand.
``cluster``
    the fan-out on a clustered QakeAPI node (``memory://``), against the bare app's plain one.
``metrics_echo``, ``metrics_fanout``
    QakeAPI with metrics off and on (:data:`METRICS_APP`: the same handlers under an
    application that exposes its metrics, so its hooks are timed).

Every figure is the minimum over ``--repeats`` repeats, each app in a fresh event loop; apps
are interleaved and the order rotates from repeat to repeat, so drift and neighbours' load fall
on every app alike. Wall time (:func:`time.perf_counter`) and this process's CPU time
(:func:`time.process_time`) are both reported, with their spread (median and worst over the
best). After every timed run the frames each peer got are checked: the right count, the right
content, in order.

From the repository root, with the benchmark venv (see ``benchmarks/README.md``)::

    python -m benchmarks.inproc                          # every workload, 7 repeats
    python -m benchmarks.inproc --repeats 15 --workloads echo,fanout --json out.json
    python -m benchmarks.inproc --workloads fanout --apps qakeapi --profile /tmp/prof   # cProfile, timed part only
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import platform
import pstats
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.fake_server import ASGIApp, Workload, load_app, measure

__all__ = ["METRICS_APP", "WORKLOADS", "main", "profile", "run"]

METRICS_APP: str | None = "benchmarks.qakeapi_metrics_app:app"
"""The contract of :mod:`benchmarks.qakeapi_app` with metrics on (:mod:`benchmarks.qakeapi_metrics_app`),
which the ``metrics_*`` workloads compare with metrics off."""


_RAW, _STARLETTE, _QAKEAPI = "benchmarks.raw_asgi_app:app", "benchmarks.starlette_app:app", "benchmarks.qakeapi_app:app"

WORKLOADS: dict[str, Workload] = {
    "echo": Workload("echo", "/ws", {"raw": _RAW, "starlette": _STARLETTE, "qakeapi": _QAKEAPI}),
    "fanout": Workload("fanout", "/room", {"raw": _RAW, "starlette": _STARLETTE, "qakeapi": _QAKEAPI}),
    "secure": Workload(
        "fanout",
        "/room",
        {
            "raw": "benchmarks.raw_secure_app:app",
            "starlette": "benchmarks.starlette_secure_app:app",
            "qakeapi": "benchmarks.qakeapi_room_app:app",
        },
    ),
    "cluster": Workload("fanout", "/room", {"raw": _RAW, "qakeapi": "benchmarks.qakeapi_room_app:cluster_app"}),
    "metrics_echo": Workload("echo", "/ws", {"qakeapi": _QAKEAPI, "qakeapi+metrics": METRICS_APP}),
    "metrics_fanout": Workload("fanout", "/room", {"qakeapi": _QAKEAPI, "qakeapi+metrics": METRICS_APP}),
}
"""Every workload by name."""


@dataclass
class _Series:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def _spread(values: list[float]) -> dict[str, float]:
    best = min(values)
    return {
        "min": round(best, 4),
        "median": round(statistics.median(values), 4),
        "max": round(max(values), 4),
        "spread_median": round(statistics.median(values) / best - 1, 4),
    }


def run(
    workloads: Sequence[str],
    *,
    repeats: int = 7,
    n: int = 5000,
    members: int = 200,
    k: int = 50,
    apps: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Measure ``workloads``: ``repeats`` interleaved, rotated repeats of every app, after one warm-up.

    Args:
        workloads: Names from :data:`WORKLOADS`.
        repeats: How many timed repeats of every (workload, app) pair.
        n: Echo messages per run.
        members: Fan-out members.
        k: Fan-out messages per run.
        apps: Only these app names (``None``: all).

    Returns:
        ``{"python": ..., "workloads": {name: {app: figures}}, "skipped": {...}}``: per app, the
        wall and CPU microseconds (``min``, ``median``, ``max``, ``spread_median``) and the ratio
        of its minimum to the base app's (the first of the workload).
    """
    loaded: dict[str, ASGIApp] = {}
    plan: list[tuple[str, list[str]]] = []
    skipped: dict[str, list[str]] = {}
    for name in workloads:
        workload = WORKLOADS[name]
        missing = [app_name for app_name, spec in workload.apps.items() if spec is None]
        if missing:  # a comparison with one side missing measures nothing
            skipped[name] = missing
            continue
        names = []
        for app_name, spec in workload.apps.items():
            if spec is None or (apps is not None and app_name not in apps):
                continue
            if spec not in loaded:
                loaded[spec] = load_app(spec)
            names.append(app_name)
        if names:
            plan.append((name, names))
    series: dict[tuple[str, str], _Series] = {}
    for round_ in range(repeats + 1):  # round 0 warms up and is not counted
        for name, names in plan:
            workload = WORKLOADS[name]
            shift = round_ % len(names)
            for app_name in names[shift:] + names[:shift]:
                spec = workload.apps[app_name]
                assert spec is not None
                app = loaded[spec]
                result = asyncio.run(measure(app, workload, n=n, members=members, k=k))
                if round_:
                    s = series.setdefault((name, app_name), _Series())
                    s.wall.append(result.wall_us)
                    s.cpu.append(result.cpu_us)
    out: dict[str, Any] = {}
    for name, names in plan:
        base = series[(name, names[0])]
        rows = {}
        for app_name in names:
            s = series[(name, app_name)]
            rows[app_name] = {
                "wall_us": _spread(s.wall),
                "cpu_us": _spread(s.cpu),
                "ratio_wall": round(min(s.wall) / min(base.wall), 3),
                "ratio_cpu": round(min(s.cpu) / min(base.cpu), 3),
            }
        out[name] = rows
    return {
        "python": platform.python_version(),
        "repeats": repeats,
        "n": n,
        "members": members,
        "k": k,
        "workloads": out,
        "skipped": skipped,
    }


def profile(
    workloads: Sequence[str], apps: Sequence[str], prefix: str, *, n: int = 5000, members: int = 200, k: int = 50
) -> list[str]:
    """Profile the timed part of each (workload, app) with :mod:`cProfile`, over 5 runs after a warm-up.

    Args:
        workloads: Names from :data:`WORKLOADS`.
        apps: App names.
        prefix: Each profile is written to ``{prefix}.{workload}.{app}.pstats``.
        n: Echo messages per run.
        members: Fan-out members.
        k: Fan-out messages per run.

    Returns:
        The files written.
    """
    written = []
    for name in workloads:
        workload = WORKLOADS[name]
        for app_name in apps:
            spec = workload.apps.get(app_name)
            if spec is None:
                continue
            app = load_app(spec)
            asyncio.run(measure(app, workload, n=n, members=members, k=k))
            profiler = cProfile.Profile()
            for _ in range(5):
                asyncio.run(measure(app, workload, n=n, members=members, k=k, profiler=profiler))
            path = f"{prefix}.{name}.{app_name}.pstats"
            profiler.dump_stats(path)
            print(f"== {name} / {app_name}: {path}")
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(12)
            written.append(path)
    return written


def _table(report: dict[str, Any]) -> str:
    lines = [
        f"Python {report['python']}, min of {report['repeats']} repeats (echo: µs/message; fan-out: µs/delivery)",
        f"{'workload':<15}{'app':<17}{'wall':>8}{'median':>8}{'max':>8}{'ratio':>7}"
        f"{'cpu':>9}{'median':>8}{'max':>8}{'ratio':>7}",
    ]
    for name, rows in report["workloads"].items():
        for app_name, row in rows.items():
            w, c = row["wall_us"], row["cpu_us"]
            lines.append(
                f"{name:<15}{app_name:<17}{w['min']:>8.3f}{w['median']:>8.3f}{w['max']:>8.3f}{row['ratio_wall']:>7.3f}"
                f"{c['min']:>9.3f}{c['median']:>8.3f}{c['max']:>8.3f}{row['ratio_cpu']:>7.3f}"
            )
    for name, app_names in report["skipped"].items():
        lines.append(f"{name:<15}skipped: {', '.join(app_names)} not available yet (see METRICS_APP)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """The command line (``python -m benchmarks.inproc --help``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inproc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated, of: " + ", ".join(WORKLOADS))
    parser.add_argument("--apps", default=None, help="comma-separated app names (default: every app of a workload)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats of every app (default 7)")
    parser.add_argument("--n", type=int, default=5000, help="echo messages per run (default 5000)")
    parser.add_argument("--members", type=int, default=200, help="fan-out members (default 200)")
    parser.add_argument("--k", type=int, default=50, help="fan-out messages per run (default 50)")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH ('-': stdout)")
    parser.add_argument(
        "--profile",
        metavar="PREFIX",
        help="instead of timing, profile the timed part with cProfile: PREFIX.<workload>.<app>.pstats",
    )
    args = parser.parse_args(argv)
    names = [w for w in args.workloads.split(",") if w]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(unknown)}")
    if args.profile:
        chosen = args.apps.split(",") if args.apps else sorted({a for w in names for a in WORKLOADS[w].apps})
        profile(names, chosen, args.profile, n=args.n, members=args.members, k=args.k)
        return
    report = run(
        names,
        repeats=args.repeats,
        n=args.n,
        members=args.members,
        k=args.k,
        apps=args.apps.split(",") if args.apps else None,
    )
    if args.json == "-":
        json.dump(report, sys.stdout)
        print()
        return
    print(_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
