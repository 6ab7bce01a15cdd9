"""The live dashboard in headless Chromium against a two-node cluster: numbers move with traffic, a killed node goes.

Two ``tests.e2e.observed_app`` nodes on a private ``redis-server``; node-1's dashboard is opened
with its token in the URL's fragment. Clients join a room on both nodes and talk: the page shows
both nodes, node-1's connections, the room's members across the cluster and the messages
received growing. node-2 is killed (SIGKILL, no goodbye): it leaves the page once the cluster
declares it down (its node timeout, 5 s), and its member leaves the room. A wrong token shows
nothing. A screenshot of the page goes to the test's directory (the one in the docs was made
this way).
"""

from __future__ import annotations

import json
import re
import secrets
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

import pytest
from playwright.async_api import Page, expect
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.browser import TIMEOUT_MS, PageLog, launch
from tests.e2e.conftest import recv_json
from tests.e2e.servers import Server, uvicorn_server
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

TOKEN = secrets.token_hex(16)
DOWN_MS = 30_000  # a killed node is declared down after 5 s without a heartbeat; this only catches a hang


def start(stack: ExitStack, tmp_path: Path, redis_server: RedisServer, node: str) -> Server:
    env = {
        "QAKEAPI_NODE_ID": node,
        "QAKEAPI_REDIS_URL": redis_server.url,
        "OBSERVED_SECRET": secrets.token_hex(32),
        "OBSERVED_DASHBOARD_TOKEN": TOKEN,
    }
    return stack.enter_context(uvicorn_server("tests.e2e.observed_app:app", tmp_path, env=env))


async def join(stack: AsyncExitStack, server: Server, room: str) -> ClientConnection:
    ws = await stack.enter_async_context(connect(f"{server.ws_url}/rooms/{room}"))
    assert (await recv_json(ws))["type"] == "welcome"
    return ws


async def number(page: Page, selector: str) -> int:
    return int(await page.inner_text(selector))


async def test_the_dashboard_follows_the_cluster_live(redis_server: RedisServer, tmp_path: Path) -> None:
    with ExitStack() as servers:
        one, two = (start(servers, tmp_path, redis_server, node) for node in ("node-1", "node-2"))
        await follow(one, two, tmp_path)


async def follow(one: Server, two: Server, tmp_path: Path) -> None:
    browser, playwright = await launch(one)
    log = PageLog("dashboard")
    try:
        page = await browser.new_page()
        log.attach(page)
        await page.goto(f"http://localhost:8000/dashboard#token={TOKEN}")
        await expect(page.locator("#status")).to_have_text("live", timeout=TIMEOUT_MS)
        await expect(page.locator("#node")).to_have_text("node-1")
        nodes = page.locator("#nodes tr")
        await expect(nodes).to_have_count(2, timeout=TIMEOUT_MS)
        await expect(page.locator("#nodes")).to_contain_text("node-2")
        await expect(page.locator("#connections")).to_have_text("1")  # its own WebSocket
        await expect(page.locator("#routes")).to_contain_text("/dashboard/ws")

        async with AsyncExitStack() as stack:
            ann, bob = await join(stack, one, "lobby"), await join(stack, one, "lobby")
            cid = await join(stack, two, "lobby")
            rooms_route = page.locator("#routes tr", has_text="/rooms/{room}")
            await expect(rooms_route.locator("td").nth(1)).to_have_text("2", timeout=TIMEOUT_MS)  # node-1's
            await expect(page.locator("#connections")).to_have_text("3")
            lobby = page.locator("#rooms tr", has_text="lobby")
            await expect(lobby.locator("td").nth(1)).to_have_text("3", timeout=TIMEOUT_MS)  # cluster-wide

            before = await number(page, "#received")
            for n in range(5):
                await ann.send(json.dumps(n))
                for ws in (ann, bob, cid):
                    assert (await recv_json(ws))["data"] == n
            await expect(page.locator("#received")).to_have_text(str(before + 5), timeout=TIMEOUT_MS)
            rate = page.locator("#received-rate")
            await expect(rate).not_to_have_text("0", timeout=TIMEOUT_MS)
            await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

            two.process.kill()  # no goodbye: the cluster finds out by the missing heartbeats
            await expect(nodes).to_have_count(1, timeout=DOWN_MS)
            await expect(page.locator("#nodes")).not_to_contain_text("node-2")
            await expect(lobby.locator("td").nth(1)).to_have_text("2", timeout=DOWN_MS)

        wrong = await browser.new_page()
        await wrong.goto("http://localhost:8000/dashboard#token=not-the-token-at-all")
        await expect(wrong.locator("#status")).to_have_text("refused: wrong token", timeout=TIMEOUT_MS)
        await expect(wrong.locator("#nodes tr")).to_have_count(0)
        assert re.search(r"refused WebSocket \d+ .*wrong or missing token", one.output())
        assert TOKEN not in one.output()
        assert not log.errors, log.report()
    finally:
        await browser.close()
        await playwright.stop()
