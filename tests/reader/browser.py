"""The guide's HTML chat client in two headless Chromium pages against the guide's own chat server.

The page connects to ``ws://localhost:8000/ws``; :func:`tests.e2e.browser.launch` maps
``localhost:8000`` to the port the server really listens on, so the page runs unchanged.
The chat server of the guide broadcasts ``user_joined`` to every member of the room, the
joiner included, so each page sees its own join and those after it.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Page, expect

from tests.e2e.browser import TIMEOUT_MS, ChatScenarioError, PageLog, launch
from tests.e2e.servers import Server

__all__ = ["run_guide_chat"]

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
