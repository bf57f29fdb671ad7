"""The admin site cannot bypass governance: fields that go into a signed policy or a governance
decision are read-only there, governed records cannot be deleted, and whatever the admin can still
change is in the audit trail with before and after.

Each change is posted as a browser would: the change form's own fields, read from its page.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Group

from audits.models import AuditEvent
from compliance.models import DataClassification
from portfolio.models import CostTier, PolicySet
from registry.models import EndpointCredential, ModelVersion, Status
from steward.roles import OFFICERS
from tests.factories import approved_credential, make_version

pytestmark = pytest.mark.django_db


class _FormFields(HTMLParser):
    """The fields a browser would submit from the page's change form (id ``*_form``)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self.names: set[str] = set()
        self._in_form = False
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if tag == "form" and attrs.get("id", "").endswith("_form"):
            self._in_form = True
        if not self._in_form or "name" not in attrs and tag != "option":
            return
        name = attrs.get("name")
        if tag == "input":
            self.names.add(name)
            kind = attrs.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in attrs:
                return
            if kind not in ("submit", "button", "file"):
                self.fields.append((name, attrs.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "textarea":
            self.names.add(name)
            self._textarea = name
            self.fields.append((name, ""))
        elif tag == "select":
            self.names.add(name)
            self._select = name
        elif tag == "option" and self._select and "selected" in attrs:
            self.fields.append((self._select, attrs.get("value", "")))

    def handle_endtag(self, tag) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None
        elif tag == "form":
            self._in_form = False

    def handle_data(self, data) -> None:
        if self._textarea is not None:
            name, value = self.fields[-1]
            self.fields[-1] = (name, value + data.lstrip("\n") if not value else value + data)


def change_form(client, url: str) -> _FormFields:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    parser = _FormFields()
    parser.feed(response.content.decode())
    return parser


def post_change(client, url: str, **changes):
    """Submit the change form at ``url`` with ``changes`` (fields the page does not offer are sent too,
    as a forged request would)."""
    form = change_form(client, url)
    data: dict[str, list[str]] = {}
    for name, value in form.fields:
        data.setdefault(name, []).append(value)
    for name, value in changes.items():
        data[name] = value if isinstance(value, list) else [value]
    data["_save"] = ["Save"]
    return client.post(url, data)


@pytest.fixture
def root(admin_user, client_for):
    return client_for(admin_user)


GOVERNED_VERSION_FIELDS = {
    "base_url": "http://attacker.example/v1",
    "api_key_env": "OTHER_API_KEY",
    "region": "us-east-1",
    "input_price_micro_usd": "1",
    "output_price_micro_usd": "1",
    "provider_model_id": "other",
    "cost_tier": "large",
}


def test_an_approved_versions_endpoint_key_region_and_prices_cannot_be_changed_in_the_admin(root, bob, admin_user):
    version = make_version(bob, status=Status.APPROVED, notes="before")
    url = f"/admin/registry/modelversion/{version.pk}/change/"
    form = change_form(root, url)
    assert not form.names & set(GOVERNED_VERSION_FIELDS)  # shown read-only, not as inputs
    before = {field: getattr(version, field) for field in GOVERNED_VERSION_FIELDS}

    response = post_change(root, url, notes="after", **GOVERNED_VERSION_FIELDS)

    assert response.status_code == 302, response.content.decode()[:2000]
    version.refresh_from_db()
    assert {field: getattr(version, field) for field in GOVERNED_VERSION_FIELDS} == before
    assert version.notes == "after"
    event = AuditEvent.objects.get(action="admin.change")
    assert (event.actor_name, event.object_type, event.object_id) == ("root", "registry.modelversion", str(version.pk))
    assert event.before == {"notes": "before"} and event.after == {"notes": "after"}


def _policy_set():
    return PolicySet.objects.get_or_create(slug="production", defaults={"name": "Production"})[0]


def _tier():
    defaults = {"name": "Small", "rank": 1, "price_ceiling_micro_usd": 5}
    return CostTier.objects.get_or_create(slug="small", defaults=defaults)[0]


def _classification():
    return DataClassification.objects.get_or_create(slug="phi", defaults={"name": "PHI", "level": 40})[0]


@pytest.mark.parametrize(
    ("make", "url", "changes", "field"),
    [
        (_policy_set, "portfolio/policyset", {"required_approvals": "0", "auto_publish": "on"}, "required_approvals"),
        (_tier, "portfolio/costtier", {"price_ceiling_micro_usd": "999999999"}, "price_ceiling_micro_usd"),
        (_classification, "compliance/dataclassification", {"storage": "content", "level": "1"}, "level"),
    ],
    ids=["policy-set-approvals", "tier-price-ceiling", "classification-level"],
)
def test_review_rules_and_policy_inputs_are_read_only_in_the_admin(root, make, url, changes, field):
    obj = make()
    before = getattr(obj, field)
    response = post_change(root, f"/admin/{url}/{obj.pk}/change/", **changes)
    assert response.status_code == 302
    obj.refresh_from_db()
    assert getattr(obj, field) == before


@pytest.mark.parametrize(
    "model", ["compliance/matrixcell", "compliance/certificationholding", "portfolio/policyversion",
              "portfolio/changerequest", "registry/endpointcredential"],
)  # fmt: skip
def test_governance_decisions_cannot_be_added_or_changed_in_the_admin(root, model):
    assert root.get(f"/admin/{model}/add/").status_code == 403


def test_a_credentials_decision_cannot_be_edited_in_the_admin(root, alice):
    credential = approved_credential("PARTNER_API_KEY", ("127.0.0.1",))
    url = f"/admin/registry/endpointcredential/{credential.pk}/change/"
    root.post(url, {"hosts": '["attacker.example"]', "_save": "Save"})
    credential.refresh_from_db()
    assert credential.hosts == ["127.0.0.1"]
    assert not change_form(root, url).names & {"hosts", "env_var", "status"}


def test_governed_records_cannot_be_deleted_in_the_admin(root, bob):
    version = make_version(bob, status=Status.APPROVED)
    response = root.post(f"/admin/registry/modelversion/{version.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert ModelVersion.objects.filter(pk=version.pk).exists()
    provider = version.model.provider
    assert root.post(f"/admin/registry/provider/{provider.pk}/delete/", {"post": "yes"}).status_code == 403


def test_giving_someone_a_role_in_the_admin_is_audited(root, erin):
    officers = Group.objects.get(name=OFFICERS)
    response = post_change(root, f"/admin/auth/user/{erin.pk}/change/", groups=[str(officers.pk)])
    assert response.status_code == 302
    assert erin.groups.filter(pk=officers.pk).exists()
    event = AuditEvent.objects.get(action="admin.change", object_type="auth.user")
    assert event.before == {"groups": []} and event.after == {"groups": [OFFICERS]}


def test_an_admin_change_of_a_name_is_audited_with_before_and_after(root, bob):
    version = make_version(bob)
    provider = version.model.provider
    old_name = provider.name
    response = post_change(root, f"/admin/registry/provider/{provider.pk}/change/", name="Renamed", slug="evil")
    assert response.status_code == 302
    provider.refresh_from_db()
    assert (provider.name, provider.slug) == ("Renamed", provider.slug)
    event = AuditEvent.objects.get(action="admin.change", object_type="registry.provider")
    assert event.before == {"name": old_name} and event.after == {"name": "Renamed"}
    assert not EndpointCredential.objects.exists()
