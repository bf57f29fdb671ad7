"""Pages that answer htmx with a partial at their own URL say so in ``Vary``, so that the browser's
cache never shows the partial as the page when a person comes back to it."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_a_page_and_its_partial_vary_on_the_htmx_headers(client_for, dave):
    client = client_for(dave)
    page = client.get("/audit/decisions/")
    partial = client.get("/audit/decisions/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="decision-results")
    assert page.status_code == partial.status_code == 200
    assert "<html" in page.content.decode() and "<html" not in partial.content.decode()
    for response in (page, partial):
        varies = {name.strip().lower() for name in response["Vary"].split(",")}
        assert {"hx-request", "hx-target"} <= varies
