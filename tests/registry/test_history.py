"""Field-level history: who changed what, kept by django-simple-history."""

from __future__ import annotations

import re

import pytest

from registry.models import Model, ModelVersion, Provider

from ..factories import version_fields

pytestmark = pytest.mark.django_db


def test_history_records_who_changed_the_status_and_why(alice, bob, mistral_large):
    version = ModelVersion.propose(bob, **version_fields(mistral_large, version="2411"))
    version.approve(alice, "Meets the bar.")
    records = list(version.history.order_by("history_date", "history_id"))
    assert [r.history_user for r in records] == [bob, alice]
    assert (records[0].status, records[1].status) == ("proposed", "approved")
    assert records[1].history_change_reason == "approve: Meets the bar."


def test_providers_and_models_keep_history(mistral_large):
    provider = mistral_large.provider
    provider.website = "https://mistral.ai"
    provider.save()
    mistral_large.context_window = 131_072
    mistral_large.save()
    assert Provider.history.filter(id=provider.pk).count() == 2
    assert Model.history.filter(id=mistral_large.pk).count() == 2


def test_version_page_shows_field_level_history(alice, bob, mistral_large, client_for):
    version = ModelVersion.propose(bob, **version_fields(mistral_large, version="2411"))
    version.approve(alice, "Meets the bar.")
    page = client_for(alice).get(version.get_absolute_url()).content.decode()
    history = page[page.index('id="history"') :].split("</table>")[0]
    cells = [cell.strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", history, re.S)]
    assert "alice" in cells and "bob" in cells
    at = cells.index("status")
    assert cells[at : at + 3] == ["status", "Proposed", "Approved"]
    assert "approve: Meets the bar." in cells
