"""The compliance pages: who may see and do what, cell actions over HTTP (htmx and plain), the CSV
export, evidence uploads and downloads, classifications, and constant queries on the matrix page."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compliance.matrix import CellState, check
from compliance.models import Certification, CertificationHolding, DataClassification, MatrixCell
from registry.models import ModelVersion, Status
from steward.roles import ENGINEERS

from ..factories import make_model, make_provider, make_version, make_versions

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def cert(slug: str) -> Certification:
    return Certification.objects.get(slug=slug)


def hold(holder, slug: str, by, **fields) -> CertificationHolding:
    field = "provider" if holder.__class__.__name__ == "Provider" else "model_version"
    values = {
        "valid_from": dt.date(2025, 1, 1),
        "valid_until": timezone.localdate() + dt.timedelta(days=365),
        "evidence_url": "https://trust.example.com/report.pdf",
        **fields,
    }
    return CertificationHolding.objects.create(certification=cert(slug), recorded_by=by, **{field: holder}, **values)


@pytest.fixture
def pii_eu(db) -> DataClassification:
    classification = DataClassification.objects.create(
        slug="pii-eu", name="EU personal data", level=3, allowed_regions=["eu-*"]
    )
    classification.required_certifications.set([cert("gdpr-dpa")])
    return classification


@pytest.fixture
def phi(db) -> DataClassification:
    classification = DataClassification.objects.create(slug="phi", name="Health data", level=4, storage="digest")
    classification.required_certifications.set([cert("hipaa-baa")])
    return classification


@pytest.fixture
def eu_version(alice, bob, pii_eu, phi) -> ModelVersion:
    """An approved EU version, eligible for pii-eu (GDPR DPA held) and not for phi (no HIPAA BAA)."""
    provider = make_provider(name="Mistral AI", slug="mistral")
    hold(provider, "gdpr-dpa", alice)
    return make_version(
        bob,
        model=make_model(provider=provider, slug="mistral-large"),
        version="2411",
        status=Status.APPROVED,
        region="eu-west-1",
    )


def cell_url(version: ModelVersion, classification: DataClassification, action: str = "") -> str:
    return f"/compliance/matrix/cell/{version.pk}/{classification.slug}/" + (f"{action}/" if action else "")


def state(version: ModelVersion, classification: DataClassification) -> str:
    return check(version, classification).state


def htmx(client: Client, url: str, data: dict):
    return client.post(url, data, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="cell-panel")


def oob_cell(body: str, version: ModelVersion, classification: DataClassification) -> re.Match | None:
    """The matrix cell swapped out of band by an action's response."""
    return re.search(
        rf'<template><td id="cell-{version.pk}-{classification.slug}" [^>]*data-state="([a-z-]+)"[^>]*'
        rf'hx-swap-oob="true"',
        body,
    )


# --- who may see what -----------------------------------------------------------------------------

READERS = {"alice": 200, "bob": 200, "dave": 200, "erin": 403, None: 302}
OFFICERS_ONLY = {"alice": 200, "bob": 403, "dave": 403, "erin": 403, None: 302}


@pytest.fixture
def people(alice, bob, dave, erin):
    return {"alice": alice, "bob": bob, "dave": dave, "erin": erin}


def client_as(people, username: str | None) -> Client:
    client = Client()
    if username:
        client.force_login(people[username])
    return client


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/compliance/matrix/", READERS),
        ("/compliance/matrix.csv", READERS),
        ("/compliance/matrix/cell/{version}/pii-eu/", READERS),
        ("/compliance/certifications/", READERS),
        ("/compliance/classifications/", READERS),
        ("/compliance/evidence/{holding}/", READERS),
        ("/compliance/classifications/new/", OFFICERS_ONLY),
        ("/compliance/classifications/pii-eu/edit/", OFFICERS_ONLY),
    ],
)
@pytest.mark.parametrize("username", ["alice", "bob", "dave", "erin", None])
def test_pages_by_role(people, eu_version, alice, settings, tmp_path, url, expected, username):
    settings.MEDIA_ROOT = tmp_path
    holding = hold(eu_version, "iso27001", alice, evidence_file=SimpleUploadedFile("report.pdf", PDF), evidence_url="")
    response = client_as(people, username).get(url.format(version=eu_version.pk, holding=holding.pk))
    assert response.status_code == expected[username]
    if response.status_code == 302:
        assert response["Location"].startswith("/login/")


