"""The audit pages: who may see them, the trail with its chain status and filters, the changes feed,
the decisions explorer (filters, totals, keyset paging, constant queries, charts), a decision's
chain, violations and the dashboard panel."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audits.decisions import remove_expired_content
from audits.events import record
from audits.models import AuditEvent, DecisionRecord, Violation, ViolationKind
from audits.verification import verify_recent
from compliance.models import DataClassification, MatrixCell
from portfolio.feed import register_router
from registry.models import Status, VersionTransition

from ..factories import make_model, make_version
from .conftest import decision
from .test_decisions import post

pytestmark = pytest.mark.django_db

READERS = {"alice": 200, "bob": 200, "dave": 200, "erin": 403, None: 302}


@pytest.fixture
def people(alice, bob, carol, dave, erin):
    return {"alice": alice, "bob": bob, "carol": carol, "dave": dave, "erin": erin}


def client_as(people, username: str | None) -> Client:
    client = Client()
    if username:
        client.force_login(people[username])
    return client


def report(token: str, records: list[dict]) -> dict:
    """Post decision records as a router does."""
    response = post(Client(), token, records)
    assert response.status_code == 200, response.content
    return response.json()


def decision_ids(body: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-decision="(\d+)"', body)]


def event_seqs(body: str) -> list[int]:
    return [int(seq) for seq in re.findall(r'data-seq="(\d+)"', body)]


def figures(body: str) -> dict[str, dict]:
    """The plotly figures a page carries, by name."""
    scripts = re.findall(r'<script id="chart-(\w+)" type="application/json">(.*?)</script>', body)
    return {name: json.loads(json.loads(text)) for name, text in scripts}


def total(body: str, name: str) -> str:
    return re.search(rf'data-total="{name}">([^<]*)<', body).group(1)


@pytest.fixture
def mixed(world):
    """Decisions of every shape: fine ones, a fallback, an escalation, and one of each violation kind."""
    report(
        world["token"],
        [
            decision(1),
            decision(2, model="beta/small-b@1", fallback_used=True, cost_micro_usd=300),
            decision(3, model="acme/large-a@1", escalated=True, cost_micro_usd=5000),
            decision(4, model="beta/other@1"),  # model-not-allowed
            decision(5, policy_version=7),  # unknown-policy
            decision(6, classification="secret", input="patient 42"),  # no route and no cell for secret
        ],
    )
    return world


# --- who may see what -------------------------------------------------------------------------------

PAGES = [
    "/audit/",
    "/audit/export.csv",
    "/audit/changes/",
    "/audit/decisions/",
    "/audit/decisions/charts/",
    "/audit/decisions/{pk}/",
    "/audit/decisions/export.csv",
    "/audit/decisions/export.jsonl",
    "/audit/violations/",
]


@pytest.mark.parametrize("url", PAGES)
@pytest.mark.parametrize("username", ["alice", "bob", "dave", "erin", None])
def test_pages_by_role(people, mixed, url, username):
    pk = DecisionRecord.objects.get(request_id="req-1").pk
    response = client_as(people, username).get(url.format(pk=pk))
    assert response.status_code == READERS[username]
    if username is None:
        assert response["Location"].startswith("/login/")


def test_a_missing_decision_is_404(people, world):
    assert client_as(people, "dave").get("/audit/decisions/999999/").status_code == 404


# --- the audit trail ----------------------------------------------------------------------------------


def test_trail_shows_actor_action_diff_comment_and_request_id(people, proposed_version):
    client = client_as(people, "alice")
    client.post(
        f"/registry/versions/{proposed_version.pk}/approve/",
        {"comment": "Evaluations passed."},
        HTTP_X_REQUEST_ID="req-approve-0001",
    )
    event = AuditEvent.objects.get(action="model_version.approve")
    body = client_as(people, "dave").get("/audit/").content.decode()
    row = re.search(rf'<tr data-seq="{event.seq}">(.*?)</tr>', body, re.S).group(1)
    assert "alice" in row and "model_version.approve" in row
    assert f'href="/registry/versions/{proposed_version.pk}/"' in row
    assert "<del>proposed</del> → <ins>approved</ins>" in row
    assert "Evaluations passed." in row and 'title="req-approve-0001"' in row


def test_trail_filters_narrow_the_events(people, proposed_version, mistral_large):
    alice, bob = people["alice"], people["bob"]
    proposed_version.approve(alice, "fine")
    mine = record("test.note", actor=bob, object_type="test.thing", object_id="1", comment="bob's note")
    client = client_as(people, "dave")

    by_bob = event_seqs(client.get("/audit/", {"person": "bob"}).content.decode())
    assert mine.seq in by_bob
    assert set(by_bob) == set(AuditEvent.objects.filter(actor_name="bob").values_list("seq", flat=True))

    approvals = event_seqs(client.get("/audit/", {"action": "model_version.approve"}).content.decode())
    assert approvals == list(AuditEvent.objects.filter(action="model_version.approve").values_list("seq", flat=True))

    things = event_seqs(client.get("/audit/", {"object_type": "test.thing"}).content.decode())
    assert things == [mine.seq]

    today = timezone.now().date()
    assert event_seqs(client.get("/audit/", {"since": str(today + dt.timedelta(days=1))}).content.decode()) == []
    assert event_seqs(client.get("/audit/", {"until": str(today - dt.timedelta(days=1))}).content.decode()) == []
    assert mine.seq in event_seqs(client.get("/audit/", {"since": str(today), "until": str(today)}).content.decode())

    partial = client.get("/audit/", {"person": "bob"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="trail-results")
    body = partial.content.decode()
    assert body.startswith('<div id="trail-results">') and "chain-status" not in body


def test_trail_pages_by_keyset(people, db):
    client = client_as(people, "dave")  # signing in is event #1
    for i in range(120):
        record("test.step", object_type="test", object_id=str(i))
    first = client.get("/audit/").content.decode()
    assert event_seqs(first) == list(range(121, 71, -1))
    older = re.search(r'href="\?older=([^"]+)"', first).group(1)
    second = client.get(f"/audit/?older={older}").content.decode()
    assert event_seqs(second) == list(range(71, 21, -1))
    newer = re.search(r'href="\?newer=([^"]+)"', second).group(1)
    assert event_seqs(client.get(f"/audit/?newer={newer}").content.decode()) == list(range(121, 71, -1))
    third = client.get("/audit/?older=" + re.search(r'href="\?older=([^"]+)"', second).group(1)).content.decode()
    assert event_seqs(third) == list(range(21, 0, -1)) and "?older=" not in third
    # A cursor that does not parse is the first page, not an error.
    assert event_seqs(client.get("/audit/?older=nonsense").content.decode())[0] == 121


def test_chain_status_shows_the_last_verification_intact_then_broken_after_tampering(people, db):
    client = client_as(people, "dave")  # signing in is event #1
    for i in range(4):
        record("test.step", object_type="test", object_id=str(i), comment=f"step {i}")
    body = client.get("/audit/").content.decode()
    assert 'class="chain-status chain-unknown"' in body and "Not verified yet." in body
    verify_recent()
    body = client.get("/audit/").content.decode()
    assert 'class="chain-status chain-ok"' in body and "Chain intact</strong> up to #5" in body
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audits_auditevent DISABLE TRIGGER audits_auditevent_append_only")
        cursor.execute("UPDATE audits_auditevent SET comment = 'nothing to see' WHERE seq = 3")
        cursor.execute("ALTER TABLE audits_auditevent ENABLE TRIGGER audits_auditevent_append_only")
    assert 'class="chain-status chain-ok"' in client.get("/audit/").content.decode()  # until verified again
    verify_recent()
    body = client.get("/audit/").content.decode()
    assert 'class="chain-status chain-broken"' in body
    assert "Chain broken at #3:</strong> event #3 was changed after it was written." in body


def test_exporting_the_trail_is_itself_recorded(people, proposed_version):
    proposed_version.approve(people["alice"], "fine")
    response = client_as(people, "dave").get("/audit/export.csv", {"action": "model_version.approve"})
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].startswith("seq,at,actor_name,action,")
    assert len(lines) == 2 and ",alice,model_version.approve," in lines[1]
    export = AuditEvent.objects.get(action="export.audit_events")
    assert export.actor_name == "dave" and export.after["filters"] == {"action": "model_version.approve"}


# --- the changes feed -----------------------------------------------------------------------------------


def test_changes_feed_links_objects_and_filters_by_person_type_and_date(people, world):
    client = client_as(people, "dave")
    record("auth.sign_in", actor=people["bob"], object_type="auth.user", object_repr="bob")
    body = client.get("/audit/changes/").content.decode()
    version = world["versions"]["a"]
    cell = MatrixCell.objects.get(model_version=version)
    change = world["policy_version"].change_request
    assert f'href="/compliance/matrix/cell/{version.pk}/internal/"' in body
    assert f'href="/policies/changes/{change.pk}/"' in body
    assert 'href="/policies/production/versions/1/"' in body
    assert "auth.sign_in" not in body

    cells = client.get("/audit/changes/", {"object_type": "compliance.matrixcell"}).content.decode()
    assert set(event_seqs(cells)) == set(
        AuditEvent.objects.filter(object_type="compliance.matrixcell").values_list("seq", flat=True)
    )
    assert str(cell) in cells
    by_carol = client.get("/audit/changes/", {"person": "carol"}).content.decode()
    assert set(event_seqs(by_carol)) == set(AuditEvent.objects.filter(actor_name="carol").values_list("seq", flat=True))
    assert "change_request.review.approve" in by_carol
    tomorrow = str(timezone.now().date() + dt.timedelta(days=1))
    assert event_seqs(client.get("/audit/changes/", {"since": tomorrow}).content.decode()) == []


# --- the decisions explorer --------------------------------------------------------------------------------


def test_explorer_filters_narrow_results_and_totals(people, mixed):
    client = client_as(people, "dave")
    by_request = dict(DecisionRecord.objects.values_list("request_id", "pk"))

    def shown(**filters) -> set[str]:
        body = client.get("/audit/decisions/", filters).content.decode()
        names = {pk: request_id for request_id, pk in by_request.items()}
        return {names[pk] for pk in decision_ids(body)}

    every = {f"req-{i}" for i in range(1, 7)}
    assert shown() == every
    assert shown(model="beta/small-b@1") == {"req-2"}
    assert shown(classification="secret") == {"req-6"}
    assert shown(policy_version=7) == {"req-5"}
    assert shown(violation="no") == {"req-1", "req-2", "req-3"}
    assert shown(violation="yes") == {"req-4", "req-5", "req-6"}
    assert shown(violation=ViolationKind.MODEL_NOT_ALLOWED) == {"req-4", "req-6"}
    assert shown(violation=ViolationKind.NOT_USABLE) == {"req-6"}
    assert shown(router="edge-1") == every
    assert shown(task="ticket-triage", policy_set="production") == every
    tomorrow = str(timezone.now().date() + dt.timedelta(days=1))
    assert shown(since=tomorrow) == set()

    body = client.get("/audit/decisions/").content.decode()
    assert total(body, "decisions") == "6" and total(body, "violations") == "3"
    assert total(body, "cost") == "$0.005876"  # 144 * 4 + 300 + 5000 micro-USD
    narrowed = client.get(
        "/audit/decisions/", {"violation": "yes"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="decision-results"
    ).content.decode()
    assert narrowed.startswith('<div id="decision-results">') and total(narrowed, "decisions") == "3"
    # The export links carry the filters, the default window included.
    exported = re.search(r'href="/audit/decisions/export\.csv\?([^"]+)"', narrowed).group(1).split("&amp;")
    assert sorted(exported) == [f"since={timezone.now().date() - dt.timedelta(days=29)}", "violation=yes"]


def test_explorer_shows_the_last_30_days_unless_the_window_is_cleared(people, world):
    old = (timezone.now() - dt.timedelta(days=45)).isoformat()
    report(world["token"], [decision(1), decision(2, occurred_at=old)])
    client = client_as(people, "dave")
    assert len(decision_ids(client.get("/audit/decisions/").content.decode())) == 1
    assert len(decision_ids(client.get("/audit/decisions/?since=").content.decode())) == 2


def test_bad_filters_are_shown_not_500(people, world):
    client = client_as(people, "dave")
    response = client.get("/audit/decisions/", {"since": "yesterday", "violation": "maybe", "older": "x~y"})
    assert response.status_code == 200
    assert "since: Enter a valid date." in response.content.decode()
    assert client.get("/audit/decisions/export.csv", {"violation": "maybe"}).status_code == 400
    assert client.get("/audit/?person=nobody").status_code == 200


def test_explorer_pages_by_keyset_without_counting(people, world):
    base = timezone.now() - dt.timedelta(hours=1)
    # Pairs of decisions at the same instant: the key's second column (the id) must break the ties.
    report(
        world["token"],
        [decision(i, occurred_at=(base + dt.timedelta(seconds=i // 2)).isoformat()) for i in range(120)],
    )
    client = client_as(people, "dave")
    expected = list(DecisionRecord.objects.order_by("-occurred_at", "-pk").values_list("pk", flat=True))
    seen, url = [], "/audit/decisions/"
    while url:
        body = client.get(url, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="decision-table").content.decode()
        assert 'id="decision-totals"' not in body  # paging does not redo the totals
        seen += decision_ids(body)
        older = re.search(r'href="\?([^"]*older=[^"]+)"', body)
        url = f"/audit/decisions/?{older.group(1).replace('&amp;', '&')}" if older else ""
    assert seen == expected


def _explorer_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/audit/decisions/")
    assert response.status_code == 200
    return len(captured)


def test_explorer_queries_do_not_grow_with_decisions(people, world, alice):
    client = client_as(people, "dave")
    second, token = register_router(world["policy_set"], "edge-2", by=alice)
    report(world["token"], [decision(i, model="beta/other@1" if i % 3 else "acme/small-a@1") for i in range(10)])
    report(token, [decision(i, policy_version=2 if i % 2 else 1) for i in range(10)])
    few = _explorer_queries(client)
    report(world["token"], [decision(i, model="beta/other@1" if i % 3 else "acme/small-a@1") for i in range(10, 100)])
    report(token, [decision(i, classification="secret" if i % 2 else "internal") for i in range(10, 100)])
    assert DecisionRecord.objects.count() == 200
    assert _explorer_queries(client) == few


def test_charts_are_aggregated_per_day_by_the_chosen_grouping(people, mixed):
    client = client_as(people, "dave")
    response = client.get("/audit/decisions/charts/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="chart-panel")
    drawn = figures(response.content.decode())
    assert set(drawn) == {"decisions", "cost", "escalation", "violations"}
    by_provider = {trace["name"]: sum(trace["y"]) for trace in drawn["decisions"]["data"]}
    assert by_provider == {"acme": 4, "beta": 2}
    cost = {trace["name"]: sum(trace["y"]) for trace in drawn["cost"]["data"]}
    assert cost == {"acme": pytest.approx((144 * 3 + 5000) / 1e6), "beta": pytest.approx((300 + 144) / 1e6)}
    escalation = drawn["escalation"]["data"][0]
    assert escalation["y"] == ["ticket-triage"] and escalation["x"] == [pytest.approx(100 / 6, abs=0.01)]
    assert escalation["customdata"] == [[1666, 6]]
    kinds = {trace["name"]: sum(trace["y"]) for trace in drawn["violations"]["data"]}
    assert kinds["Model not allowed by the policy"] == 2 and kinds["Unknown policy version"] == 1

    by_tier = figures(client.get("/audit/decisions/charts/?group=tier", HTTP_HX_REQUEST="true").content.decode())
    assert {trace["name"]: sum(trace["y"]) for trace in by_tier["decisions"]["data"]} == {"small": 5, "large": 1}
    page = client.get("/audit/decisions/charts/?group=model&violation=no")
    assert page.status_code == 200 and "<h1>Decision charts</h1>" in page.content.decode()
    by_model = figures(page.content.decode())
    assert {trace["name"] for trace in by_model["decisions"]["data"]} == {
        "acme/small-a@1",
        "beta/small-b@1",
        "acme/large-a@1",
    }


def _approve_transition(version, officer, comment: str) -> VersionTransition:
    """The approval a version made by the bulk factory did not go through."""
    return VersionTransition.objects.create(
        version=version,
        action="approve",
        from_status=Status.PROPOSED,
        to_status=Status.APPROVED,
        actor=officer,
        comment=comment,
        at=timezone.now() - dt.timedelta(days=2),
    )


def test_decision_page_shows_the_whole_chain(people, world):
    _approve_transition(world["versions"]["a"], people["alice"], "Passed the triage suite.")
    report(world["token"], [decision(1, occurred_at=timezone.now().isoformat())])
    found = DecisionRecord.objects.get()
    body = client_as(people, "dave").get(f"/audit/decisions/{found.pk}/").content.decode()
    version = world["versions"]["a"]
    policy = world["policy_version"]
    change = policy.change_request
    # The decision, with its content (internal data keeps content).
    assert "Ticket 1: my invoice is wrong" in body and found.input_sha256 in body
    # → the model version and who approved it.
    assert f'href="/registry/versions/{version.pk}/"' in body
    approval = re.search(r'id="model-approval">(.*?)</div>', body, re.S).group(1)
    assert "Approved by alice" in approval and "Passed the triage suite." in approval
    # → the policy version, its change request with author and approvers, its signed release.
    assert 'href="/policies/production/versions/1/"' in body
    assert f'href="/policies/changes/{change.pk}/">CR-{change.pk}: first</a> <span class="muted">by bob' in body
    assert re.search(r'id="policy-approvers">carol<', body)
    assert policy.release.sha256 in body
    assert "the route&#x27;s primary model" in body
    # → the matrix cell's approval, and the verdict at the time.
    cell = re.search(r'id="cell-approval">(.*?)</dl>', body, re.S).group(1)
    assert "Approved" in cell and "<strong>alice</strong>" in cell and "internal data is fine" in cell
    assert re.search(r'id="verdict-state">Usable<', body)
    assert 'id="violations">None' in body


def test_the_chain_api_answers_what_the_decision_page_shows(people, world):
    _approve_transition(world["versions"]["a"], people["alice"], "Passed the triage suite.")
    report(world["token"], [decision(1, occurred_at=timezone.now().isoformat()), decision(2, model="beta/other@1")])
    first = DecisionRecord.objects.get(request_id="req-1")
    change = world["policy_version"].change_request
    body = client_as(people, "dave").get(f"/api/v1/decisions/{first.pk}/chain").json()
    assert body["model_version"]["ref"] == "acme/small-a@1" and body["model_version"]["approved_by"] == "alice"
    assert body["policy_version"]["number"] == 1 and body["policy_version"]["expired_at_decision"] is False
    assert body["change_request"]["id"] == change.pk and body["change_request"]["author"] == "bob"
    assert [a["reviewer"] for a in body["change_request"]["approvers"]] == ["carol"]
    assert body["route"]["model"] == "acme/small-a@1" and body["place"] == "the route's primary model"
    assert body["compliance"]["usable"] is True and body["violations"] == []
    other = DecisionRecord.objects.get(request_id="req-2")
    off_policy = client_as(people, "dave").get(f"/api/v1/decisions/{other.pk}/chain").json()
    assert off_policy["place"] == "not allowed by this route"
    assert [v["kind"] for v in off_policy["violations"]] == ["model-not-allowed"]
    assert client_as(people, "dave").get("/api/v1/decisions/999999/chain").status_code == 404
    assert client_as(people, "erin").get(f"/api/v1/decisions/{first.pk}/chain").status_code == 403


def test_decision_page_marks_digests_retention_and_violations(people, world):
    DataClassification.objects.filter(slug="internal").update(retention_days=1)
    report(world["token"], [decision(1, classification="secret", input="patient 42"), decision(2)])
    secret = DecisionRecord.objects.get(request_id="req-1")
    client = client_as(people, "dave")
    body = client.get(f"/audit/decisions/{secret.pk}/").content.decode()
    assert "patient 42" not in body and "digest only" in body and secret.input_sha256 in body
    assert "Model not usable in the compliance matrix" in body
    assert "Nobody has requested or decided this cell." in body

    remove_expired_content(now=timezone.now() + dt.timedelta(days=3))  # the day its retention ended is over
    removed = DecisionRecord.objects.get(request_id="req-2")
    assert "content removed by retention" in client.get(f"/audit/decisions/{removed.pk}/").content.decode()


def test_decision_page_of_an_unknown_model_and_policy(people, world):
    report(world["token"], [decision(1, model="nobody/ghost@1", policy_version=9)])
    found = DecisionRecord.objects.get()
    body = client_as(people, "dave").get(f"/audit/decisions/{found.pk}/").content.decode()
    assert "nobody/ghost@1 is not in the registry." in body
    assert "production v9 was never published." in body


def test_cell_approval_at_the_decision_and_since(people, world):
    version = world["versions"]["b"]
    now = timezone.now().isoformat()  # after the world's cell approvals
    report(world["token"], [decision(1, model="beta/small-b@1", fallback_used=True, occurred_at=now)])
    MatrixCell.objects.get(model_version=version).suspend(people["carol"], "Provider incident")
    found = DecisionRecord.objects.get()
    body = client_as(people, "dave").get(f"/audit/decisions/{found.pk}/").content.decode()
    cell = re.search(r'id="cell-approval">(.*?)</dl>', body, re.S).group(1)
    assert "<strong>alice</strong>" in cell and "Since then" in cell and "suspended on" in cell
    assert "fallback #1" in body


# --- violations and the dashboard ----------------------------------------------------------------------------


def test_violations_page_filters_and_links_to_decisions(people, mixed):
    client = client_as(people, "dave")
    body = client.get("/audit/violations/").content.decode()
    assert len(re.findall(r"data-violation=", body)) == Violation.objects.count()
    unknown = Violation.objects.get(kind=ViolationKind.UNKNOWN_POLICY)
    assert f'href="/audit/decisions/{unknown.decision_id}/"' in body
    only = client.get("/audit/violations/", {"kind": ViolationKind.UNKNOWN_POLICY}).content.decode()
    assert re.findall(r'data-violation="(\d+)"', only) == [str(unknown.pk)]
    assert "data-violation" not in client.get("/audit/violations/", {"policy_set": "staging"}).content.decode()
    tomorrow = str(timezone.now().date() + dt.timedelta(days=1))
    assert "data-violation" not in client.get("/audit/violations/", {"since": tomorrow}).content.decode()


def test_dashboard_counts_violations_of_the_last_week_by_kind(people, mixed):
    Violation.objects.filter(kind=ViolationKind.UNKNOWN_POLICY).update(
        detected_at=timezone.now() - dt.timedelta(days=8)
    )
    body = client_as(people, "dave").get("/").content.decode()
    panel = re.search(r'id="violations-panel">(.*?)</section>', body, re.S).group(1)
    assert re.search(r'data-kind="model-not-allowed">2<', panel)
    assert 'data-kind="unknown-policy"' not in panel
    assert "/audit/violations/?kind=model-not-allowed&amp;since=" in panel


def test_dashboard_panel_says_when_there_are_none(people, world):
    body = client_as(people, "bob").get("/").content.decode()
    assert "Violations in the last 7 days" in body and "None: every reported decision" in body


def test_pages_answer_without_any_data(people, db):
    # No policy, no router, no decisions: every page still answers.
    client = client_as(people, "bob")
    for url in ("/audit/", "/audit/changes/", "/audit/decisions/", "/audit/decisions/charts/", "/audit/violations/"):
        assert client.get(url).status_code == 200


def test_explorer_links_models_to_their_registry_page(people, world, bob):
    version = make_version(bob, model=make_model(slug="extra"), version="9", status=Status.APPROVED)
    report(world["token"], [decision(1, model=version.ref)])
    body = client_as(people, "dave").get("/audit/decisions/").content.decode()
    assert f'<a href="/registry/versions/{version.pk}/">{version.ref}</a>' in body
