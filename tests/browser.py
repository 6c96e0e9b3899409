"""A real browser for the inbox tests: Debian's Chromium driven by Playwright, never a download."""

from __future__ import annotations

import base64
import html
import os
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"  # tools/install-test-deps.sh installs it
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Screenshots of every run land here (the CI keeps the folder as an artifact).
ARTIFACTS = Path(os.environ.get("TEXTBACK_TEST_ARTIFACTS",
                                Path(__file__).resolve().parent.parent / "test-artifacts"))
# axe-core from the npm registry, installed by tools/install-test-deps.sh (keep the two in step).
AXE_CORE_VERSION = "4.10.3"
AXE_JS = Path(os.environ.get("TEXTBACK_AXE_DIR",
                             f"/var/cache/textback-tests/axe-core-{AXE_CORE_VERSION}")) \
    / "node_modules" / "axe-core" / "axe.min.js"
# The path axe is served at, on the page's own origin, by the test's route only.
AXE_PATH = "/__test__/axe.min.js"
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@asynccontextmanager
async def chromium():
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def page_of(browser: Browser, viewport: dict = DESKTOP):
    """A fresh browser context (its own cookies) and page; script errors fail the test."""
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        await context.close()
    assert not errors, f"script errors in the page: {errors}"


async def screenshot(page: Page, name: str, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path


async def contact_sheet(browser: Browser, shots: dict[str, bytes], name: str, width: int,
                        columns: int) -> Path:
    """Screenshots side by side, each `width` px wide and captioned, as one PNG in ARTIFACTS
    (the README's pictures are these)."""
    cells = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>" for caption, png in shots.items())
    context = await browser.new_context(viewport={"width": columns * (width + 12) + 12, "height": 100})
    page = await context.new_page()
    await page.set_content(
        f"<style>body{{margin:0;padding:6px;background:#d5dae0;font:13px sans-serif;"
        f"display:grid;grid-template-columns:repeat({columns},{width}px);gap:12px}}"
        f"figure{{margin:0}}img{{width:{width}px;display:block;border:1px solid #6b7480}}"
        f"figcaption{{text-align:center;padding:2px}}</style>{cells}")
    path = ARTIFACTS / f"{name}.png"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path), full_page=True)
    await context.close()
    return path


async def sign_in(page: Page, base: str, account: str, password: str) -> None:
    await page.goto(f"{base}/signin")
    await page.fill("input[name=account]", account)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")


# Runs in the page: is anything wider than the screen, and which tap targets are under 44 px
# (tall or wide)?
LAYOUT_PROBLEMS = """() => {
  const problems = [];
  if (document.documentElement.scrollWidth > window.innerWidth)
    problems.push(`page is ${document.documentElement.scrollWidth}px wide`);
  for (const el of document.querySelectorAll('a, button, input, select, textarea, summary')) {
    if (el.type === 'hidden') continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (box.height < 44 || box.width < 44)
      problems.push(`${el.outerHTML.slice(0, 80)} is ${box.width}x${box.height}px`);
    if (box.right > window.innerWidth + 0.5 || box.left < -0.5)
      problems.push(`${el.outerHTML.slice(0, 80)} runs off the screen (${box.left}..${box.right})`);
  }
  return problems;
}"""


async def axe_violations(page: Page) -> list[str]:
    """axe-core's WCAG 2.1 A and AA violations on the page as it is now, one line each.

    axe is served from the page's own origin by a route of this test's browser context only,
    so the site's CSP (script-src 'self') stays on and the server never has it.
    """
    assert AXE_JS.is_file(), f"{AXE_JS} is missing: run `make test-deps` (tools/install-test-deps.sh)"
    body = AXE_JS.read_bytes()
    await page.context.route(f"**{AXE_PATH}", lambda route: route.fulfill(
        status=200, body=body, content_type="application/javascript"))
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.add_script_tag(url=AXE_PATH)
    return await page.evaluate("""async (tags) => {
      const result = await axe.run(document, { runOnly: { type: 'tag', values: tags } });
      return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} at ` +
        v.nodes.map((n) => n.target.join(' ')).slice(0, 5).join(', '));
    }""", WCAG_AA)