def _approved(version, classification, officer):
    MatrixCell.for_pair(version, classification).approve(officer, "DPA signed")


def _suspended(version, classification, officer):
    _approved(version, classification, officer)
    MatrixCell.for_pair(version, classification).suspend(officer, "incident")


ACTION_CASES = [
    # action, set-up, payload, state before, state after success
    ("request", None, {"note": "ticket triage"}, CellState.NOT_REQUESTED, CellState.AWAITING),
    ("approve", None, {"justification": "DPA signed"}, CellState.NOT_REQUESTED, CellState.USABLE),
    ("deny", None, {"justification": "not needed"}, CellState.NOT_REQUESTED, CellState.DENIED),
    ("suspend", _approved, {"reason": "incident"}, CellState.USABLE, CellState.SUSPENDED),
    ("resume", _suspended, {"reason": "incident closed"}, CellState.SUSPENDED, CellState.USABLE),
]
ALLOWED = {"request": "bob", "approve": "alice", "deny": "alice", "suspend": "alice", "resume": "alice"}


@pytest.mark.parametrize(("action", "setup", "payload", "before", "after"), ACTION_CASES)
@pytest.mark.parametrize("username", ["alice", "bob", "dave", "erin", None])
def test_cell_actions_by_role(people, carol, eu_version, pii_eu, action, setup, payload, before, after, username):
    if setup:
        setup(eu_version, pii_eu, carol)
    assert state(eu_version, pii_eu) == before
    response = client_as(people, username).post(cell_url(eu_version, pii_eu, action), payload)
    if username == ALLOWED[action]:
        assert response.status_code == 302
        assert response["Location"] == cell_url(eu_version, pii_eu)
        assert state(eu_version, pii_eu) == after
    else:
        assert response.status_code == (302 if username is None else 403)
        if username is None:
            assert response["Location"].startswith("/login/")
        assert state(eu_version, pii_eu) == before


def test_action_endpoints_refuse_get_and_unknown_actions(alice, client_for, eu_version, pii_eu):
    client = client_for(alice)
    assert client.get(cell_url(eu_version, pii_eu, "approve")).status_code == 405
    assert client.post(cell_url(eu_version, pii_eu, "promote"), {}).status_code == 404
    assert (
        client.post(f"/compliance/matrix/cell/{eu_version.pk}/nope/approve/", {"justification": "x"}).status_code == 404
    )
    assert not MatrixCell.objects.exists()


# --- the cell panel and actions over htmx -----------------------------------------------------------


