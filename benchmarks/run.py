"""Run every benchmark workload for every app in interleaved rounds and print medians and ratios.

From the repository root, with the benchmark venv (see ``benchmarks/README.md``)::

    /tmp/qbench/bin/python -m benchmarks.run --rounds 3
    /tmp/qbench/bin/python -m benchmarks.run --rounds 3 --ws-impl websockets,websockets-sansio,wsproto
    /tmp/qbench/bin/python -m benchmarks.run --quick --json out.json

Each round runs every (``--ws`` implementation, app) pair once, in an order rotated from round
to round so drift on a shared machine spreads evenly. Servers are ``uvicorn`` pinned to
``--server-cpu`` (0); the load generator runs pinned to ``--client-cpu`` (1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from importlib import metadata
from typing import Any

from benchmarks import memory
from benchmarks.server import APPS, ROOT, SERVERS, Server, raise_fd_limit, taskset

__all__ = ["main"]

WORKLOADS = ("echo", "fanout", "slow", "memory", "testclient")
FULL = {
    "echo_seconds": 3.0,
    "echo_warmup": 1.0,
    "fan_members": 500,
    "fan_messages": 100,
    "slow_readers": 50,
    "slow_messages": 2000,
    "slow_size": 4096,
    "slow_seconds": 8.0,
    "mem_counts": (5000, 10000),
    "tc_n": (100, 1000),
}
QUICK = {
    "echo_seconds": 1.0,
    "echo_warmup": 0.3,
    "fan_members": 100,
    "fan_messages": 20,
    "slow_readers": 10,
    "slow_messages": 1500,
    "slow_size": 4096,
    "slow_seconds": 4.0,
    "mem_counts": (1000,),
    "tc_n": (100,),
}


def _load(args: list[str], cpu: int | None, timeout: float = 180) -> dict[str, Any]:
    cmd = [*taskset(cpu), sys.executable, "-m", "benchmarks.loadgen", *args]
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout}s"}
    try:
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
    except (ValueError, IndexError):
        return {"error": (out.stderr or out.stdout).strip()[-500:]}


def run_app(
    app: str,
    ws: str | None,
    workloads: set[str],
    p: dict[str, Any],
    cpus: tuple[int, int],
    slow_ping: float | None,
    server: str = "uvicorn",
) -> dict[str, Any]:
    """One round of every server workload for one app under one server (and ``--ws`` implementation)."""
    server_cpu, client_cpu = cpus
    r: dict[str, Any] = {}
    if workloads & {"echo", "fanout"}:
        with Server(app, ws=ws, cpu=server_cpu, server=server) as srv:
            if "echo" in workloads:
                for conns in (1, 50):
                    r[f"echo{conns}"] = _load(
                        [
                            "echo",
                            srv.url + "/ws",
                            "--conns",
                            str(conns),
                            "--seconds",
                            str(p["echo_seconds"]),
                            "--warmup",
                            str(p["echo_warmup"]),
                            "--server-pid",
                            str(srv.pid),
                        ],
                        client_cpu,
                    )
            if "fanout" in workloads:
                r["fanout"] = _load(
                    [
                        "fanout",
                        srv.url + "/room",
                        "--conns",
                        str(p["fan_members"]),
                        "--messages",
                        str(p["fan_messages"]),
                        "--server-pid",
                        str(srv.pid),
                    ],
                    client_cpu,
                )
            r["peak_rss_mb"] = round((srv.peak_rss_kb() or 0) / 1024, 1)
    if "slow" in workloads:
        ping = [] if slow_ping is None else ["--ws-ping-interval", str(slow_ping), "--ws-ping-timeout", str(slow_ping)]
        for key, flags in (("slow", []), ("slow_base", ["--no-stuck"])):
            with Server(app, ws=ws, cpu=server_cpu, extra=ping) as srv:
                r[key] = _load(
                    [
                        "slow",
                        srv.url + "/room",
                        "--conns",
                        str(p["slow_readers"]),
                        "--messages",
                        str(p["slow_messages"]),
                        "--size",
                        str(p["slow_size"]),
                        "--seconds",
                        str(p["slow_seconds"]),
                        *flags,
                    ],
                    client_cpu,
                )
    if "memory" in workloads:
        r["memory"] = memory.measure(app, p["mem_counts"], ws=ws, server_cpu=server_cpu, client_cpu=client_cpu)
    return r


def run_testclient(p: dict[str, Any], cpu: int) -> dict[str, Any]:
    cmd = [
        *taskset(cpu),
        sys.executable,
        "-m",
        "benchmarks.testclient_bench",
        "--rounds",
        "1",
        "--n",
        ",".join(map(str, p["tc_n"])),
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    try:
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
    except (ValueError, IndexError):
        return {"error": (out.stderr or out.stdout).strip()[-500:]}


# -- summarising --------------------------------------------------------------------------

Getter = Callable[[dict[str, Any]], Any]


def _get(*path: str) -> Getter:
    def get(r: dict[str, Any]) -> Any:
        for key in path:
            if not isinstance(r, dict) or key not in r:
                return None
            r = r[key]
        return r

    return get


def _kept(r: dict[str, Any]) -> Any:
    """The readers' delivery rate with a stuck member, as % of the same workload without one."""
    with_stuck, base = _get("slow", "deliveries_per_s")(r), _get("slow_base", "deliveries_per_s")(r)
    if not isinstance(with_stuck, (int, float)) or not isinstance(base, (int, float)) or not base:
        return None
    return round(100 * with_stuck / base, 1)


