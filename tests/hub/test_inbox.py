"""The approvals inbox: every kind of thing that awaits an officer (cell requests included), its filters,
approving a cell from it, and the nav badge's count."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compliance.matrix import CellState, check
from compliance.models import CellDecision, MatrixCell
from registry.models import EndpointCredential, Status
from tests.factories import make_classification, make_model, make_provider, make_version


@pytest.fixture
def world(alice, bob):
    """One proposed version, one approved version with a pending cell request, one requested credential."""
    provider = make_provider(name="Acme", slug="acme")
    proposed = make_version(bob, model=make_model(provider=provider, slug="new-model"), version="1")
    approved = make_version(
        bob, model=make_model(provider=provider, slug="old-model"), version="2", status=Status.APPROVED
    )
    internal = make_classification("internal", 1)
    MatrixCell.for_pair(approved, internal).request(bob, "Support tickets")
    credential = EndpointCredential.request(bob, "ACME_API_KEY", ["api.acme.example"])
    return {"proposed": proposed, "approved": approved, "internal": internal, "credential": credential}


def test_a_pending_cell_request_is_in_every_officers_inbox(client_for, alice, carol, bob, world) -> None:
    approved = world["approved"]
    for officer in (alice, carol):
        body = client_for(officer).get("/approvals/").content.decode()
        assert "Matrix cells awaiting your decision" in body
        assert f"{approved.ref} × internal" in body and "Support tickets" in body
        assert world["proposed"].ref in body and "ACME_API_KEY" in body
    assert client_for(bob).get("/approvals/").status_code == 403


def test_an_officer_approves_a_cell_from_the_inbox_and_returns_to_it(client_for, alice, world) -> None:
    approved, internal = world["approved"], world["internal"]
    url = f"/compliance/matrix/cell/{approved.pk}/internal/approve/"
    refused = client_for(alice).post(url, {"justification": "", "next": "/approvals/"})
    assert refused.status_code == 400 and "A justification is required to approve a cell." in refused.content.decode()
    assert MatrixCell.objects.get(model_version=approved).decision == CellDecision.REQUESTED

    response = client_for(alice).post(url, {"justification": "Tickets hold no personal data", "next": "/approvals/"})
    assert response.status_code == 302 and response["Location"] == "/approvals/"
    assert check(approved, internal).state == CellState.USABLE
    body = client_for(alice).get("/approvals/").content.decode()
    assert f"{approved.ref} × internal" not in body and "No matrix cell request awaits your decision." in body


def test_the_inbox_never_sends_an_officer_off_site(client_for, alice, world) -> None:
    url = f"/compliance/matrix/cell/{world['approved'].pk}/internal/approve/"
    response = client_for(alice).post(url, {"justification": "ok", "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == url.removesuffix("approve/")


def test_the_inbox_filters_by_kind_and_text(client_for, alice, bob, world) -> None:
    other = make_version(bob, model=make_model(provider=make_provider(name="Beta", slug="beta"), slug="b"), version="9")
    client = client_for(alice)
    cells_only = client.get("/approvals/?kind=cells").content.decode()
    assert 'id="inbox-cells"' in cells_only and 'id="inbox-versions"' not in cells_only
    assert "ACME_API_KEY" not in cells_only
    two = client.get("/approvals/?kind=cells&kind=versions").content.decode()
    assert 'id="inbox-cells"' in two and 'id="inbox-versions"' in two and 'id="inbox-change-requests"' not in two
    searched = client.get("/approvals/?q=beta").content.decode()
    assert other.ref in searched and world["proposed"].ref not in searched
    assert f"{world['approved'].ref} × internal" not in searched
    # An unknown kind is ignored: everything is shown.
    assert 'id="inbox-cells"' in client.get("/approvals/?kind=nonsense").content.decode()
    partial = client.get("/approvals/?kind=cells", headers={"HX-Request": "true", "HX-Target": "inbox-results"})
    assert "<html" not in partial.content.decode() and 'id="inbox-cells"' in partial.content.decode()


def test_the_nav_badge_counts_what_awaits_the_officer(client_for, alice, carol, bob, dave, world) -> None:
    client = client_for(alice)
    with CaptureQueriesContext(connection) as queries:
        badge = client.get("/approvals/count/")
    # The session, the user, their permissions and roles (2 + 1), and one count per section (5).
    assert len(queries) == 10, [q["sql"] for q in queries]
    assert 'data-count="3"' in badge.content.decode()  # the version, the cell and the credential
    MatrixCell.objects.get(model_version=world["approved"]).approve(carol, "fine")
    assert 'data-count="2"' in client_for(alice).get("/approvals/count/").content.decode()
    # Someone with nothing to decide sees no badge.
    assert 'data-count="0"' in client_for(dave).get("/approvals/count/").content.decode()
    assert "hidden" in client_for(dave).get("/approvals/count/").content.decode()
    # The page asks for the badge after it loads (no page pays for the count).
    assert 'hx-get="/approvals/count/"' in client_for(alice).get("/").content.decode()


def test_the_requester_does_not_see_their_own_cell_request(client_for, alice, world) -> None:
    cell = MatrixCell.objects.get(model_version=world["approved"])
    MatrixCell.objects.filter(pk=cell.pk).update(requested_by=alice)
    assert list(MatrixCell.objects.awaiting_review_by(alice)) == []


def test_the_matrix_filters_rows_by_cell_state(client_for, alice, bob, world) -> None:
    approved, proposed = world["approved"], world["proposed"]
    client = client_for(alice)
    awaiting = client.get("/compliance/matrix/?state=awaiting").content.decode()
    assert f'id="cell-{approved.pk}-internal"' in awaiting and f'id="cell-{proposed.pk}-internal"' not in awaiting
    everything = client.get("/compliance/matrix/?state=").content.decode()
    assert f'id="cell-{proposed.pk}-internal"' in everything and f'id="cell-{approved.pk}-internal"' in everything
    csv = client.get("/compliance/matrix.csv?state=awaiting").getvalue().decode()
    assert approved.ref in csv and proposed.ref not in csv


def test_the_dashboard_lists_pending_cell_requests(client_for, alice, world) -> None:
    body = client_for(alice).get("/").content.decode()
    assert f"{world['approved'].ref} × internal" in body


def test_open_compliance_alerts_are_in_the_inbox_but_not_in_the_badge(client_for, alice, bob, world) -> None:
    from compliance.models import AlertKind, ComplianceAlert

    cell = MatrixCell.objects.get(model_version=world["approved"])
    ComplianceAlert.objects.create(kind=AlertKind.CELL_UNUSABLE, message="old-model x internal unusable", cell=cell)
    ComplianceAlert.objects.create(kind=AlertKind.EVALUATION_FAILED, message="resolved one", resolved_at=timezone.now())
    client = client_for(alice)
    body = client.get("/approvals/").content.decode()
    assert 'id="inbox-alerts"' in body and "old-model x internal unusable" in body
    assert f'href="{cell.get_absolute_url()}"' in body and "resolved one" not in body
    assert "3 items await you." in body  # the version, the cell request and the credential
    assert 'data-count="3"' in client.get("/approvals/count/").content.decode()
    assert 'id="inbox-alerts"' not in client.get("/approvals/?kind=cells").content.decode()