def test_request_then_approve_suspend_resume_deny_through_the_panel(alice, bob, client_for, eu_version, pii_eu):
    engineer, officer = client_for(bob), client_for(alice)
    url = cell_url(eu_version, pii_eu)

    panel = engineer.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="cell-request"' in panel and 'id="cell-approve"' not in panel
    assert "<html" not in panel

    response = htmx(engineer, cell_url(eu_version, pii_eu, "request"), {"note": "EU ticket triage"})
    assert response.status_code == 200
    assert oob_cell(response.content.decode(), eu_version, pii_eu)[1] == CellState.AWAITING

    panel = officer.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert {"cell-approve", "cell-deny"} <= set(re.findall(r'<form [^>]*id="(cell-[a-z]+)"', panel))
    assert "EU ticket triage" in panel and "awaiting an officer&#x27;s approval" in panel

    expiry = (timezone.now() + dt.timedelta(days=90)).strftime("%Y-%m-%dT%H:%M")
    response = htmx(
        officer, cell_url(eu_version, pii_eu, "approve"), {"justification": "DPA signed", "expires_at": expiry}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert oob_cell(body, eu_version, pii_eu)[1] == CellState.USABLE
    assert "Approved by alice." in body and "DPA signed" in body
    assert 'id="cell-suspend"' in body and 'id="cell-approve"' not in body
    cell = MatrixCell.objects.get()
    assert cell.decided_by == alice and cell.expires_at.strftime("%Y-%m-%dT%H:%M") == expiry

    response = htmx(officer, cell_url(eu_version, pii_eu, "suspend"), {"reason": "incident 42"})
    assert oob_cell(response.content.decode(), eu_version, pii_eu)[1] == CellState.SUSPENDED
    response = htmx(officer, cell_url(eu_version, pii_eu, "resume"), {"reason": "incident 42 closed"})
    assert oob_cell(response.content.decode(), eu_version, pii_eu)[1] == CellState.USABLE
    response = htmx(officer, cell_url(eu_version, pii_eu, "deny"), {"justification": "provider exit"})
    body = response.content.decode()
    assert oob_cell(body, eu_version, pii_eu)[1] == CellState.DENIED
    # The panel's history shows every step, newest first, with who and why.
    history = body[body.index('id="cell-history"') :]
    reasons = re.findall(r'<blockquote class="comment">([^<]+)</blockquote>', history)
    assert reasons == [
        "deny: provider exit",
        "resume: incident 42 closed",
        "suspend: incident 42",
        "approve: DPA signed",
        "request: EU ticket triage",
    ]


def test_requester_who_is_also_an_officer_cannot_approve(alice, client_for, eu_version, pii_eu):
    alice.groups.add(Group.objects.get(name=ENGINEERS))
    client = client_for(alice)
    assert client.post(cell_url(eu_version, pii_eu, "request"), {"note": "mine"}).status_code == 302
    panel = client.get(cell_url(eu_version, pii_eu), HTTP_HX_REQUEST="true").content.decode()
    assert 'id="cell-approve"' not in panel and "another officer must approve it" in panel

    response = client.post(cell_url(eu_version, pii_eu, "approve"), {"justification": "approving my own"})
    assert response.status_code == 403
    assert "cannot approve it; another officer must" in response.content.decode()
    response = htmx(client, cell_url(eu_version, pii_eu, "approve"), {"justification": "approving my own"})
    assert response.status_code == 200  # htmx swaps only 2xx: the refusal is shown in the panel
    assert "cannot approve it; another officer must" in response.content.decode()
    assert oob_cell(response.content.decode(), eu_version, pii_eu)[1] == CellState.AWAITING
    assert MatrixCell.objects.get().decision == "requested"


def test_approving_an_ineligible_cell_shows_the_reasons_and_saves_nothing(alice, client_for, eu_version, phi):
    client = client_for(alice)
    panel = client.get(cell_url(eu_version, phi), HTTP_HX_REQUEST="true").content.decode()
    assert 'id="cell-approve"' not in panel and "no HIPAA BAA" in panel
    response = client.post(cell_url(eu_version, phi, "approve"), {"justification": "please"})
    assert response.status_code == 400
    assert re.search(r'id="cell-errors".*is not eligible: no HIPAA BAA', response.content.decode(), re.S)
    response = htmx(client, cell_url(eu_version, phi, "approve"), {"justification": "please"})
    assert response.status_code == 200 and "is not eligible: no HIPAA BAA" in response.content.decode()
    assert not MatrixCell.objects.exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"justification": "ok", "expires_at": "2020-01-01T00:00"}, "is in the past"),
        ({"justification": "ok", "expires_at": "next tuesday"}, "Enter the expiry as a date and time"),
        ({"justification": "   "}, "A justification is required to approve a cell."),
    ],
)
def test_bad_approval_input_is_refused_by_field(alice, client_for, eu_version, pii_eu, payload, message):
    response = client_for(alice).post(cell_url(eu_version, pii_eu, "approve"), payload)
    assert response.status_code == 400
    form = re.search(r'<form [^>]*id="cell-approve".*?</form>', response.content.decode(), re.S)[0]
    assert message in form
    assert not MatrixCell.objects.exists()


def test_suspend_is_refused_for_a_cell_that_is_not_approved(alice, client_for, eu_version, pii_eu):
    response = client_for(alice).post(cell_url(eu_version, pii_eu, "suspend"), {"reason": "why not"})
    assert response.status_code == 400
    assert "Only an approved cell can be suspended" in response.content.decode()
    assert not MatrixCell.objects.exists()


