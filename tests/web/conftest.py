"""Fixtures for the customer pages: a live server, Debian's Chromium through Playwright, sign-in.

The browser tests run on SQLite only: what they check is the pages (markup, dialogs, flows); the
services underneath are tested on both databases elsewhere, and the TestClient tests of sessions
and CSRF here use the two-database ``client`` fixture.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from slotwise import security
from tests.web.support import CHROMIUM, CHROMIUM_ARGS, PASSWORD, LiveServer, World


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    server = LiveServer().start()
    yield server
    server.stop()


@pytest.fixture
def world(live_server: LiveServer, tmp_path: Path) -> Iterator[World]:
    w = World(live_server, tmp_path)
    yield w
    w.close()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (apt-get install chromium)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    expect.set_options(timeout=7_000)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser, world: World) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=world.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def sign_in(page: Page, email: str, password: str = PASSWORD, path: str = "/login") -> None:
    page.goto(path)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


class CountingHasher:
    """The argon2 hasher, counting verifications (what a refusal costs, without timing anything)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.verifications = inner, 0

    def hash(self, password: str) -> str:
        return str(self.inner.hash(password))

    def verify(self, password_hash: str, password: str) -> bool:
        self.verifications += 1
        return bool(self.inner.verify(password_hash, password))


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    counting = CountingHasher(security._hasher)
    monkeypatch.setattr(security, "_hasher", counting)
    return counting
