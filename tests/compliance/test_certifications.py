"""The certifications page: holdings sorted and filtered by query string, and officers renewing an
expired or expiring holding with new evidence (audited, the old holding kept, its alert resolved)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from audits.models import AuditEvent
from compliance.alerts import record_alerts
from compliance.models import AlertKind, Certification, CertificationHolding, ComplianceAlert
from registry.models import Status

from ..factories import make_model, make_provider, make_version

pytestmark = pytest.mark.django_db

PAGE = "/compliance/certifications/"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def today() -> dt.date:
    return timezone.localdate()


def hold(holder, slug: str, by, days_left: int, **fields) -> CertificationHolding:
    field = "provider" if holder.__class__.__name__ == "Provider" else "model_version"
    values = {
        "valid_from": today() - dt.timedelta(days=300),
        "valid_until": today() + dt.timedelta(days=days_left),
        "evidence_url": "https://trust.example.com/report.pdf",
        **fields,
    }
    return CertificationHolding.objects.create(
        certification=Certification.objects.get(slug=slug), recorded_by=by, **{field: holder}, **values
    )


@pytest.fixture
def holdings(alice, bob) -> dict[str, CertificationHolding]:
    """Cohere's SOC 2 expired, Mistral's ISO expiring, Anthropic's HIPAA valid, and a version override."""
    cohere = make_provider(name="Cohere", slug="cohere")
    mistral = make_provider(name="Mistral AI", slug="mistral")
    anthropic = make_provider(name="Anthropic", slug="anthropic")
    version = make_version(bob, model=make_model(provider=mistral, slug="large"), version="2411")
    return {
        "expired": hold(cohere, "soc2-type2", alice, -10),
        "expiring": hold(mistral, "iso27001", alice, 12),
        "valid": hold(anthropic, "hipaa-baa", alice, 200),
        "override": hold(version, "gdpr-dpa", alice, 90),
    }


def row_ids(page: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr class="holding-[a-z-]+" id="holding-(\d+)">', page)]


def pks(holdings: dict, *names: str) -> list[int]:
    return [holdings[name].pk for name in names]


# --- sorting and filtering -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("", ["override", "valid", "expiring", "expired"]),  # certification name: GDPR, HIPAA, ISO, SOC 2
        ("-certification", ["expired", "expiring", "valid", "override"]),
        ("provider", ["valid", "expired", "override", "expiring"]),  # Anthropic, Cohere, Mistral (GDPR, ISO)
        ("expiry", ["expired", "expiring", "override", "valid"]),
        ("-days", ["valid", "override", "expiring", "expired"]),
    ],
)
def test_holdings_sort_by_the_query_string(holdings, dave, client_for, sort, order):
    response = client_for(dave).get(PAGE, {"sort": sort} if sort else {})
    assert response.status_code == 200
    assert row_ids(response.content.decode()) == pks(holdings, *order)


def test_provider_sort_puts_version_overrides_under_their_provider(holdings, dave, client_for):
    page = client_for(dave).get(PAGE, {"sort": "-provider"}).content.decode()
    ids = row_ids(page)
    # Mistral's own holding and its version's override sort together, before Cohere and Anthropic.
    assert ids == pks(holdings, "expiring", "override", "expired", "valid")


def test_sort_headers_are_links_that_toggle_and_say_which_column_is_sorted(holdings, dave, client_for):
    page = client_for(dave).get(PAGE, {"sort": "expiry", "state": "expired"}).content.decode()
    header = re.search(r'<th aria-sort="ascending"><a href="([^"]+)">Valid until ▲</a></th>', page)
    assert header and header[1] == "?state=expired&amp;sort=-expiry"
    assert '<th class="num"><a href="?state=expired&amp;sort=days">Days left</a></th>' in page
    assert page.count("aria-sort=") == 1
    default = client_for(dave).get(PAGE).content.decode()
    assert re.search(r'<th aria-sort="ascending"><a href="\?sort=-certification">Certification ▲', default)