# --- a cell's own URL --------------------------------------------------------------------------------


def test_a_cell_link_puts_the_cells_url_in_the_address_bar(alice, client_for, eu_version, pii_eu):
    body = client_for(alice).get("/compliance/matrix/").content.decode()
    link = re.search(rf'<td id="cell-{eu_version.pk}-pii-eu"[^>]*><a ([^>]*)>', body)[1]
    assert f'href="{cell_url(eu_version, pii_eu)}"' in link and f'hx-get="{cell_url(eu_version, pii_eu)}"' in link
    assert 'hx-push-url="true"' in link


@pytest.mark.parametrize("headers", [{}, {"HX-Request": "true", "HX-History-Restore-Request": "true"}])
def test_a_cells_url_shows_the_matrix_with_its_panel_open(alice, client_for, eu_version, pii_eu, headers):
    """A reload, a bookmark, a plain link, or htmx going back to the URL: the whole page."""
    response = client_for(alice).get(cell_url(eu_version, pii_eu), headers=headers)

    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" in body and 'id="matrix"' in body and 'data-figure="coverage-chart"' in body
    panel = body.split('<aside id="cell-panel"')[1].split("</aside>")[0]
    assert f'{eu_version.ref}</a> <span class="muted">×</span> pii-eu' in panel
    assert 'id="cell-approve"' in panel and f'hx-post="{cell_url(eu_version, pii_eu, "approve")}"' in panel
    assert f"<title>{eu_version.ref} × pii-eu · Compliance matrix" in body
    assert "HX-Request" in response["Vary"]


def test_htmx_asks_a_cells_url_for_its_panel_alone(alice, client_for, eu_version, pii_eu):
    response = client_for(alice).get(cell_url(eu_version, pii_eu), headers={"HX-Request": "true"})
    body = response.content.decode()
    assert "<html" not in body and 'id="matrix"' not in body
    assert 'id="cell-detail"' in body and "data-focus-on-swap" in body
    assert "HX-Request" in response["Vary"]


def test_a_cell_action_asks_the_coverage_chart_again(alice, carol, bob, client_for, eu_version, pii_eu):
    client = client_for(alice)
    page = client.get("/compliance/matrix/?region=eu-west-1").content.decode()
    coverage = re.search(r'<div id="coverage" ([^>]*)>', page)[1]
    assert 'hx-get="/compliance/matrix/?region=eu-west-1"' in coverage
    assert 'hx-trigger="matrix-changed from:body"' in coverage

    def usable() -> dict:
        chart = client.get(
            "/compliance/matrix/?region=eu-west-1", headers={"HX-Request": "true", "HX-Target": "coverage"}
        )
        body = chart.content.decode()
        assert "<html" not in body and 'id="matrix"' not in body
        figure = json.loads(json.loads(body.split('type="application/json">')[1].split("</script>")[0]))
        return {trace["name"]: dict(zip(trace["x"], trace["y"], strict=True)) for trace in figure["data"]}

    assert usable()[eu_version.cost_tier]["pii-eu"] == 0
    MatrixCell.for_pair(eu_version, pii_eu).request(bob, "EU triage")
    response = htmx(client, cell_url(eu_version, pii_eu, "approve"), {"justification": "DPA signed"})

    triggered = [name.strip() for name in response["HX-Trigger"].split(",")]
    assert set(triggered) == {"inbox-changed", "matrix-changed"}
    assert usable()[eu_version.cost_tier]["pii-eu"] == 1


# --- the matrix page, its chart and the CSV -----------------------------------------------------------


def test_matrix_page_shows_each_cell_with_state_words_and_reasons(alice, client_for, eu_version, pii_eu, phi):
    body = client_for(alice).get("/compliance/matrix/").content.decode()
    cell = re.search(rf'<td id="cell-{eu_version.pk}-phi"[^>]*>.*?</td>', body)[0]
    assert 'data-state="ineligible"' in cell and ">Ineligible</a>" in cell
    assert 'title="mistral/mistral-large@2411 × phi: no HIPAA BAA;' in cell
    cell = re.search(rf'<td id="cell-{eu_version.pk}-pii-eu"[^>]*>.*?</td>', body)[0]
    assert 'data-state="not-requested"' in cell and ">Eligible, not requested</a>" in cell
    for label in CellState.LABELS.values():
        assert label in body  # the legend


