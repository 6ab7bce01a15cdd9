"""``import qakeapi`` works with no extras installed, and a missing extra names what to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_without(blocked: list[str], code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where importing any of ``blocked`` fails."""
    prelude = textwrap.dedent(
        f"""
        import sys
        for name in {blocked!r}:
            sys.modules[name] = None  # makes "import name" raise ImportError
        """
    )
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True)


def test_the_core_imports_without_pyjwt_redis_or_uvicorn() -> None:
    result = run_without(
        ["jwt", "redis", "uvicorn"],
        """
        import qakeapi, qakeapi.testing, qakeapi.core.clustering, qakeapi.core.broadcast
        from qakeapi.core.clustering import create_clustered_manager
        from qakeapi.core.websockets import WebSocketHandler
        create_clustered_manager(WebSocketHandler(), redis_url="memory://", node_id="n")
        print("ok")
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_security_without_pyjwt_says_which_extra_to_install() -> None:
    result = run_without(["jwt"], "import qakeapi.security.websocket_auth")
    assert result.returncode == 1
    assert "MissingDependencyError: PyJWT is not installed; install it with: pip install 'qakeapi-realtime[jwt]'" in (
        result.stderr
    )


def test_a_redis_manager_without_redis_py_says_which_extra_to_install() -> None:
    result = run_without(
        ["redis", "redis.asyncio"],
        """
        import asyncio
        from qakeapi.core.broadcast import create_backend
        backend = create_backend("redis://127.0.0.1:6379")  # creating it needs no redis-py
        try:
            asyncio.run(backend.connect())
        except ImportError as exc:
            print(type(exc).__name__, exc)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "MissingDependencyError redis is not installed; install it with: pip install 'qakeapi-realtime[redis]'"
    )


def test_without_prometheus_client_the_core_counts_and_exposing_metrics_names_the_extra() -> None:
    result = run_without(
        ["prometheus_client"],
        """
        import asyncio
        from qakeapi import Application, WebSocketHandler
        from qakeapi.core.counters import counters
        from qakeapi.testing import TestClient

        app = Application()
        handler = WebSocketHandler()

        @app.websocket("/ws")
        async def endpoint(websocket):
            await handler.handle_connection(websocket)

        async def main():
            async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
                await ws.send_json("hi")
            print(counters.received)

        asyncio.run(main())
        try:
            app.expose_metrics()
        except ImportError as exc:
            print(type(exc).__name__, exc)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "1",
        "MissingDependencyError prometheus-client is not installed; install it with: "
        "pip install 'qakeapi-realtime[metrics]'",
    ]
