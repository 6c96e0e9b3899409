"""A real browser for the inbox tests: Debian's Chromium driven by Playwright, never a download."""

from __future__ import annotations

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


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def sign_in(page: Page, base: str, account: str, password: str) -> None:
    await page.goto(f"{base}/signin")
    await page.fill("input[name=account]", account)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")


# Runs in the page: is anything wider than the screen, and which tap targets are under 44 px?
LAYOUT_PROBLEMS = """() => {
  const problems = [];
  if (document.documentElement.scrollWidth > window.innerWidth)
    problems.push(`page is ${document.documentElement.scrollWidth}px wide`);
  for (const el of document.querySelectorAll('a, button, input, select, textarea, summary')) {
    if (el.type === 'hidden') continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (box.height < 44 && !el.closest('.preview')) problems.push(`${el.outerHTML.slice(0, 80)} is ${box.height}px tall`);
  }
  return problems;
}"""