def test_days_left_is_a_right_aligned_number(holdings, dave, client_for):
    page = client_for(dave).get(PAGE).content.decode()
    expired = re.search(rf'id="holding-{holdings["expired"].pk}">(.*?)</tr>', page, re.S)[1]
    assert '<td class="num">-10</td>' in expired and "expired 10 days ago" in expired
    css = client_for(dave).get("/static/steward/steward.css")
    text = b"".join(css.streaming_content).decode() if css.streaming else css.content.decode()
    assert "#holdings :is(td, th).num { text-align: right;" in text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"state": "expired"}, ["expired"]),
        ({"state": "expiring"}, ["expiring"]),
        ({"state": "valid"}, ["override", "valid"]),
        ({"provider": "mistral"}, ["override", "expiring"]),  # its own holding and its version's override
        ({"provider": "mistral", "state": "valid"}, ["override"]),
        ({"provider": "cohere", "state": "valid"}, []),
    ],
)
def test_holdings_filter_by_provider_and_state(holdings, dave, client_for, query, expected):
    response = client_for(dave).get(PAGE, query)
    assert response.status_code == 200
    assert row_ids(response.content.decode()) == pks(holdings, *expected)


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"state": "soon"}, "state", "soon is not a state; use valid, expiring or expired."),
        ({"provider": "nobody"}, "provider", "No provider with the slug nobody."),
        ({"sort": "price"}, "sort", "price is not a sort; use provider, certification, expiry, days"),
    ],
)
def test_bad_filters_are_named_by_field(holdings, dave, client_for, query, field, message):
    response = client_for(dave).get(PAGE, query)
    assert response.status_code == 400
    error = re.search(rf'<p id="filter-{field}-error">([^<]+)</p>', response.content.decode())
    assert error and message in error[1]


def test_page_queries_do_not_grow_with_holdings(alice, bob, client_for, django_assert_max_num_queries):
    client = client_for(alice)

    def add(count: int) -> None:
        for _ in range(count):
            provider = make_provider()
            hold(provider, "soc2-type2", alice, -5)
            version = make_version(bob, model=make_model(provider=provider), status=Status.APPROVED)
            hold(version, "iso27001", alice, 20, effect="grants")

    add(1)
    with django_assert_max_num_queries(50) as few:
        client.get(PAGE, {"sort": "provider"})
    add(12)
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get(PAGE, {"sort": "provider"}).content.decode()
    assert len(row_ids(page)) == 26 and page.count(">Renew</a>") == 26


# --- renewing --------------------------------------------------------------------------------------


def renewal(**extra) -> dict:
    return {
        "valid_from": today().isoformat(),
        "valid_until": (today() + dt.timedelta(days=365)).isoformat(),
        "evidence_url": "https://trust.example.com/soc2-2027.pdf",
        "notes": "New report from the trust portal.",
        **extra,
    }


def renew_url(holding: CertificationHolding) -> str:
    return f"/compliance/holdings/{holding.pk}/renew/"


