"""Decisions judged as of the moment they were made: the policy version as published then, the
version's lifecycle status, the matrix cell's decision and the certifications on record then.

One world lives through five days (``elapse`` moves everything Steward recorded back in time, as if
the days had passed); decisions dated across those days are then reported at once. Each is flagged
for exactly what was wrong at its moment, and its chain page says the same.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection
from django.db.models import F
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audits.models import DecisionRecord, Violation, ViolationKind
from compliance.models import CertificationHolding, DataClassification, MatrixCell
from portfolio.models import ChangeRequest, PolicyRelease, PolicyVersion, Review
from registry.models import ModelVersion, VersionTransition

from ..factories import ROUTED_POLICY, certification, make_holding, publish_through_review
from .conftest import decision
from .test_decisions import post

pytestmark = pytest.mark.django_db

# The route of v2: v1's without the escalation to acme/large-a@1 (retired by then).
SECOND_POLICY = ROUTED_POLICY.split("    escalation:")[0]

DAY = dt.timedelta(days=1)
MOMENTS = (
    (MatrixCell, ("requested_at", "decided_at", "expires_at", "suspended_at")),
    (MatrixCell.history.model, ("history_date", "requested_at", "decided_at", "expires_at", "suspended_at")),
    (ModelVersion, ("status_changed_at", "proposed_at")),
    (ModelVersion.history.model, ("history_date", "status_changed_at", "proposed_at")),
    (VersionTransition, ("at",)),
    (CertificationHolding, ("recorded_at", "valid_from", "valid_until")),
    (PolicyVersion, ("published_at",)),
    (PolicyRelease, ("issued_at", "expires")),
    (ChangeRequest, ("created_at", "updated_at")),
    (Review, ("created_at",)),
)


def elapse(days: int) -> None:
    """``days`` pass: every moment Steward recorded moves that far into the past.

    Published versions and releases refuse UPDATE in the database; moving the clock is the one
    change the test makes past those triggers (as the test database's superuser), then they are on again.
    The judging epoch's triggers are off meanwhile too, so the epoch is moved on by hand: a book kept
    by ingest is read again (audits migration 0012).
    """
    delta = dt.timedelta(days=days)
    with _past_the_immutability_triggers():
        for model, fields in MOMENTS:
            model._base_manager.update(**{name: F(name) - delta for name in fields})


@contextmanager
def _past_the_immutability_triggers() -> Iterator[None]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
            try:
                yield
            finally:
                cursor.execute("SET session_replication_role = DEFAULT")
                cursor.execute("UPDATE audits_judgingepoch SET value = nextval('audits_judging_epoch_seq')")
            return
        # SQLite: the migration's triggers, dropped and made again in the test's transaction.
        triggers = cursor.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name LIKE 'portfolio_policy%'"
        ).fetchall()
        for name, _ in triggers:
            cursor.execute(f'DROP TRIGGER "{name}"')
        try:
            yield
        finally:
            for _, sql in triggers:
                cursor.execute(sql)


@pytest.fixture
def lived(world, alice, carol, bob):
    """Five days of a world's life, as days ago at the end:

    -5  the world: v1 published; internal data requires SOC 2; Acme holds it, Beta until day -3
    -4  carol denies beta/small-b@1 for internal (an incident)
    -3  alice approves it again
    -2  acme/large-a@1 deprecated and retired; Beta's SOC 2 has lapsed (its last day was day -3)
    -1  Beta's SOC 2 renewed (valid from day -1); v2 published (other routes: no escalation)
    """
    today = timezone.now().date()
    make_holding(world["versions"]["a"].model.provider, "soc2-type2", alice, days_left=300)
    make_holding(world["versions"]["b"].model.provider, "soc2-type2", alice, days_left=2)
    DataClassification.objects.get(slug="internal").required_certifications.set([certification("soc2-type2")])
    elapse(1)
    cell_b = MatrixCell.objects.get(model_version=world["versions"]["b"], classification__slug="internal")
    cell_b.deny(carol, "Provider incident")
    elapse(1)
    cell_b.refresh_from_db()
    cell_b.approve(alice, "Incident closed")
    elapse(1)
    large = world["versions"]["large"]
    large.deprecate(alice, "Superseded by a newer model")
    large.retire(alice, "No longer served")
    elapse(1)
    make_holding(
        world["versions"]["b"].model.provider,
        "soc2-type2",
        alice,
        valid_from=timezone.now().date(),
        valid_until=timezone.now().date() + dt.timedelta(days=365),
    )
    second = publish_through_review(world["policy_set"], SECOND_POLICY, bob, [carol], title="no escalation")
    elapse(1)
    lapsed, renewed = CertificationHolding.objects.filter(provider__slug="beta").order_by("recorded_at")
    assert (lapsed.valid_until, renewed.valid_from) == (today - 3 * DAY, today - DAY)
    return {**world, "second": PolicyVersion.objects.get(pk=second.pk)}


def ago(delta: dt.timedelta) -> str:
    return (timezone.now() - delta).isoformat()


def from_v2(minutes: int):
    """A moment ``minutes`` after v2's publication (before it, when negative)."""
    return lambda w: (w["second"].published_at + dt.timedelta(minutes=minutes)).isoformat()


SMALL_B = {"model": "beta/small-b@1", "fallback_used": True}
LARGE_A = {"model": "acme/large-a@1", "escalated": True}
NO_VIOLATION: set[str] = set()

# (name, fields of the decision, the kinds it is flagged for)
CASES = [
    ("fine at first", {"occurred_at": lambda w: ago(4.5 * DAY)}, NO_VIOLATION),
    # The cell: denied at day -4, approved again at day -3.
    ("cell approved after the decision", {**SMALL_B, "occurred_at": lambda w: ago(3.5 * DAY)}, {"not-usable"}),
    ("cell approved before the decision", {**SMALL_B, "occurred_at": lambda w: ago(4.5 * DAY)}, NO_VIOLATION),
    # The version: retired at day -2.
    ("version retired before the decision", {**LARGE_A, "occurred_at": lambda w: ago(1.5 * DAY)}, {"not-usable"}),
    ("version retired after the decision", {**LARGE_A, "occurred_at": lambda w: ago(4.5 * DAY)}, NO_VIOLATION),
    # The certificate: lapsed after day -3, renewed from day -1.
    ("certificate expired then, renewed since", {**SMALL_B, "occurred_at": lambda w: ago(2 * DAY)}, {"not-usable"}),
    ("certificate valid then", {**SMALL_B, "policy_version": 2, "occurred_at": lambda w: ago(0.5 * DAY)}, NO_VIOLATION),
    # The policy: v2 published at day -1.
    ("v2 not yet published", {"policy_version": 2, "occurred_at": lambda w: ago(1.5 * DAY)}, {"unpublished-policy"}),
    (
        "v2 dated within the clock slack before its publication",
        {"policy_version": 2, "occurred_at": from_v2(-2)},
        NO_VIOLATION,
    ),
    ("v2 published", {"policy_version": 2, "occurred_at": lambda w: ago(0.5 * DAY)}, NO_VIOLATION),
    ("v1 superseded beyond the grace window", {"occurred_at": lambda w: ago(0.5 * DAY)}, {"superseded-policy"}),
    (
        "v1 superseded within the grace window",
        {"occurred_at": from_v2(10)},
        NO_VIOLATION,
    ),
    ("v1 before v2", {"occurred_at": lambda w: ago(1.5 * DAY)}, NO_VIOLATION),
]


def _report(lived) -> dict[str, DecisionRecord]:
    records = [
        decision(n, **{name: value(lived) if callable(value) else value for name, value in fields.items()})
        for n, (_, fields, _) in enumerate(CASES)
    ]
    response = post(Client(), lived["token"], records)
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == len(CASES)
    return {name: DecisionRecord.objects.get(request_id=f"req-{n}") for n, (name, _, _) in enumerate(CASES)}


def _kinds(found: DecisionRecord) -> set[str]:
    return set(Violation.objects.filter(decision=found).values_list("kind", flat=True))


@pytest.fixture
def reported(lived):
    return _report(lived)


@pytest.mark.parametrize(("name", "expected"), [(name, kinds) for name, _, kinds in CASES])
def test_each_decision_is_flagged_for_what_was_wrong_at_its_moment(reported, name, expected):
    found = reported[name]
    assert _kinds(found) == expected, [v.detail for v in found.violations.all()]
    assert found.has_violation == bool(expected)


def test_the_violations_say_what_stood_at_the_moment(reported, lived):
    def detail(name: str) -> str:
        return reported[name].violations.get().detail

    assert "denied by carol: Provider incident" in detail("cell approved after the decision")
    assert "model version is retired, not approved" in detail("version retired before the decision")
    assert "SOC 2 Type II expired on" in detail("certificate expired then, renewed since")
    assert "production v2 was published at" in detail("v2 not yet published")
    superseded = detail("v1 superseded beyond the grace window")
    assert "production v1 had been superseded since" in superseded and "v2 in force" in superseded


def _page(client: Client, found: DecisionRecord) -> dict:
    """What the chain page says, section by section."""
    body = client.get(f"/audit/decisions/{found.pk}/").content.decode()
    status = re.search(r'id="model-status-then">(.*?)</p>', body, re.S).group(1)
    in_force = re.search(r'id="policy-in-force">(.*?)</p>', body, re.S).group(1)
    return {
        "badge": "no violations" if 'status-approved">no violations<' in body else "violations",
        "model": "bad" if 'class="bad"' in status else "ok",
        "approval": "bad" if 'class="bad" id="model-approval"' in body else "ok",
        "policy": "bad" if 'class="bad"' in in_force else "ok",
        "verdict": re.search(r'id="verdict-state">([^<]*)<', body).group(1),
    }


POLICY_KINDS = {ViolationKind.UNPUBLISHED_POLICY, ViolationKind.SUPERSEDED_POLICY}


@pytest.mark.parametrize("name", [name for name, _, _ in CASES])
def test_the_chain_page_shows_the_verdict_of_the_violation(reported, client_for, dave, name):
    found = reported[name]
    kinds = _kinds(found)
    page = _page(client_for(dave), found)
    assert page["badge"] == ("violations" if kinds else "no violations")
    assert page["policy"] == ("bad" if kinds & POLICY_KINDS else "ok")
    assert (page["verdict"] == "Usable") == (ViolationKind.NOT_USABLE not in kinds)
    if page["model"] == "ok":
        assert page["approval"] == "ok"  # never "approved then" beside "never approved"
    if name == "version retired before the decision":
        assert page["model"] == "bad"
    elif name == "version retired after the decision":
        assert page["model"] == "ok"  # retired now, approved then
    chain = client_for(dave).get(f"/api/v1/decisions/{found.pk}/chain").json()
    assert chain["compliance"]["usable"] == (ViolationKind.NOT_USABLE not in kinds)
    assert {v["kind"] for v in chain["violations"]} == kinds


def test_a_decision_in_the_clock_slack_is_judged_at_the_publication(reported, lived, client_for, dave):
    found = reported["v2 dated within the clock slack before its publication"]
    body = client_for(dave).get(f"/audit/decisions/{found.pk}/").content.decode()
    judged = re.search(r'id="judged-at">(.*?)</dd>', body, re.S).group(1)
    assert f"{lived['second'].published_at:%Y-%m-%d %H:%M:%S}" in judged and "clock slack" in judged


def test_without_the_clock_slack_that_decision_is_not_yet_published(lived, settings):
    settings.STEWARD_DECISION_CLOCK_SLACK_SECONDS = 0
    found = _report(lived)["v2 dated within the clock slack before its publication"]
    assert _kinds(found) == {ViolationKind.UNPUBLISHED_POLICY}


def test_a_shorter_grace_window_flags_the_late_router(lived, settings):
    settings.STEWARD_POLICY_GRACE_SECONDS = 5 * 60
    found = _report(lived)["v1 superseded within the grace window"]
    assert _kinds(found) == {ViolationKind.SUPERSEDED_POLICY}


def test_a_re_signed_copy_does_not_supersede_its_routes(lived):
    from portfolio.signing import resign

    resign(lived["policy_set"])  # v3: v2's routes under a new number
    response = post(Client(), lived["token"], [decision(1, policy_version=2, occurred_at=timezone.now().isoformat())])
    assert response.json()["violations"] == 0


def test_judging_a_batch_costs_the_same_queries_for_many_moments(lived):
    def queries(records: list[dict]) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert post(Client(), lived["token"], records).json()["accepted"] == len(records)
        return len(captured)

    queries([decision(99)])  # the router's token is looked up once, then cached
    few = queries([decision(100 + n, occurred_at=ago(n * DAY / 4)) for n in range(2)])
    many = queries([decision(200 + n, **SMALL_B, occurred_at=ago(n * DAY / 4)) for n in range(20)])
    assert many == few


def test_a_holding_recorded_after_the_decision_does_not_cover_it_even_back_dated(lived, alice):
    today = timezone.now().date()
    beta = lived["versions"]["b"].model.provider
    make_holding(beta, "soc2-type2", alice, valid_from=today - 10 * DAY, valid_until=today + 300 * DAY)
    found = _report(lived)["certificate expired then, renewed since"]
    assert _kinds(found) == {ViolationKind.NOT_USABLE}
    assert "SOC 2 Type II expired on" in found.violations.get().detail


def test_what_was_recorded_after_a_decision_arrived_changes_neither_its_violations_nor_its_page(
    lived, client_for, dave, bob, carol
):
    """A router reports a version that does not exist yet, dated ahead of Steward's clock; the version
    is published afterwards, before that date. The record keeps its violation, and its page still
    says what stood when it arrived."""
    ahead = (timezone.now() + dt.timedelta(hours=1)).isoformat()
    post(Client(), lived["token"], [decision(1, policy_version=3, occurred_at=ahead)])
    found = DecisionRecord.objects.get(request_id="req-1")
    assert _kinds(found) == {ViolationKind.UNKNOWN_POLICY}
    publish_through_review(
        lived["policy_set"], SECOND_POLICY.replace("    fallbacks: [beta/small-b@1]\n", ""), bob, [carol]
    )
    body = client_for(dave).get(f"/audit/decisions/{found.pk}/").content.decode()
    assert "production v3 was published only on" in body and "after Steward received this decision" in body
    chain = client_for(dave).get(f"/api/v1/decisions/{found.pk}/chain").json()
    assert chain["policy_version"] is None
    assert {v["kind"] for v in chain["violations"]} == _kinds(found) == {ViolationKind.UNKNOWN_POLICY}


def test_judging_from_clean_stretches_answers_as_judging_each_decision_alone(lived, settings, carol):
    """A batch's book skips judging a decision made in a stretch in which another like it was found
    clean and nothing it is judged by changed. Decisions at every moment where something changes in
    the lived world, a microsecond before and after, and between, for each model and both versions,
    in time order through one book, are found as a book of their own finds each."""
    from audits.judging import PolicyBook, clock_slack, policy_grace

    cell = MatrixCell.objects.get(model_version=lived["versions"]["a"], classification__slug="internal")
    cell.approve(carol, "Approved again, for two hours", expires_at=timezone.now() + dt.timedelta(hours=2))
    settings.STEWARD_POLICY_GRACE_SECONDS = 15 * 60
    settings.STEWARD_DECISION_CLOCK_SLACK_SECONDS = 5 * 60
    now = timezone.now()
    models = ["acme/small-a@1", "beta/small-b@1", "acme/large-a@1"]
    probe = PolicyBook(
        "production",
        [{"policy_version": v, "model": m, "classification": "internal"} for v in (1, 2) for m in models],
        until=now,
    )
    matrix = probe.matrix
    moments = {*probe._published_at, *matrix._recorded_at}
    for version in probe.versions.values():
        moments |= {
            version.published_at - clock_slack(),
            version.published_at + policy_grace(),
            version.release.expires,
        }
    for dates, _ in matrix._cell_history.values():
        moments |= set(dates)
    for _, states in matrix._cell_history.values():
        moments |= {state.expires_at for state in states if state is not None and state.expires_at is not None}
    for dates, _ in matrix._statuses.values():
        moments |= set(dates)
    start = min(moments).replace(hour=0, minute=0, second=0, microsecond=0)
    moments |= {start + n * DAY for n in range(8)}
    micro = dt.timedelta(microseconds=1)
    ordered = sorted(m + step for m in moments for step in (-micro, dt.timedelta(0), micro, dt.timedelta(minutes=7)))
    decisions = [
        DecisionRecord(
            policy_set="production",
            policy_version=number,
            task="ticket-triage",
            classification="internal",
            model=model,
            occurred_at=moment,
            received_at=now,
        )
        for moment in ordered
        for number in (1, 2)
        for model in models
    ]
    records = [
        {"policy_version": d.policy_version, "model": d.model, "classification": d.classification} for d in decisions
    ]
    alone = [PolicyBook.for_decision(found).in_force(found).violations for found in decisions]
    for order in (1, -1):  # in time order (as routers send them), and back: a stretch reaching too far fails either way
        book = PolicyBook("production", records, until=now)
        judged = 0
        original = book.in_force

        def judge(decision, original=original):
            nonlocal judged
            judged += 1
            return original(decision)

        book.in_force = judge
        for found, expected in list(zip(decisions, alone, strict=True))[::order]:
            assert book.violations(found) == expected, (found.model, found.policy_version, found.occurred_at, order)
        assert 0 < judged < len(decisions)  # some were answered from a stretch
    assert {kind for found in alone for kind, _ in found} >= {
        ViolationKind.NOT_USABLE,
        ViolationKind.UNPUBLISHED_POLICY,
        ViolationKind.SUPERSEDED_POLICY,
    }
