"""``qakeapi.js`` in headless Chromium against real uvicorn processes (the demo chat is its application).

Two demo nodes on a private Redis behave as one chat; a page whose node is killed and restarted
gets every message said meanwhile on the other node, once, in order, without a reload; a node
that dies takes its members out of the others' lists; a token is refreshed in band before it
expires; a user who signs out is not reconnected; and the client's own rules (backoff bounds,
duplicate suppression, recovery outcomes, close codes) hold in the browser.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Playwright, async_playwright, expect

from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, PageLog
from tests.e2e.conftest import Serve
from tests.e2e.servers import Server
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RULES = Path(__file__).with_name("client_rules.js")
SILENCE = Path(__file__).with_name("client_silence.js")
RECONNECT_TIMEOUT_MS = 40_000  # a node restarts, then the page's backoff (at most 10 s a step) runs out
NODE_DOWN_TIMEOUT_MS = 20_000  # the cluster's node_timeout is 5 s


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    playwright: Playwright = await async_playwright().start()
    chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        await chromium.close()
        await playwright.stop()


async def open_page(browser: Browser, server: Server, log: PageLog) -> Page:
    context = await browser.new_context()
    page = await context.new_page()
    log.attach(page)
    await page.goto(server.http_url + "/")
    return page


async def join_as(page: Page, name: str) -> None:
    await page.fill("#name", name)
    await page.click("#join")
    await expect(page.locator("#status")).to_have_text("online", timeout=TIMEOUT_MS)
    await expect(page.locator("#members li.me")).to_have_text(f"{name} (you)", timeout=TIMEOUT_MS)


async def say(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")
    await expect(page.locator("#text")).to_have_value("", timeout=TIMEOUT_MS)


async def said(page: Page) -> list[str]:
    texts: list[str] = await page.locator("#messages li.message .text").all_inner_texts()
    return texts


async def record_events(page: Page) -> None:
    """Count the client's and the current room's events in ``window.events`` (from now on)."""
    await page.evaluate(
        """() => {
          window.events = {};
          const count = (name, detail) => { (window.events[name] ||= []).push(detail); };
          const client = window.demo.client;
          for (const name of ["connected", "disconnected", "auth", "error"]) {
            client.addEventListener(name, ({ detail }) => count(name, name === "error"
              ? { kind: detail.kind, message: detail.error.message } : detail));
          }
          const room = window.demo.current;
          for (const name of ["recovered", "unrecovered"]) {
            room.addEventListener(name, ({ detail }) => count(name, detail));
          }
        }"""
    )


async def events(page: Page, name: str) -> list[Any]:
    found: list[Any] = await page.evaluate(f"window.events[{name!r}] || []")
    return found


async def client_url(page: Page) -> str:
    """The URL of ``qakeapi.js`` in the page's import map."""
    importmap = "document.querySelector('script[type=importmap]').textContent"
    url = await page.evaluate(f"JSON.parse({importmap}).imports.qakeapi")
    assert isinstance(url, str)
    assert re.fullmatch(r"/qakeapi/qakeapi-[0-9.]+-[0-9a-f]{12}\.js", url), url
    return url


def unexpected_errors(log: PageLog) -> list[str]:
    """Console and page errors, but the failed attempts (socket and token) while a server was down."""
    expected = ("WebSocket connection to", "net::ERR_CONNECTION_REFUSED")
    errors = [line for line in log.console if line.startswith("error") and not any(e in line for e in expected)]
    return errors + log.errors


def cluster_env(redis_server: RedisServer, node: str, **extra: str) -> dict[str, str]:
    return {
        "QAKEAPI_REDIS_URL": redis_server.url,
        "QAKEAPI_NODE_ID": node,
        "QAKEAPI_SECRET_KEY": "demo-test-key-" + "k" * 32,
        "QAKEAPI_CLUSTER_SECRET": "demo-cluster-secret-0123456789",
        **extra,
    }


