"""Security headers on every response: frames denied, a CSP with our origin only and no inline script."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/login/", "/registry/", "/api/v1/model-versions", "/api/docs/"])
def test_headers(url, bob, client_for):
    response = client_for(bob).get(url)
    assert response["X-Frame-Options"] == "DENY"
    csp = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no other origin
    assert directives["frame-ancestors"] == "'none'"
    assert "http" not in csp
    assert response["X-Content-Type-Options"] == "nosniff"


def test_pages_carry_no_inline_script(bob, client_for):
    page = client_for(bob).get("/").content.decode()
    for tag in re.findall(r"<script[^>]*>", page):
        assert "src=" in tag or 'type="application/json"' in tag, tag
