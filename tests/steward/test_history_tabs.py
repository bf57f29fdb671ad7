"""Governed objects' pages show their field-level change history: who, when, before and after."""

from __future__ import annotations

import re

import pytest

from compliance.models import DataClassification
from portfolio.models import CostTier, PolicySet, Task
from portfolio.publishing import start_change

pytestmark = pytest.mark.django_db


def _history_cells(page: str) -> list[str]:
    table = page[page.index('id="history"') :].split("</table>")[0]
    return [cell.strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", table, re.S)]


def test_change_request_page_shows_field_changes(bob, alice, client_for):
    internal = DataClassification.objects.create(slug="internal", name="Internal", level=1)
    small = CostTier.objects.create(slug="small", name="Small", rank=1, price_ceiling_micro_usd=500_000)
    Task.objects.create(slug="triage", name="Triage", default_classification=internal, tier=small)
    policy_set = PolicySet.objects.create(slug="staging", name="Staging")
    change = start_change(policy_set, bob, "First", "why", "default: deny\nroutes: []\n")
    change.submit(bob)
    cells = _history_cells(client_for(alice).get(change.get_absolute_url()).content.decode())
    at = cells.index("status")
    assert cells[at : at + 3] == ["status", "draft", "in_review"]
    assert "bob" in cells and "submitted for review" in cells


def test_policy_set_and_classification_pages_show_their_history(alice, client_for, admin_user):
    policy_set = PolicySet.objects.create(slug="staging", name="Staging", required_approvals=1)
    policy_set.required_approvals = 2
    policy_set._history_user = alice
    policy_set.save()
    cells = _history_cells(client_for(alice).get("/policies/staging/").content.decode())
    at = cells.index("required approvals")
    assert cells[at : at + 3] == ["required approvals", "1", "2"] and "alice" in cells
    classification = DataClassification.objects.create(slug="pii", name="PII", level=3)
    classification.level = 4
    classification._history_user = alice
    classification.save()
    cells = _history_cells(client_for(alice).get("/compliance/classifications/pii/edit/").content.decode())
    at = cells.index("level")
    assert cells[at : at + 3] == ["level", "3", "4"]