async def test_two_nodes_are_one_chat_and_a_page_recovers_across_a_node_kill_without_a_reload(
    browser: Browser, serve: Serve, redis_server: RedisServer
) -> None:
    first = serve("demo_app", env=cluster_env(redis_server, "demo-1"))
    second = serve("demo_app", env=cluster_env(redis_server, "demo-2"))
    logs = [PageLog("ada on demo-1"), PageLog("bob on demo-2")]
    ada = await open_page(browser, first, logs[0])
    bob = await open_page(browser, second, logs[1])
    await join_as(ada, "Ada")
    await join_as(bob, "Bob")

    # One chat: each page sees the other's member and message.
    for page in (ada, bob):
        await expect(page.locator("#members li")).to_have_count(2, timeout=TIMEOUT_MS)
    await say(ada, "hello from node one")
    await say(bob, "hello from node two")
    for page in (ada, bob):
        await expect(page.locator("#messages li.message")).to_have_count(2, timeout=TIMEOUT_MS)
    assert await said(bob) == ["hello from node one", "hello from node two"]

    # Bob's node is killed: Ada's list loses Bob (node down), Ada goes on talking.
    await bob.evaluate("window.sameDocument = true")
    await record_events(bob)
    second.process.kill()
    second.process.wait()
    await expect(ada.locator("#members li")).to_have_count(1, timeout=NODE_DOWN_TIMEOUT_MS)
    await expect(ada.locator("#members li.me")).to_have_text("Ada (you)")
    meanwhile = [f"said while node two was down {n}" for n in range(1, 6)]
    for text in meanwhile:
        await say(ada, text)
    await expect(bob.locator("#status")).not_to_have_text("online", timeout=TIMEOUT_MS)

    # It comes back on the same port: Bob's page reconnects and shows each missed message once, in order.
    serve("demo_app", env=cluster_env(redis_server, "demo-2"), port=second.port)
    await expect(bob.locator("#status")).to_have_text("online", timeout=RECONNECT_TIMEOUT_MS)
    expected = ["hello from node one", "hello from node two", *meanwhile]
    await expect(bob.locator("#messages li.message")).to_have_count(len(expected), timeout=TIMEOUT_MS)
    assert await said(bob) == expected
    assert await bob.evaluate("window.sameDocument") is True, "the page was reloaded"
    recovered = await events(bob, "recovered")
    assert [event["replayed"] for event in recovered] == [len(meanwhile)]
    assert await events(bob, "unrecovered") == []
    for page in (ada, bob):
        await expect(page.locator("#members li")).to_have_count(2, timeout=TIMEOUT_MS)

    # And the chat goes on both ways.
    await say(bob, "back on node two")
    await expect(ada.locator("#messages li.message .text").last).to_have_text("back on node two", timeout=TIMEOUT_MS)
    assert (await said(ada)).count("back on node two") == 1
    for log in logs:
        assert unexpected_errors(log) == [], log.report()


async def test_a_token_is_refreshed_in_band_before_it_expires(browser: Browser, serve: Serve) -> None:
    server = serve("demo_app", env={"QAKEAPI_TOKEN_EXPIRY": "3", "QAKEAPI_EXPIRY_GRACE": "1"})
    log = PageLog("ada")
    page = await open_page(browser, server, log)
    await join_as(page, "Ada")
    await record_events(page)
    first_token = await page.evaluate("window.demo.client.token")
    # Three refreshes take longer than two lifetimes of a token: without them it would be closed (4001).
    await page.wait_for_function("(window.events.auth || []).length >= 3", timeout=15_000)
    assert await events(page, "disconnected") == []
    assert await events(page, "connected") == []
    assert await page.evaluate("window.demo.client.state") == "connected"
    assert await page.evaluate("window.demo.client.token") != first_token
    assert all(event["user"] == "Ada" for event in await events(page, "auth"))
    await say(page, "still here")
    await expect(page.locator("#messages li.message .text")).to_have_text(["still here"], timeout=TIMEOUT_MS)
    output = server.output()
    assert output.count('"WebSocket /chat" [accepted]') == 1, output  # one connection all along
    assert first_token not in output
    assert unexpected_errors(log) == [], log.report()


