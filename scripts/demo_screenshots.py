"""Take the demo chat's screenshots for the docs: ``.venv/bin/python scripts/demo_screenshots.py``.

Starts ``examples_app.demo_app`` under uvicorn on a free port, has three people chat in headless
Chromium (Debian's, through Playwright) and writes ``docs/_static/demo-chat.png`` (a desktop
window) and ``docs/_static/demo-chat-phone.png`` (a phone).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.async_api import Page, expect  # noqa: E402

from tests.e2e.browser import PHONE, TIMEOUT_MS, launch  # noqa: E402
from tests.e2e.servers import uvicorn_server  # noqa: E402

OUT = ROOT / "docs" / "_static"


async def join(page: Page, url: str, name: str) -> None:
    await page.goto(url)
    await page.fill("#name", name)
    await page.click("#join")
    await expect(page.locator("#status")).to_have_text("online", timeout=TIMEOUT_MS)


async def say(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")
    await expect(page.locator("#messages li.message .text", has_text=text).first).to_be_visible(timeout=TIMEOUT_MS)


async def main() -> None:
    with tempfile.TemporaryDirectory() as logs, uvicorn_server("examples_app.demo_app:app", Path(logs)) as server:
        browser, playwright = await launch(server)
        try:
            desktop = await (await browser.new_context(viewport={"width": 1100, "height": 680})).new_page()
            phone = await (await browser.new_context(**PHONE)).new_page()
            third = await (await browser.new_context()).new_page()
            url = server.http_url + "/"
            await join(desktop, url, "Ada")
            await join(phone, url, "Grace")
            await join(third, url, "Linus")
            await say(desktop, "Morning! The demo reconnects by itself when the server restarts.")
            await say(phone, "Hi Ada, I'm on my phone. Rooms are up top here.")
            await say(third, "<b>HTML</b> in a message is shown as text.")
            await say(desktop, "Try #random, or make a room of your own with +.")
            await expect(phone.locator("#messages li.message")).to_have_count(4, timeout=TIMEOUT_MS)
            await desktop.screenshot(path=str(OUT / "demo-chat.png"))
            await phone.screenshot(path=str(OUT / "demo-chat-phone.png"))
        finally:
            await browser.close()
            await playwright.stop()
    print(f"wrote {OUT / 'demo-chat.png'} and {OUT / 'demo-chat-phone.png'}")  # noqa: T201 - a script


if __name__ == "__main__":
    asyncio.run(main())