def _metrics(p: dict[str, Any]) -> list[tuple[str, Getter, str]]:
    """(column, getter, kind).

    ``hi``/``lo``: numeric, higher/lower is better (median; ratios); ``info``: numeric, median only;
    ``flag``: how many rounds it was true; ``mode``: the most common value.
    """
    big = str(max(p["mem_counts"]))
    cols = [
        ("echo1 msg/s", _get("echo1", "msgs_per_s"), "hi"),
        ("echo50 msg/s", _get("echo50", "msgs_per_s"), "hi"),
        ("echo50 p50 ms", _get("echo50", "p50_ms"), "lo"),
        ("echo50 p99 ms", _get("echo50", "p99_ms"), "lo"),
        ("echo50 cpu us/msg", _get("echo50", "server_cpu_us"), "lo"),
        (f"fan{p['fan_members']} deliv/s", _get("fanout", "deliveries_per_s"), "hi"),
        ("fan cpu us/deliv", _get("fanout", "server_cpu_us"), "lo"),
        ("fan ok", _get("fanout", "ok"), "flag"),
        ("slow deliv/s", _get("slow", "deliveries_per_s"), "hi"),
        ("slow keep %", _kept, "hi"),
        ("slow complete", _get("slow", "complete"), "flag"),
        ("slow stall ms", _get("slow", "max_stall_ms"), "lo"),
        ("stuck frames", _get("slow", "stuck_received"), "info"),
        ("stuck code", _get("slow", "stuck_close_code"), "mode"),
    ]
    cols += [(f"KB/conn@{n}", _get("memory", str(n), "kb_per_conn"), "lo") for n in p["mem_counts"]]
    cols.append((f"held {big}", _get("memory", big, "all_held"), "flag"))
    return cols


