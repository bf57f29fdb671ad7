"""Browser tests: headless Chromium driven by Playwright against pytest-django's live server.

Debian's Chromium is used (``/usr/bin/chromium``), never a browser downloaded by Playwright.
Without it the browser tests are skipped, unless ``STEWARD_REQUIRE_BROWSER=1`` (CI) makes its
absence a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in the test thread; Django would otherwise refuse the
# ORM calls the tests make (creating users and data) from a thread with a running loop.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A conftest's pytestmark does not reach the test modules; mark every test under tests/e2e here.
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


def _unavailable(required: str, optional: str) -> None:
    """Fail when the browser tests are required (STEWARD_REQUIRE_BROWSER=1), skip otherwise."""
    if os.environ.get("STEWARD_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests are required but {required}")
    pytest.skip(optional)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        _unavailable(
            "Chromium is missing: apt-get install -y chromium",
            f"Chromium is missing at {CHROMIUM} (apt-get install -y chromium)",
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable(
            "Playwright is missing: pip install -e '.[dev]'",
            "the playwright package is missing (pip install -e '.[dev]')",
        )

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh page in its own browser context (no cookies shared between tests)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(autouse=True)
def roles(transactional_db) -> None:
    """Recreate the role groups: a transactional test flushes every table, groups included, and
    only the data migration creates them."""
    from steward.roles import sync_role_permissions

    sync_role_permissions()


@pytest.fixture
def screenshot():
    """``screenshot(page, name)`` saves a full-page PNG into $STEWARD_E2E_SCREENSHOTS when it is set,
    for a person to look at the pages; it does nothing otherwise."""
    folder = os.environ.get("STEWARD_E2E_SCREENSHOTS")

    def take(page, name: str) -> None:
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(folder) / f"e2e-{name}.png"), full_page=True)

    return take