async def test_a_user_who_signs_out_is_not_reconnected(browser: Browser, serve: Serve) -> None:
    server = serve("demo_app")
    logs = [PageLog("ada"), PageLog("ada, second tab")]
    page = await open_page(browser, server, logs[0])
    other = await open_page(browser, server, logs[1])
    await join_as(page, "Ada")
    await join_as(other, "Ada")
    await record_events(page)
    await record_events(other)
    await page.click("#signout")
    for tab in (page, other):  # every page of the user is closed with 4003, and stays closed
        await expect(tab.locator("#status")).to_have_text("signed out", timeout=TIMEOUT_MS)
        disconnected = await events(tab, "disconnected")
        assert len(disconnected) == 1, disconnected
        [closed] = disconnected
        assert closed["code"] == 4003
        assert closed["reconnect"] is False
        assert closed["delay"] is None
        assert await tab.evaluate("window.demo.client._timers.reconnect") is None
        assert await tab.evaluate("window.demo.client.wanted") is False
        errors = await events(tab, "error")
        assert [e["kind"] for e in errors] == ["closed"], errors
        await expect(tab.locator("#messages li.system.error")).to_contain_text(["not reconnecting"])
    assert "user Ada: closing 2 connection(s) on this node" in server.output()


async def test_the_client_rules_in_the_browser(browser: Browser, serve: Serve) -> None:
    server = serve("demo_app")
    page = await (await browser.new_context()).new_page()
    await page.goto(server.http_url + "/")
    result = await page.evaluate(RULES.read_text(encoding="utf-8"), await client_url(page))
    assert result["low"] == [250, 500, 1000, 2000, 4000, 4000]
    assert result["high"] == [500, 1000, 2000, 4000, 8000, 8000]
    assert result["seen"] == ["a:1", "a:2", "a:5", "b:1"]
    assert result["gaps"] == [[3, 4]]
    assert result["position"] == {"epoch": "b", "offset": 1}
    assert result["outcomes"] == [["recovered", 3], ["unrecovered", "another epoch", 9]]
    assert result["afterUnrecovered"] == {"epoch": "c", "offset": 9}
    assert result["join"] == {"client": "x", "type": "join", "room": "general", "since": {"epoch": "c", "offset": 9}}
    assert result["members"] == ["2"]
    assert result["sent"] is False
    assert result["errors"] == ["server", "auth", "lost", "send"]
    assert result["codes"] == [1008, 4001, 4003]
    assert result["expiry"] == 123
    assert result["notJwt"] is None


async def test_offline_closes_and_online_reconnects_at_once(browser: Browser, serve: Serve) -> None:
    server = serve("demo_app")
    log = PageLog("ada")
    page = await open_page(browser, server, log)
    await join_as(page, "Ada")
    await record_events(page)
    await page.context.set_offline(True)
    await expect(page.locator("#status")).to_have_text("offline", timeout=TIMEOUT_MS)
    [closed] = await events(page, "disconnected")
    assert (closed["code"], closed["reason"], closed["reconnect"]) == (4000, "offline", False)
    assert await page.evaluate("window.demo.client._timers.reconnect") is None  # it waits for the network
    await page.context.set_offline(False)
    await expect(page.locator("#status")).to_have_text("online", timeout=TIMEOUT_MS)
    assert len(await events(page, "connected")) == 1
    await say(page, "back online")
    await expect(page.locator("#messages li.message .text")).to_have_text(["back online"], timeout=TIMEOUT_MS)


async def test_a_silent_server_is_left_and_the_client_reconnects(browser: Browser, serve: Serve) -> None:
    server = serve("demo_app")
    page = await (await browser.new_context()).new_page()
    await page.goto(server.http_url + "/")
    url = await client_url(page)
    seen = await page.evaluate(
        SILENCE.read_text(encoding="utf-8"),
        url,
    )
    assert seen["pings"] == [{"type": "ping"}]
    assert seen["errors"] == ["silence"]
    assert seen["closes"] == [[4000, True], [1000, False]]
