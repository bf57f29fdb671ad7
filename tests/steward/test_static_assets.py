"""Static files as a browser gets them: fingerprinted URLs, compressed bodies, a year's cache at least.

The files come from ``collectstatic`` (``make test`` runs it first; this module collects into a
directory of its own when the checkout has not, or when Steward's static files changed since),
served by WhiteNoise through the whole middleware stack."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import brotli
import plotly
import pytest
from django.conf import settings
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils.functional import empty

FINGERPRINTED = re.compile(r"^/static/(?P<name>.+)\.(?P<hash>[0-9a-f]{12})\.(?P<ext>css|js|svg)$")
A_YEAR = 365 * 24 * 60 * 60
SOURCES = {
    "steward/steward.js": Path(settings.BASE_DIR) / "static" / "steward" / "steward.js",
    "plotly/plotly.min.js": Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
}


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> Iterator[Path]:
    """STATIC_ROOT as ``make test`` leaves it; when it is missing or older than Steward's static
    files, a collection of this module's own (never rewriting the one other test processes serve)."""
    staticfiles_storage._wrapped = empty  # read the manifest afresh
    root = Path(settings.STATIC_ROOT)
    if (root / "staticfiles.json").exists() and not staticfiles_storage._sources_changed():
        yield root
        return
    root = tmp_path_factory.mktemp("static")
    with override_settings(STATIC_ROOT=str(root)):
        call_command("collectstatic", "--noinput", verbosity=0)
        staticfiles_storage._wrapped = empty
        yield root
    staticfiles_storage._wrapped = empty


def _max_age(response) -> int:
    match = re.search(r"max-age=(\d+)", response["Cache-Control"])
    assert match, response["Cache-Control"]
    return int(match.group(1))


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_pages_link_fingerprinted_assets_served_compressed_and_cached_for_a_year(collected, alice, client_for):
    page = client_for(alice).get("/").content.decode()
    urls = {
        "steward/steward.css": re.search(r'<link rel="stylesheet" href="([^"]+)"', page).group(1),
        "steward/steward.js": re.search(r'<script src="([^"]*steward/steward[^"]*)"', page).group(1),
        "plotly/plotly.min.js": re.search(r'data-plotly-src="([^"]+)"', page).group(1),
    }
    browser = Client()  # static files need no session
    for name, url in urls.items():
        match = FINGERPRINTED.match(url)
        assert match and f"{match['name']}.{match['ext']}" == name, url
        for encoding, decompress in (("br", brotli.decompress), ("gzip", gzip.decompress)):
            response = browser.get(url, HTTP_ACCEPT_ENCODING=f"{encoding}, identity")
            assert response.status_code == 200, url
            assert response["Content-Encoding"] == encoding, (url, encoding)
            assert "Accept-Encoding" in response["Vary"]
            assert _max_age(response) >= A_YEAR and "immutable" in response["Cache-Control"]
            body = decompress(_body(response))
            if name in SOURCES:
                assert body == SOURCES[name].read_bytes(), url
            else:
                assert body == (collected / url.removeprefix("/static/")).read_bytes(), url
    # plotly.js, the heaviest of them, travels at well under a third of its size.
    plotly_js = browser.get(urls["plotly/plotly.min.js"], HTTP_ACCEPT_ENCODING="br")
    assert int(plotly_js["Content-Length"]) < SOURCES["plotly/plotly.min.js"].stat().st_size / 3


def test_a_page_without_charts_does_not_load_plotly(collected, alice, client_for):
    page = client_for(alice).get("/profile/").content.decode()
    assert "data-figure" not in page
    assert "<script" in page and not re.search(r"<script[^>]+plotly", page)


def test_the_favicon_is_served_to_anyone(collected, db):
    browser = Client()
    response = browser.get("/favicon.ico")
    assert response.status_code == 301
    assert FINGERPRINTED.match(response["Location"]), response["Location"]
    icon = browser.get(response["Location"])
    assert icon.status_code == 200 and icon["Content-Type"] == "image/svg+xml"
    assert _body(icon).startswith(b"<svg")