def test_filters_answer_with_the_results_partial_only(bob, client_for, eu_version, pii_eu):
    make_versions(6, bob)
    response = client_for(bob).get(
        "/compliance/matrix/?status=approved&region=eu-west-1", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="matrix-results"
    )
    body = response.content.decode()
    assert "<html" not in body and 'id="matrix"' in body and 'data-figure="coverage-chart"' in body
    shown = set(re.findall(r'<td id="cell-(\d+)-pii-eu"', body))
    expected = ModelVersion.objects.filter(status="approved", region="eu-west-1")
    assert shown == {str(v.pk) for v in expected} and len(shown) >= 2
    assert 'href="/compliance/matrix.csv?status=approved&amp;region=eu-west-1"' in body


def test_coverage_chart_counts_usable_versions_of_every_page(alice, bob, carol, client_for, pii_eu):
    provider = make_provider(slug="eu-ai")
    hold(provider, "gdpr-dpa", alice)
    model = make_model(provider=provider)
    for tier, count in (("small", 3), ("large", 1)):
        for _ in range(count):
            version = make_version(bob, model=model, status=Status.APPROVED, cost_tier=tier)
            _approved(version, pii_eu, carol)
    make_version(bob, model=model, status=Status.APPROVED, cost_tier="medium")  # eligible, not approved
    response = client_for(alice).get("/compliance/matrix/?per_page=1")
    assert len(response.context["page"].object_list) == 1
    figure = json.loads(response.context["chart"])
    bars = {trace["name"]: dict(zip(trace["x"], trace["y"], strict=True)) for trace in figure["data"]}
    assert bars == {"small": {"pii-eu": 3}, "medium": {"pii-eu": 0}, "large": {"pii-eu": 1}}
    assert figure["layout"]["barmode"] == "group"


def test_csv_export_has_states_and_reasons_per_classification(dave, carol, client_for, eu_version, pii_eu, phi):
    _approved(eu_version, pii_eu, carol)
    response = client_for(dave).get("/compliance/matrix.csv?region=eu-west-1")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["ref", "provider", "tier", "status", "region", "pii-eu", "pii-eu reasons", "phi", "phi reasons"]
    assert rows[1:] == [
        [
            "mistral/mistral-large@2411",
            "Mistral AI",
            "small",
            "approved",
            "eu-west-1",
            "Usable",
            "",
            "Ineligible",
            "no HIPAA BAA; not approved for this classification (not requested)",
        ]
    ]
    empty = client_for(dave).get("/compliance/matrix.csv?status=proposed")
    assert len(list(csv.reader(io.StringIO(b"".join(empty.streaming_content).decode())))) == 1


def test_csv_export_refuses_a_bad_filter(dave, client_for, eu_version):
    response = client_for(dave).get("/compliance/matrix.csv?status=sideways")
    assert response.status_code == 400 and "status" in response.content.decode()


def test_matrix_page_queries_do_not_grow_with_versions(alice, bob, carol, client_for):
    classifications = []
    for level, slug in enumerate(["public", "internal", "confidential", "pii-eu", "pci", "phi"]):
        classification = DataClassification.objects.create(slug=slug, name=slug, level=level)
        classification.required_certifications.set(Certification.objects.order_by("slug")[: level % 3])
        classifications.append(classification)
    client = client_for(alice)

    def populate(count: int) -> None:
        versions = make_versions(count, bob)
        for version in versions[::4]:
            hold(version.model.provider, "iso27001", alice)
            hold(version.model.provider, "fedramp-moderate", alice)
            hold(version, "gdpr-dpa", alice)
        for version in versions[::3]:
            MatrixCell.for_pair(version, classifications[0]).approve(carol, "public data")
            MatrixCell.for_pair(version, classifications[1]).request(bob, "internal data")

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
        assert response.status_code == 200
        return len(captured)

    populate(30)
    # A cell's own URL is the matrix page with the cell's panel open.
    cell_page = cell_url(ModelVersion.objects.order_by("pk").first(), classifications[1])
    urls = ["/compliance/matrix/", "/compliance/matrix/?status=approved&page=2", cell_page]
    at_30 = [queries(url) for url in urls]
    populate(270)
    assert ModelVersion.objects.count() == 300
    at_300 = [queries(url) for url in urls]
    assert at_30 == at_300