def summarise(runs: list[dict[str, Any]], p: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, get, kind in _metrics(p):
        values = [get(r) for r in runs]
        present = [v for v in values if v is not None]
        if kind == "flag":
            row[name] = f"{sum(1 for v in present if v)}/{len(values)}" if present else None
        elif kind == "mode":
            row[name] = Counter(values).most_common(1)[0][0] if values else None
        else:
            row[name] = statistics.median(present) if present else None
    return row


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _table(title: str, rows: dict[str, dict[str, Any]], columns: list[str]) -> str:
    cells = [["app", *columns]] + [[app, *(_fmt(r.get(c)) for c in columns)] for app, r in rows.items()]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [title] + [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in cells
    ]
    lines.insert(2, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def ratios(rows: dict[str, dict[str, Any]], base: str, p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if base not in rows:
        return out
    for app, row in rows.items():
        out[app] = {}
        for name, _, kind in _metrics(p):
            a, b = row.get(name), rows[base].get(name)
            if kind in ("hi", "lo") and isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
                out[app][name] = round(a / b, 3)
    return out


SPREAD_COLUMNS = ("echo50 msg/s", "echo50 cpu us/msg", "fan cpu us/deliv")


def round_ratios(
    runs: dict[tuple[str | None, str], list[dict[str, Any]]], impl: str | None, apps: list[str], p: dict[str, Any]
) -> list[str]:
    """The spread of each app's ratio to raw ASGI, taken round by round (the rounds are interleaved)."""
    if "raw" not in apps:
        return []
    getters = {name: get for name, get, _ in _metrics(p)}
    columns = [*SPREAD_COLUMNS, f"fan{p['fan_members']} deliv/s"]
    lines = []
    for app in apps:
        if app == "raw":
            continue
        for column in columns:
            get = getters[column]
            pairs = zip(runs[(impl, app)], runs[(impl, "raw")], strict=True)
            ratios_ = sorted(get(a) / get(b) for a, b in pairs if get(a) is not None and get(b))
            if ratios_:
                low, mid, high = ratios_[0], statistics.median(ratios_), ratios_[-1]
                lines.append(f"{app:9} {column:18} {low:.3f} / {mid:.3f} / {high:.3f}  ({len(ratios_)} rounds)")
    return lines


def targets(
    rows: dict[str, dict[str, Any]], tc: dict[str, Any] | None, p: dict[str, Any]
) -> list[tuple[str, bool | None, str]]:
    """The issue's targets for QakeAPI, checked against this run's medians."""
    q, raw, st = rows.get("qakeapi", {}), rows.get("raw", {}), rows.get("starlette", {})
    fan = f"fan{p['fan_members']} deliv/s"
    kb = f"KB/conn@{max(p['mem_counts'])}"

    def at_least(col: str, base: dict[str, Any], factor: float) -> tuple[bool | None, str]:
        a, b = q.get(col), base.get(col)
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
            return None, "not measured"
        return a >= factor * b, f"{a / b:.3f}x"

    checks: list[tuple[str, bool | None, str]] = []
    for col, label, f_raw, f_st in (("echo50 msg/s", "echo 50 conns", 0.95, 1.1), (fan, "fan-out", 0.95, 1.5)):
        ok, got = at_least(col, raw, f_raw)
        checks.append((f"{label} >= {f_raw}x raw ASGI", ok, got))
        ok, got = at_least(col, st, f_st)
        checks.append((f"{label} >= {f_st}x Starlette", ok, got))
    a, b = q.get(kb), raw.get(kb)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        checks.append((f"memory per idle conn <= raw + 2 KB ({kb})", a <= b + 2, f"{a - b:+.2f} KB"))
    else:
        checks.append(("memory per idle conn <= raw + 2 KB", None, "not measured"))
    kept = q.get("slow keep %")
    checks.append(
        (
            "slow consumer: the other members keep >= 95% of their delivery rate",
            None if not isinstance(kept, (int, float)) else kept >= 95,
            "not measured" if kept is None else f"{kept}%",
        )
    )
    code = q.get("stuck code")
    closed = None if code is None else code == 1008
    checks.append(("slow consumer: the stuck member is closed with 1008", closed, str(code)))
    n = str(max(p["tc_n"]))
    speed = (tc or {}).get("speedup_vs_starlette", {}).get(n, {}).get("total_s")
    checks.append(
        (
            f"TestClient {n}-conn workload >= 3x Starlette's",
            None if speed is None else speed >= 3,
            "not measured" if speed is None else f"{speed:.1f}x",
        )
    )
    return checks


def _tc_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"error": runs[0].get("error") if runs else "not run"}
    out: dict[str, Any] = {}
    for client in ("qakeapi", "starlette", "qakeapi_client_on_starlette"):
        for n in good[0][client]:
            for k in ("total_s", "messages_s"):
                out.setdefault(client, {}).setdefault(n, {})[k] = statistics.median(r[client][n][k] for r in good)
    for n in out["qakeapi"]:
        q, s = out["qakeapi"][n], out["starlette"][n]
        out.setdefault("speedup_vs_starlette", {})[n] = {k: round(s[k] / q[k], 2) for k in ("total_s", "messages_s")}
    return out


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("qakeapi", "uvicorn", "starlette", "fastapi", "websockets", "wsproto", "picows", "uvloop"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "-"
    return out


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "qakeapi"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() + ("+dirty qakeapi/" if dirty.stdout.strip() else "")


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="short runs and small sizes: a smoke test")
    ap.add_argument("--apps", default=",".join(APPS), help=f"comma-separated subset of {', '.join(APPS)}")
    ap.add_argument("--ws-impl", default="", help="comma-separated uvicorn --ws implementations (default: uvicorn's)")
    ap.add_argument(
        "--workloads", default=",".join(WORKLOADS), help=f"comma-separated subset of {', '.join(WORKLOADS)}"
    )
    ap.add_argument(
        "--slow-ping",
        type=float,
        default=None,
        help="slow workload: uvicorn --ws-ping-interval/--ws-ping-timeout (default: uvicorn's 20 s)",
    )
    ap.add_argument(
        "--server",
        default="uvicorn",
        choices=SERVERS,
        help="the ASGI server for the echo and fan-out workloads (slow and memory need uvicorn)",
    )
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--json", metavar="PATH", help="also write every run and the summary here")
    a = ap.parse_args(argv)
    p = QUICK if a.quick else FULL
    apps = [x for x in a.apps.split(",") if x]
    unknown = [x for x in apps if x not in APPS]
    if unknown:
        ap.error(f"unknown app(s) {unknown}; choose from {list(APPS)}")
    impls: list[str | None] = [x for x in a.ws_impl.split(",") if x] or [None]
    workloads = {w for w in a.workloads.split(",") if w}
    if a.server != "uvicorn" and workloads - {"echo", "fanout"}:
        ap.error("--server other than uvicorn runs only the echo and fanout workloads")
    cpus = (a.server_cpu, a.client_cpu)
    raise_fd_limit()

    meta = {
        "versions": _versions(),
        "commit": _commit(),
        "cpus": os.cpu_count(),
        "loadavg_start": _loadavg(),
        "params": p,
        "rounds": a.rounds,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(
        f"# commit {meta['commit']}  {meta['versions']}  cpus={meta['cpus']}  loadavg={meta['loadavg_start']}",
        flush=True,
    )
    configs = [(impl, app) for impl in impls for app in apps]
    runs: dict[tuple[str | None, str], list[dict[str, Any]]] = {c: [] for c in configs}
    tc_runs: list[dict[str, Any]] = []
    for rnd in range(a.rounds):
        shift = rnd % len(configs)
        for impl, app in configs[shift:] + configs[:shift]:
            t = time.perf_counter()
            try:
                r = run_app(APPS[app], impl, workloads, p, cpus, a.slow_ping, a.server)
            except RuntimeError as exc:
                r = {"error": str(exc)}
            r["loadavg"] = _loadavg()
            runs[(impl, app)].append(r)
            print(
                f"# round {rnd + 1}/{a.rounds} {app:9} ws={impl or 'default'}: {time.perf_counter() - t:.0f}s "
                f"loadavg {r['loadavg']}",
                file=sys.stderr,
                flush=True,
            )
        if "testclient" in workloads:
            tc_runs.append(run_testclient(p, a.server_cpu))

    tc = _tc_summary(tc_runs) if tc_runs else None
    summary: dict[str, Any] = {}
    for impl in impls:
        label = f"{impl or 'default (uvicorn auto)'}" if a.server == "uvicorn" else a.server
        rows = {app: summarise(runs[(impl, app)], p) for app in apps}
        cols = [name for name, _, _ in _metrics(p) if any(r.get(name) is not None for r in rows.values())]
        where = f"uvicorn --ws {label}" if a.server == "uvicorn" else label
        print("\n" + _table(f"== medians of {a.rounds} round(s), {where}", rows, cols))
        section: dict[str, Any] = {"medians": rows}
        for base in ("raw", "starlette"):
            rat = ratios(rows, base, p)
            if rat:
                rcols = [c for c in cols if any(c in r for r in rat.values())]
                print("\n" + _table(f"-- ratio to {base} (app / {base}; for ms and KB lower is better)", rat, rcols))
                section[f"ratio_to_{base}"] = rat
        spread = round_ratios(runs, impl, apps, p)
        if spread:
            print("\n-- per-round ratio to raw (rounds are interleaved): min / median / max")
            for line in spread:
                print("  " + line)
            section["spread"] = spread
        if "qakeapi" in rows:
            checks = targets(rows, tc, p)
            section["targets"] = [{"target": t, "met": ok, "value": v} for t, ok, v in checks]
            print(f"\n-- QakeAPI targets (--ws {label})")
            for target, ok, value in checks:
                print(f"  {'PASS' if ok else 'n/a ' if ok is None else 'FAIL'}  {target}: {value}")
        errors = [(app, r["error"]) for app in apps for r in runs[(impl, app)] if "error" in r]
        for app, err in errors:
            print(f"  ! {app}: {err[:300]}")
        summary[label] = section
    if tc is not None:
        print("\n== TestClient workload (guide's Performance Testing), medians in seconds")
        for client, by_n in tc.items():
            line = "  ".join(f"N={n}: {v}" for n, v in by_n.items()) if isinstance(by_n, dict) else str(by_n)
            print(f"  {client:28} {line}")
    meta["loadavg_end"] = _loadavg()
    print(f"\n# loadavg at end {meta['loadavg_end']} (2 cores: other processes skew absolute numbers; compare ratios)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {
                    "meta": meta,
                    "summary": summary,
                    "testclient": tc,
                    "runs": {f"{impl or 'default'}/{app}": rs for (impl, app), rs in runs.items()},
                    "testclient_runs": tc_runs,
                },
                f,
                indent=2,
            )
        print(f"# wrote {a.json}")


if __name__ == "__main__":
    main()