def test_officer_renews_an_expired_holding_with_evidence(holdings, alice, client_for, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    old = holdings["expired"]
    client = client_for(alice)
    page = client.get(PAGE).content.decode()
    assert f'href="{renew_url(old)}">Renew</a>' in page
    assert f'href="{renew_url(holdings["valid"])}"' not in page  # valid for 200 days: nothing to renew
    form = client.get(renew_url(old))
    assert form.status_code == 200 and "Renew SOC 2 Type II of Cohere" in form.content.decode()

    upload = SimpleUploadedFile("soc2-2027.pdf", PDF, content_type="application/pdf")
    response = client.post(renew_url(old), renewal(evidence_url="", evidence_file=upload))
    new = CertificationHolding.objects.latest("pk")
    assert response.status_code == 302 and response["Location"] == f"{PAGE}#holding-{new.pk}"
    assert (new.certification, new.provider, new.effect, new.recorded_by) == (
        old.certification,
        old.provider,
        old.effect,
        alice,
    )
    assert new.evidence_file.read() == PDF
    old.refresh_from_db()
    assert old.valid_until == today() - dt.timedelta(days=10)  # the old holding stays, unchanged

    event = AuditEvent.objects.get(action="certificationholding.renew")
    assert event.actor_id == alice.pk and event.object_id == str(new.pk)
    assert event.before["pk"] == old.pk and event.after["valid_until"] == new.valid_until.isoformat()
    assert event.comment == "New report from the trust portal."

    page = client.get(PAGE).content.decode()
    assert re.search(rf'<tr class="holding-renewed" id="holding-{old.pk}">.*?>renewed</span>', page, re.S)
    assert f'href="{renew_url(old)}"' not in page
    again = client.post(renew_url(old), renewal())
    assert again.status_code == 400 and "has already been renewed" in again.content.decode()
    assert CertificationHolding.objects.count() == 5


def test_renewal_resolves_the_dashboard_alert(holdings, alice, client_for):
    record_alerts()
    alert = ComplianceAlert.objects.get(kind=AlertKind.CERTIFICATION_EXPIRED, holding=holdings["expired"])
    dashboard = client_for(alice).get("/").content.decode()
    assert f'href="{PAGE}#holding-{holdings["expired"].pk}"' in dashboard
    assert client_for(alice).post(renew_url(holdings["expired"]), renewal()).status_code == 302
    assert client_for(alice).post(renew_url(holdings["expiring"]), renewal()).status_code == 302
    record_alerts()
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    assert not ComplianceAlert.objects.filter(resolved_at__isnull=True, holding__isnull=False).exists()


@pytest.mark.parametrize("username", ["bob", "dave", "erin"])
def test_only_officers_renew(holdings, bob, dave, erin, client_for, username):
    user = {"bob": bob, "dave": dave, "erin": erin}[username]
    client = client_for(user)
    assert client.get(renew_url(holdings["expired"])).status_code == 403
    assert client.post(renew_url(holdings["expired"]), renewal()).status_code == 403
    assert CertificationHolding.objects.count() == 4
    assert not AuditEvent.objects.filter(action="certificationholding.renew").exists()
    if username != "erin":
        assert ">Renew</a>" not in client.get(PAGE).content.decode()


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"evidence_url": ""}, "evidence_url", "Evidence is required"),
        ({"valid_until": "2020-01-01"}, "valid_until", "is before valid_from"),
        ({"valid_from": "2020-01-01", "valid_until": "2020-02-01"}, "valid_until", "A renewal must be valid after"),
        ({"valid_until": "next year"}, "valid_until", "Enter a valid date"),
        ({"evidence_url": "", "evidence_file": ("report.pdf", b"<html>")}, "evidence_file", "content is not PDF"),
        ({"evidence_url": "javascript:alert(1)"}, "evidence_url", "Enter a valid URL"),
    ],
)
def test_bad_renewals_are_refused_by_field_and_nothing_is_saved(
    holdings, alice, client_for, settings, tmp_path, changes, field, message
):
    settings.MEDIA_ROOT = tmp_path
    data = renewal()
    for key, value in changes.items():
        data[key] = SimpleUploadedFile(*value) if isinstance(value, tuple) else value
    response = client_for(alice).post(renew_url(holdings["expired"]), data)
    assert response.status_code == 400
    errors = re.findall(rf'<p class="error" id="{field}-error">([^<]+)</p>', response.content.decode())
    assert any(message in error for error in errors), errors
    assert CertificationHolding.objects.count() == 4
    assert not AuditEvent.objects.filter(action="certificationholding.renew").exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_valid_holding_is_not_renewed(holdings, alice, client_for):
    response = client_for(alice).post(renew_url(holdings["valid"]), renewal())
    assert response.status_code == 400
    assert "only a holding that has expired or expires within 30 days can be renewed" in response.content.decode()
    assert CertificationHolding.objects.count() == 4
    assert client_for(alice).get("/compliance/holdings/999999/renew/").status_code == 404


def test_a_version_override_is_renewed_as_an_override(holdings, alice, bob, client_for):
    version = holdings["override"].model_version
    expiring = hold(version, "pci-dss", alice, 3, effect="revokes", evidence_url="")
    response = client_for(alice).post(renew_url(expiring), renewal(evidence_url=""))
    assert response.status_code == 302  # a revoking override needs no evidence, as when it was added
    new = CertificationHolding.objects.latest("pk")
    assert (new.model_version, new.provider, new.effect) == (version, None, "revokes")