# --- certifications, holdings and evidence ---------------------------------------------------------------


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def stored_files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file()]


def holding_data(provider, /, **extra) -> dict:
    return {
        "certification": cert("soc2-type2").pk,
        "provider": provider.pk,
        "effect": "grants",
        "valid_from": "2026-01-01",
        "valid_until": "2027-01-01",
        "notes": "Report from the trust portal.",
        **extra,
    }


def test_valid_pdf_evidence_is_stored_and_served_only_through_the_view(alice, dave, client_for, media):
    provider = make_provider(name="Acme AI")
    upload = SimpleUploadedFile("soc2-2026.pdf", PDF, content_type="application/pdf")
    response = client_for(alice).post("/compliance/holdings/new/", holding_data(provider, evidence_file=upload))
    assert response.status_code == 302
    holding = CertificationHolding.objects.get()
    assert holding.recorded_by == alice and holding.provider == provider
    assert [p.read_bytes() for p in stored_files(media)] == [PDF]

    page = client_for(dave).get("/compliance/certifications/").content.decode()
    assert f'href="/compliance/evidence/{holding.pk}/"' in page and "/media/" not in page
    download = client_for(dave).get(f"/compliance/evidence/{holding.pk}/")
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment;")
    assert b"".join(download.streaming_content) == PDF
    assert client_for(dave).get(f"/media/{holding.evidence_file.name}").status_code == 404


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ({"evidence_file": ("setup.exe", b"MZ\x90\x00")}, "evidence_file", "must be a PDF, PNG, JPEG or text file"),
        ({"evidence_file": ("report.pdf", b"<html>not a pdf</html>")}, "evidence_file", "content is not PDF"),
        ({"evidence_file": ("big.pdf", b"%PDF-1.4\n" + b"0" * (11 * 1024 * 1024))}, "evidence_file", "at most 10 MB"),
        (
            {"valid_from": "2027-01-01", "valid_until": "2026-01-01", "evidence_url": "https://example.com/r.pdf"},
            "valid_until",
            "is before valid_from",
        ),
        ({}, "evidence_url", "Evidence is required"),
        ({"provider": "", "evidence_url": "https://example.com/r.pdf"}, "provider", "belongs to a provider or"),
        ({"model_version": "nobody/nothing@1", "provider": ""}, "model_version", "No model version nobody/nothing@1"),
    ],
)
def test_bad_holdings_are_refused_by_field_and_nothing_is_saved(alice, client_for, media, extra, field, message):
    provider = make_provider()
    data = holding_data(provider)
    for key, value in extra.items():
        data[key] = SimpleUploadedFile(value[0], value[1]) if isinstance(value, tuple) else value
    response = client_for(alice).post("/compliance/holdings/new/", data)
    assert response.status_code == 400
    errors = re.findall(rf'<p class="error" id="{field}-error">([^<]+)</p>', response.content.decode())
    assert any(message in error for error in errors), errors
    assert not CertificationHolding.objects.exists()
    assert stored_files(media) == []


def test_version_override_by_ref(alice, bob, client_for, media, eu_version):
    data = holding_data(eu_version.model.provider, provider="", model_version=eu_version.ref, effect="revokes")
    response = client_for(alice).post("/compliance/holdings/new/", data)
    assert response.status_code == 302
    assert CertificationHolding.objects.get(certification__slug="soc2-type2").model_version == eu_version


