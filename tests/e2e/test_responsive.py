"""Steward on a phone: at 390 px every link of the top bar is on the dark bar, inside the screen, and
takes you to its page; the pages scroll down, never sideways (wide tables scroll inside themselves)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from registry.models import Status
from tests.e2e.test_model_approval import sign_in
from tests.e2e.watch import watch
from tests.factories import make_classification, make_model, make_provider, make_version

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def portfolio(bob):
    """Enough rows that the registry and the matrix are wider than a phone."""
    provider = make_provider(name="Azure OpenAI Service", slug="azure-openai")
    for number in range(6):
        make_version(
            bob,
            model=make_model(provider=provider, slug=f"gpt-long-model-name-{number}"),
            version="2024-08-06",
            status=Status.APPROVED,
        )
    for rank, slug in enumerate(["public", "internal", "pii", "phi", "pci", "confidential", "restricted"]):
        make_classification(slug, rank)


OVERFLOWING = """() => {
  const wide = [];
  for (const el of document.querySelectorAll("body *")) {
    const right = el.getBoundingClientRect().right;
    const parent = el.parentElement.getBoundingClientRect().right;
    if (right > window.innerWidth + 1 && parent <= window.innerWidth + 1) {
      const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (el.className ? "." + el.className : "");
      const text = (el.textContent || "").trim().slice(0, 30);
      wide.push(`${name} '${text}' to ${Math.round(right)} px`);
    }
  }
  return wide.slice(0, 8);
}"""


def _overflowing(page: Page) -> list[str]:
    """The outermost elements that stick out past the right edge of the screen."""
    return page.evaluate(OVERFLOWING)


def _box(page: Page, locator) -> dict:
    box = locator.bounding_box()
    assert box is not None
    return box


def test_at_390_px_every_nav_link_is_visible_and_reachable_and_no_page_scrolls_sideways(
    page: Page, live_server, alice, portfolio, screenshot
) -> None:
    errors: list[str] = []
    watch(page, errors)
    page.set_viewport_size(PHONE)
    sign_in(page, live_server.url, "alice")

    links = page.locator("nav.mainnav a")
    names = [name.strip() for name in links.all_inner_texts()]
    assert {"Dashboard", "Registry", "Compliance", "Policies", "Audit", "API"} <= {n.split()[0] for n in names}
    bar = _box(page, page.locator("header.topbar"))
    for index, name in enumerate(names):
        link = links.nth(index)
        expect(link).to_be_visible()
        box = _box(page, link)
        # On the screen and on the dark bar (never white on the white page beside it).
        assert 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"], (name, box)
        assert bar["y"] <= box["y"] and box["y"] + box["height"] <= bar["y"] + bar["height"], (name, box, bar)
    screenshot(page, "phone-dashboard")

    pages = []
    for index, name in enumerate(names):
        if name.startswith("API"):
            continue  # Swagger UI is a page of its own width
        link = page.locator("nav.mainnav a").nth(index)
        href = link.get_attribute("href")
        link.click()
        expect(page).to_have_url(f"{live_server.url}{href}")
        pages.append(href)

    for path in pages:
        page.goto(f"{live_server.url}{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path} is {width} px wide at {PHONE['width']} px: {_overflowing(page)}"
    assert errors == []


def test_the_skip_link_takes_the_keyboard_past_the_top_bar(page: Page, live_server, alice) -> None:
    sign_in(page, live_server.url, "alice")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()


def test_at_1400_px_the_matrix_shows_all_seven_classifications_without_scrolling(
    page: Page, live_server, alice, portfolio
) -> None:
    page.set_viewport_size({"width": 1400, "height": 900})
    sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/compliance/matrix/")
    expect(page.locator("table.matrix thead th")).to_have_count(8)  # the version column and seven
    scroll = page.locator(".matrix-scroll")
    wide, shown = scroll.evaluate("el => [el.scrollWidth, el.clientWidth]")
    assert wide <= shown, f"the matrix is {wide} px wide in {shown} px: its last column is cut off"
