"""The demo chat (``examples_app.demo_app``) in headless Chromium: three pages, one of them a phone.

Names, your own messages marked, rooms you switch, who is online, HTML in names and messages shown
as text (never run), and the pages reconnecting by themselves when the server restarts.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Locator, Page, expect

from tests.e2e.browser import PHONE, TIMEOUT_MS, PageLog, launch
from tests.e2e.conftest import Serve
from tests.e2e.servers import Server

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RECONNECT_TIMEOUT_MS = 30_000  # the server restarts, then the pages' backoff (at most 8 s) runs out
XSS_NAME = "<img src=x onerror=__xss=1>Bob"  # 30 characters: the name field takes 32
XSS_TEXT = "Hello <b>Bob</b> & <script>window.__xss=2</script>"


@pytest_asyncio.fixture
async def chromium(serve: Serve) -> AsyncIterator[tuple[Browser, Server]]:
    server = serve("demo_app")
    browser, playwright = await launch(server)
    try:
        yield browser, server
    finally:
        await browser.close()
        await playwright.stop()


async def open_page(browser: Browser, server: Server, log: PageLog, *, phone: bool = False) -> Page:
    context = await browser.new_context(**PHONE) if phone else await browser.new_context()
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


def message(page: Page, text: str) -> Locator:
    return page.locator("#messages li.message", has=page.locator(".text", has_text=re.compile(f"^{re.escape(text)}$")))


def unexpected_errors(log: PageLog) -> list[str]:
    """Console errors and page errors, but the failed connection attempts while the server was down."""
    errors = [line for line in log.console if line.startswith("error") and "WebSocket connection to" not in line]
    return errors + log.errors


async def test_three_pages_chat_switch_rooms_escape_html_and_survive_a_restart(
    chromium: tuple[Browser, Server], serve: Serve, tmp_path: Path
) -> None:
    browser, server = chromium
    logs = [PageLog("ada"), PageLog("bob (phone)"), PageLog("cy")]
    ada = await open_page(browser, server, logs[0])
    bob = await open_page(browser, server, logs[1], phone=True)
    cy = await open_page(browser, server, logs[2])
    try:
        await expect(ada.locator("link[rel=icon]")).to_have_attribute("href", "/static/favicon.svg")
        await join_as(ada, "Ada")
        await join_as(bob, XSS_NAME)
        await join_as(cy, "Cy")

        # Who is online, with the HTML of a name shown as text.
        for page in (ada, bob, cy):
            await expect(page.locator("#members li")).to_have_count(3, timeout=TIMEOUT_MS)
            await expect(page.locator("#members")).to_contain_text(XSS_NAME)
            await expect(page.locator("#online-count")).to_have_text("3")
        await expect(ada.locator("#messages li.system", has_text=f"{XSS_NAME} joined")).to_have_count(1)

        # Your own messages are marked; HTML in a message is text, never markup or script.
        await say(ada, XSS_TEXT)
        for page in (ada, bob, cy):
            await expect(message(page, XSS_TEXT)).to_have_count(1, timeout=TIMEOUT_MS)
        await expect(ada.locator("#messages li.message.mine .who")).to_have_text("You")
        await expect(bob.locator("#messages li.message:not(.mine) .who")).to_have_text("Ada")
        await say(bob, "Hi Ada")
        await expect(ada.locator("#messages li.message:not(.mine)")).to_have_count(1, timeout=TIMEOUT_MS)
        await expect(ada.locator("#messages li.message:not(.mine) .who")).to_have_text(XSS_NAME)
        await expect(bob.locator("#messages li.message.mine .text")).to_have_text("Hi Ada")
        for page in (ada, bob, cy):
            assert await page.locator("#messages b, #messages img, #messages script").count() == 0
            assert await page.evaluate("window.__xss") is None

        # A page opened later gets the room's recent messages.
        late = await open_page(browser, server, PageLog("late"))
        await join_as(late, "Late")
        await expect(message(late, XSS_TEXT)).to_have_count(1, timeout=TIMEOUT_MS)
        await late.context.close()

        # Switching rooms: cy goes to #random; the others see it leave, the room list counts it.
        await cy.click("#rooms button[data-room=random]")
        await expect(cy.locator("#room-title")).to_have_text("# random", timeout=TIMEOUT_MS)
        await expect(cy.locator("#members li")).to_have_count(1, timeout=TIMEOUT_MS)
        await expect(ada.locator("#members li")).to_have_count(2, timeout=TIMEOUT_MS)
        await expect(ada.locator("#messages li.system", has_text="Cy left")).to_have_count(1)
        await expect(ada.locator("#rooms button[data-room=random] .count")).to_have_text("1", timeout=TIMEOUT_MS)
        await say(ada, "only for general")
        await expect(message(bob, "only for general")).to_have_count(1, timeout=TIMEOUT_MS)
        assert await message(cy, "only for general").count() == 0

        await ada.screenshot(path=str(tmp_path / "demo-desktop.png"))
        await bob.screenshot(path=str(tmp_path / "demo-phone.png"))
        # Readable on a phone: nothing wider than the screen.
        width = await bob.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["viewport"]["width"], f"the phone page scrolls sideways ({width}px)"

        # The server restarts: every page says so, reconnects by itself and rejoins its room.
        server.stop()
        for page in (ada, bob, cy):
            await expect(page.locator("#status")).to_have_attribute(
                "data-state", re.compile("reconnecting|connecting"), timeout=TIMEOUT_MS
            )
            await expect(page.locator("#send")).to_be_disabled()
        serve("demo_app", port=server.port)
        for page in (ada, bob, cy):
            await expect(page.locator("#status")).to_have_text("online", timeout=RECONNECT_TIMEOUT_MS)
        await expect(cy.locator("#room-title")).to_have_text("# random")
        await expect(ada.locator("#members li")).to_have_count(2, timeout=TIMEOUT_MS)
        await say(bob, "back again")
        await expect(message(ada, "back again")).to_have_count(1, timeout=TIMEOUT_MS)

        for log in logs:
            assert unexpected_errors(log) == [], log.report()
    except AssertionError as exc:
        for name, page in (("ada", ada), ("bob", bob), ("cy", cy)):
            if not page.is_closed():
                await page.screenshot(path=str(tmp_path / f"failure-{name}.png"))
        reports = "\n".join(log.report() for log in logs)
        raise AssertionError(f"{exc}\n{reports}\nscreenshots: {tmp_path}") from exc