def test_holdings_show_days_left_and_highlight_expiry(alice, client_for, media):
    provider = make_provider(name="Acme AI")
    today = timezone.localdate()
    expired = hold(provider, "soc2-type2", alice, valid_until=today - dt.timedelta(days=3))
    soon = hold(provider, "iso27001", alice, valid_until=today + dt.timedelta(days=12))
    fine = hold(provider, "gdpr-dpa", alice, valid_until=today + dt.timedelta(days=200))
    page = client_for(alice).get("/compliance/certifications/").content.decode()
    assert re.search(rf'<tr class="holding-expired" id="holding-{expired.pk}">.*?expired 3 days ago', page, re.S)
    assert re.search(rf'<tr class="holding-expiring" id="holding-{soon.pk}">.*?12 days', page, re.S)
    assert f'<tr class="holding-valid" id="holding-{fine.pk}">' in page


def test_officer_adds_a_certification_and_duplicates_are_refused(alice, bob, client_for):
    client = client_for(alice)
    data = {"name": "C5", "slug": "bsi-c5", "description": "German cloud attestation."}
    assert client.post("/compliance/certifications/new/", data).status_code == 302
    assert Certification.objects.filter(slug="bsi-c5").exists()
    response = client.post("/compliance/certifications/new/", {**data, "name": "C5 again"})
    assert response.status_code == 400 and re.search(r'id="slug-error">[^<]*already exists', response.content.decode())
    assert client_for(bob).post("/compliance/certifications/new/", {**data, "slug": "x"}).status_code == 403
    assert Certification.objects.filter(name__startswith="C5").count() == 1


# --- classifications -------------------------------------------------------------------------------------


def test_officer_adds_and_edits_a_classification(alice, client_for):
    client = client_for(alice)
    data = {
        "slug": "pci",
        "name": "Card data",
        "level": "5",
        "required_certifications": [cert("pci-dss").pk],
        "allowed_regions": "eu-*, us-east-1",
        "storage": "digest",
    }
    assert client.post("/compliance/classifications/new/", data).status_code == 302
    pci = DataClassification.objects.get(slug="pci")
    assert pci.allowed_regions == ["eu-*", "us-east-1"] and list(pci.required_certifications.all()) == [cert("pci-dss")]

    form = client.get("/compliance/classifications/pci/edit/").content.decode()
    assert 'value="eu-*, us-east-1"' in form
    edit = {**data, "slug": "renamed", "allowed_regions": "eu-west-1", "required_certifications": []}
    assert client.post("/compliance/classifications/pci/edit/", edit).status_code == 302
    pci.refresh_from_db()
    assert pci.slug == "pci" and pci.allowed_regions == ["eu-west-1"]
    assert pci.required_certifications.count() == 0


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"allowed_regions": "eu-west-1, EU Central"}, "allowed_regions", "Not a region code or pattern: EU Central"),
        ({"level": "-1"}, "level", "greater than or equal to 0"),
        ({"slug": "Bad Slug"}, "slug", ""),
        ({"name": ""}, "name", "required"),
    ],
)
def test_bad_classifications_are_refused_by_field(alice, client_for, changes, field, message):
    data = {"slug": "pci", "name": "Card data", "level": "5", "allowed_regions": "", "storage": "content", **changes}
    response = client_for(alice).post("/compliance/classifications/new/", data)
    assert response.status_code == 400
    errors = re.findall(rf'<p class="error" id="{field}-error">([^<]+)</p>', response.content.decode())
    assert errors and any(message in error for error in errors), errors
    assert not DataClassification.objects.exists()


def test_classifications_page_counts_usable_versions(alice, bob, carol, client_for, eu_version, pii_eu, phi):
    other = make_version(bob, model=eu_version.model, status=Status.APPROVED, region="eu-central-1")
    _approved(eu_version, pii_eu, carol)
    _approved(other, pii_eu, carol)
    MatrixCell.for_pair(other, pii_eu).suspend(carol, "incident")
    page = client_for(bob).get("/compliance/classifications/").content.decode()
    counts = dict(re.findall(r'<tr id="classification-([a-z-]+)">.*?class="num usable-count">(\d+)<', page, re.S))
    assert counts == {"pii-eu": "1", "phi": "0"}
    assert "SHA-256 digest only" in page and "<code>eu-*</code>" in page
    assert "/compliance/classifications/pii-eu/edit/" not in page  # bob cannot edit
