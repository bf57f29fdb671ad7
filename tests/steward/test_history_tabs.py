"""Governed objects' pages show their field-level change history: who, when, before and after."""

from __future__ import annotations

import re

import pytest

from compliance.models import DataClassification, MatrixCell
from portfolio.models import CostTier, PolicySet, Task
from portfolio.publishing import start_change
from registry.models import Status
from steward.history import history_rows
from tests.factories import make_classification, make_model, make_provider, make_version

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
    assert cells[at : at + 3] == ["status", "Draft", "In review"]
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


def test_history_reads_names_and_labels_and_leaves_out_rows_that_change_nothing(bob, alice):
    version = make_version(
        bob, model=make_model(provider=make_provider(name="Acme", slug="acme"), slug="m"), status=Status.APPROVED
    )
    cell = MatrixCell.for_pair(version, make_classification("internal", 1))
    cell.request(bob, "Internal answers")
    cell.approve(alice, "Fine for internal data")
    cell.save()  # saved again with nothing changed

    rows = history_rows(cell)
    changes = [(c["field"], c["old"], c["new"]) for row in rows for c in row["changes"]]
    shown = {field: (old, new) for field, old, new in changes}
    assert all("updated" not in field for field, _, _ in changes), changes
    assert len(rows) == len({row["record"].pk for row in rows}) and all(row["changes"] for row in rows)
    decided_by = next(new for field, _, new in changes if field.startswith("decided by"))
    assert decided_by == "alice", changes
    assert "Approved" in {new for _, new in shown.values()}, changes
