"""Drive the guide's JavaScript chat client in headless Chromium (Debian's, through Playwright).

The page is opened from a ``file://`` URL, as a user would open a saved HTML file. It connects
to ``ws://localhost:8000/ws``; Chromium's host resolver maps ``localhost:8000`` to the port the
server under test listens on, so the block runs unchanged whatever port the test picked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, ConsoleMessage, Page, Playwright, async_playwright, expect

from tests.e2e.servers import Server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
"""A phone-sized browser context (the options of ``browser.new_context``)."""


@dataclass
class PageLog:
    """What a page printed to its console, and the errors it raised."""

    name: str
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        def on_console(message: ConsoleMessage) -> None:
            self.console.append(f"{message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def report(self) -> str:
        lines = [f"[{self.name}] console:"] + [f"  {line}" for line in self.console or ["(nothing)"]]
        lines += [f"[{self.name}] page errors:"] + [f"  {line}" for line in self.errors or ["(none)"]]
        return "\n".join(lines)


class ChatScenarioError(AssertionError):
    """The two-page chat scenario failed; the message carries logs and screenshot paths."""


async def launch(server: Server) -> tuple[Browser, Playwright]:
    """Start headless Chromium with ``localhost:8000`` mapped to ``server``."""
    playwright = await async_playwright().start()
    rules = f"--host-resolver-rules=MAP localhost:8000 127.0.0.1:{server.port}"
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, rules])
    return browser, playwright


async def run_two_page_chat(html: str, server: Server, out_dir: Path) -> dict[str, Path]:
    """Open the chat page twice, chat both ways, close one page, check the other sees it leave.

    Args:
        html: The page, verbatim.
        server: ``examples_app.chat_app`` under uvicorn.
        out_dir: Where the page file and the screenshots go.

    Returns:
        The screenshots taken (``"both"`` shows the two pages mid-chat).

    Raises:
        ChatScenarioError: A step failed; the message has both pages' console output, page
            errors, their text, the screenshot paths and the server log.
    """
    page_file = out_dir / "chat.html"
    page_file.write_text(html, encoding="utf-8")
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
        await two.goto(page_file.as_uri())
        await expect(two.locator("#messages")).to_contain_text("System: Welcome to the chat!", timeout=TIMEOUT_MS)
        joined = one.locator("#messages div", has_text=re.compile(r"^System: User \d+ joined$"))
        await expect(joined).to_have_count(1, timeout=TIMEOUT_MS)
        two_id = re.findall(r"\d+", await joined.inner_text())[0]

        await one.fill("#message", "Hello from page one")
        await one.press("#message", "Enter")
        for page in pages:
            said = page.locator("#messages div", has_text=re.compile(r"^\d+: Hello from page one$"))
            await expect(said).to_have_count(1, timeout=TIMEOUT_MS)
        assert await one.input_value("#message") == "", "the input was not cleared after sending"

        await two.fill("#message", "Hi from page two")
        await two.press("#message", "Enter")
        for page in pages:
            said = page.locator("#messages div", has_text=f"{two_id}: Hi from page two")
            await expect(said).to_have_count(1, timeout=TIMEOUT_MS)

        shots["one"] = out_dir / "chat-page-one.png"
        shots["two"] = out_dir / "chat-page-two.png"
        await one.screenshot(path=str(shots["one"]))
        await two.screenshot(path=str(shots["two"]))

        await two.close()
        left = one.locator("#messages div", has_text=f"System: User {two_id} left")
        await expect(left).to_have_count(1, timeout=TIMEOUT_MS)
        errors = [line for line in logs[0].console + logs[1].console if line.startswith("error")]
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
