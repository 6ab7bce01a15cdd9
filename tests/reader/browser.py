"""HTML pages of the docs in headless Chromium, against the servers their pages document.

:data:`SCENARIOS` names the scenario for each HTML file a page tells the reader to save; the
docs harness and the reader tests both look it up there.

The guide's HTML chat client runs in two pages against the guide's own chat server.

The page connects to ``ws://localhost:8000/ws``; :func:`tests.e2e.browser.launch` maps
``localhost:8000`` to the port the server really listens on, so the page runs unchanged.
The chat server of the guide broadcasts ``user_joined`` to every member of the room, the
joiner included, so each page sees its own join and those after it.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from playwright.async_api import Page, expect

from tests.e2e.browser import TIMEOUT_MS, ChatScenarioError, PageLog, launch
from tests.e2e.servers import Server

__all__ = ["SCENARIOS", "run_guide_chat", "run_login_page"]

JOINED = re.compile(r"^System: User (\d+) joined$")


async def run_guide_chat(page_file: Path, server: Server, out_dir: Path) -> dict[str, Path]:
    """Open ``page_file`` twice, chat both ways, close one page and watch the other see it leave.

    Returns:
        The screenshots taken.

    Raises:
        ChatScenarioError: A step failed; the message has the pages' text, console output and
            errors, the screenshots and the server's output.
    """
    browser, playwright = await launch(server)
    logs = [PageLog("page one"), PageLog("page two")]
    pages: list[Page] = []
    shots: dict[str, Path] = {}
    try:
        for log in logs:
            page = await browser.new_page()
            log.attach(page)
            pages.append(page)
        one, two = pages
        await one.goto(page_file.as_uri())
        await expect(one.locator("#messages")).to_contain_text("System: Welcome to the chat!", timeout=TIMEOUT_MS)
        await expect(one.locator("#messages div", has_text=JOINED)).to_have_count(1, timeout=TIMEOUT_MS)
        await two.goto(page_file.as_uri())
        await expect(two.locator("#messages")).to_contain_text("System: Welcome to the chat!", timeout=TIMEOUT_MS)
        own_join = two.locator("#messages div", has_text=JOINED)
        await expect(own_join).to_have_count(1, timeout=TIMEOUT_MS)
        match = JOINED.match(await own_join.inner_text())
        assert match is not None
        two_id = match[1]
        await expect(one.locator("#messages div", has_text=f"System: User {two_id} joined")).to_have_count(
            1, timeout=TIMEOUT_MS
        )

        await one.fill("#message", "Hello from page one")
        await one.press("#message", "Enter")
        for page in pages:
            said = page.locator("#messages div", has_text=re.compile(r"^\d+: Hello from page one$"))
            await expect(said).to_have_count(1, timeout=TIMEOUT_MS)
        assert await one.input_value("#message") == "", "the input was not cleared after sending"

        await two.fill("#message", "Hi from page two")
        await two.click("button")
        for page in pages:
            said = page.locator("#messages div", has_text=f"{two_id}: Hi from page two")
            await expect(said).to_have_count(1, timeout=TIMEOUT_MS)

        shots["one"] = out_dir / "guide-chat-page-one.png"
        shots["two"] = out_dir / "guide-chat-page-two.png"
        await one.screenshot(path=str(shots["one"]))
        await two.screenshot(path=str(shots["two"]))

        await two.close()
        left = one.locator("#messages div", has_text=f"System: User {two_id} left")
        await expect(left).to_have_count(1, timeout=TIMEOUT_MS)
        errors = [line for log in logs for line in log.console if line.startswith("error")]
        assert not errors, f"console errors: {errors}"
        assert not logs[0].errors, "page errors on page one"
        assert not logs[1].errors, "page errors on page two"
        return shots
    except AssertionError as exc:
        details = [str(exc)]
        for name, page in zip(("one", "two"), pages, strict=False):
            if not page.is_closed():
                path = out_dir / f"failure-page-{name}.png"
                await page.screenshot(path=str(path))
                shots[f"failure-{name}"] = path
                details.append(f"[page {name}] text:\n{await page.inner_text('#messages')}")
        details += [log.report() for log in logs]
        details.append("screenshots: " + ", ".join(str(path) for path in shots.values()))
        details.append("server log:\n" + server.output()[-3000:])
        raise ChatScenarioError("\n".join(details)) from exc
    finally:
        await browser.close()
        await playwright.stop()


async def run_login_page(page_file: Path, server: Server, out_dir: Path) -> dict[str, Path]:
    """The authentication how-to's login page, served by its app at ``/``: a wrong password, then two users.

    ``page_file`` is the saved page; the app serves that same file, which this checks.
    """
    saved = await asyncio.to_thread(page_file.read_text, encoding="utf-8")
    browser, playwright = await launch(server)
    logs: list[PageLog] = []
    shots: dict[str, Path] = {}
    try:
        for name, password in (("ann", "correct horse"), ("bob", "battery staple")):
            log = PageLog(name)
            logs.append(log)
            page = await browser.new_page()
            log.attach(page)
            response = await page.goto(f"{server.http_url}/")
            assert response is not None
            assert await response.text() == saved, "the app does not serve the saved page"
            await page.fill("#name", name)
            await page.fill("#password", "wrong")
            await page.click("button")
            await expect(page.locator("#status")).to_have_text(
                "Login failed: wrong name or password", timeout=TIMEOUT_MS
            )
            await page.fill("#password", password)
            await page.click("button")
            await expect(page.locator("#status")).to_have_text(f"Welcome, {name}!", timeout=TIMEOUT_MS)
            shots[name] = out_dir / f"login-{name}.png"
            await page.screenshot(path=str(shots[name]))
        for log in logs:
            assert not log.errors, log.report()
            unexpected = [line for line in log.console if line.startswith("error") and not _expected_failure(line)]
            assert not unexpected, log.report()
        if any("status of 404" in line for log in logs for line in log.console):
            assert '"GET /favicon.ico HTTP/1.1" 404' in server.output(), "a 404 other than the favicon's"
        assert "eyJ" not in server.output(), "a token reached the server's log"
        return shots
    except AssertionError as exc:
        details = [str(exc), *(log.report() for log in logs), "server log:\n" + server.output()[-3000:]]
        raise ChatScenarioError("\n".join(details)) from exc
    finally:
        await browser.close()
        await playwright.stop()


def _expected_failure(line: str) -> bool:
    """The wrong-password 401 and the favicon 404 (checked against the server log) are expected."""
    return "Failed to load resource" in line and ("status of 401" in line or "status of 404" in line)


SCENARIOS = {"chat/chat.html": run_guide_chat, "login/index.html": run_login_page}
"""The browser scenario for each HTML file the docs have the reader save."""
