"""The top bar's search: versions, models, change requests, routers and decisions by request id, each
kind only for those who may read it, in one query per kind."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audits.models import DecisionRecord
from portfolio.models import Router
from portfolio.publishing import start_change
from registry.models import Status
from tests.factories import make_model, make_policy_set, make_provider, make_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(bob):
    provider = make_provider(name="Mistral AI", slug="mistral")
    large = make_model(provider=provider, name="Mistral Large", slug="mistral-large", family="mistral")
    make_version(bob, model=large, version="2411", status=Status.APPROVED)
    make_version(bob, model=make_model(provider=provider, name="Codestral", slug="codestral"), version="25.01")
    policy_set = make_policy_set("production")
    change = start_change(policy_set, bob, "Move triage to Mistral Large", "cheaper", "default: deny\nroutes: []\n")
    router = Router.objects.create(name="eu-gateway", policy_set=policy_set, token_hash="a" * 64, token_prefix="swr_a")
    now = timezone.now()
    DecisionRecord.objects.create(
        router=router,
        policy_set="production",
        request_id="req-7f3a9c",
        occurred_at=now,
        task="ticket-triage",
        classification="internal",
        model="mistral/mistral-large@2411",
        policy_version=1,
        latency_ms=120,
        input_tokens=10,
        output_tokens=5,
        cost_micro_usd=30,
    )
    return {"change": change}


def _titles(response) -> dict[str, list[str]]:
    html = response.content.decode()
    found = {}
    for kind, body in re.findall(
        r'<section class="card search-kind">\s*<h2>([^<]+?) <span.*?</h2>(.*?)</section>', html, re.S
    ):
        found[kind.strip()] = re.findall(r'<li><a href="[^"]+">([^<]+)</a>', body)
    return found


def test_each_kind_is_found(client_for, alice, world) -> None:
    officer = client_for(alice)
    found = _titles(officer.get("/search/", {"q": "mistral large"}))
    assert found["Model versions"] == ["mistral/mistral-large@2411"]
    assert found["Models"] == ["Mistral Large"]
    assert found["Change requests"] == [f"CR-{world['change'].pk}: Move triage to Mistral Large"]

    assert _titles(officer.get("/search/", {"q": f"CR-{world['change'].pk}"}))["Change requests"] == [
        f"CR-{world['change'].pk}: Move triage to Mistral Large"
    ]
    assert _titles(officer.get("/search/", {"q": "eu-gate"}))["Routers"] == ["eu-gateway"]
    assert _titles(officer.get("/search/", {"q": "req-7f3a9c"}))["Decisions (by request id)"] == ["req-7f3a9c"]
    # A request id is looked up whole: part of one finds nothing.
    assert _titles(officer.get("/search/", {"q": "req-7f3"}))["Decisions (by request id)"] == []


def test_each_kind_only_for_those_who_may_read_it(client_for, alice, bob, dave, erin, world) -> None:
    kinds = {
        "Model versions": "registry.view_modelversion",
        "Change requests": "portfolio.view_changerequest",
        "Routers": "portfolio.view_router",
        "Decisions (by request id)": "audits.view_decisionrecord",
    }
    for user in (alice, bob, dave, erin):
        found = _titles(client_for(user).get("/search/", {"q": "req-7f3a9c"}))
        for kind, permission in kinds.items():
            assert (kind in found) == user.has_perm(permission), (user.username, kind)
    assert _titles(client_for(erin).get("/search/", {"q": "mistral"})) == {}  # signed in, no role: nothing
    anonymous = Client().get("/search/", {"q": "mistral"})
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]


def test_one_query_per_kind_and_bad_input_is_a_clear_400(client_for, alice, world) -> None:
    officer = client_for(alice)
    officer.get("/search/", {"q": "x"})  # the session and the user, read once
    with CaptureQueriesContext(connection) as few:
        officer.get("/search/", {"q": "mistral"})
    make_version(alice, model=make_model(provider=make_provider(name="Other", slug="other"), slug="mistral-tiny"))
    with CaptureQueriesContext(connection) as more:
        officer.get("/search/", {"q": "mistral"})
    assert len(more) == len(few)

    too_long = officer.get("/search/", {"q": "m" * 101})
    assert too_long.status_code == 400 and "q: at most 100 characters" in too_long.content.decode()
    assert officer.get("/search/", {"q": "a\x00b"}).status_code == 400
    assert officer.get("/search/").status_code == 200
