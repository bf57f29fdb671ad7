"""The book ingest keeps between batches (``audits.judging.current_book``, PostgreSQL): read again
after any write to what it reads, never before. The next batch after an officer's decision, a
retirement, a new holding, a classification's new rule or a publication is judged by it; a batch
while nothing changed costs no query of the book's.
"""

from __future__ import annotations

import datetime as dt
import re
from unittest import mock

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audits.judging import PolicyBook, current_book
from audits.models import Violation, ViolationKind
from compliance.models import DataClassification, MatrixCell
from registry.models import Provider

from ..factories import ROUTED_POLICY, make_holding, publish_through_review
from .conftest import decision
from .test_decisions import post

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the book is kept on PostgreSQL only"),
]

BOOK_TABLES = ("registry_modelversion", "compliance_historicalmatrixcell", "portfolio_policyversion")


def report(world, n: int, **fields) -> tuple[dict, list[str]]:
    """One decision posted; the answer and the tables of the book's that the request read."""
    with CaptureQueriesContext(connection) as captured:
        response = post(Client(), world["token"], [decision(n, **fields)])
    assert response.status_code == 200, response.content
    read = {table for query in captured for table in re.findall(r'FROM "([a-z_0-9]+)"', query["sql"])}
    return response.json(), sorted(read & set(BOOK_TABLES))


def test_a_batch_while_nothing_changed_reads_no_book(world):
    report(world, 1)  # loads the book
    answer, read = report(world, 2)
    assert answer["accepted"] == 1 and read == []
    assert report(world, 3)[1] == []


def test_the_tables_a_book_reads_are_the_ones_the_epoch_watches(world):
    with CaptureQueriesContext(connection) as captured:
        book, now = current_book("production", [])
        for ref in book.models:
            book.in_force(_decision(ref, now))
    read = {table for query in captured for table in re.findall(r'(?:FROM|JOIN) "([a-z_0-9]+)"', query["sql"])}
    read.discard("audits_judgingepoch")
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = 'audits_judging_changed'")
        watched = {row[0] for row in cursor.fetchall()}
    assert read and read <= watched, read - watched


def _decision(ref: str, now: dt.datetime):
    from audits.models import DecisionRecord

    return DecisionRecord(
        policy_set="production",
        policy_version=1,
        task="ticket-triage",
        classification="internal",
        model=ref,
        occurred_at=now,
        received_at=now,
    )


def _deny(world, carol):
    cell = MatrixCell.objects.get(model_version=world["versions"]["a"], classification__slug="internal")
    cell.deny(carol, "Provider incident")


def _retire(world, alice):
    version = world["versions"]["a"]
    version.deprecate(alice, "Superseded")
    version.retire(alice, "No longer served")


def _digest_only(world, alice):
    DataClassification.objects.filter(slug="internal").update(storage="digest")


def _rename_provider(world, alice):
    Provider.objects.filter(slug="acme").update(name="Acme Corporation")


@pytest.mark.parametrize(
    ("change", "check"),
    [
        (_deny, lambda answer: answer["violations"] == 1),
        (_retire, lambda answer: answer["violations"] == 1),
        (_digest_only, lambda answer: answer["violations"] == 0),
        (_rename_provider, lambda answer: answer["violations"] == 0),
    ],
)
def test_the_next_batch_after_a_write_to_what_the_book_read_is_judged_by_it(world, alice, carol, change, check):
    report(world, 1)
    assert report(world, 2)[1] == []  # kept
    change(world, carol if change is _deny else alice)
    answer, read = report(world, 3)
    assert read, "the book was not read again"
    assert check(answer), answer
    if change is _digest_only:
        from audits.models import DecisionRecord

        assert not DecisionRecord.objects.get(request_id="req-3").content_stored


def test_a_holding_and_a_publication_count_for_the_next_batch(world, alice, bob, carol):
    report(world, 1)
    make_holding(world["versions"]["a"].model.provider, "soc2-type2", alice, days_left=30)
    assert report(world, 2)[1]
    publish_through_review(world["policy_set"], ROUTED_POLICY, bob, [carol], title="again")
    answer, read = report(world, 3, policy_version=2)
    assert read and answer["violations"] == 0  # v2 is known at once, not "never published"


def test_a_row_dated_ahead_of_its_time_counts_from_its_moment(world, alice, carol):
    """A cell decision whose history is dated an hour ahead (a clock ahead): the kept book is loaded
    again for batches received from that moment, which see the denial."""
    report(world, 1)
    cell = MatrixCell.objects.get(model_version=world["versions"]["a"], classification__slug="internal")
    cell.deny(carol, "Provider incident")
    ahead = timezone.now() + dt.timedelta(hours=1)
    denial = MatrixCell.history.filter(id=cell.pk).latest("history_date")
    MatrixCell.history.filter(pk=denial.pk).update(history_date=ahead)
    later = ahead + dt.timedelta(minutes=1)
    book, _ = current_book("production", [])
    assert book.fresh_until == ahead
    assert report(world, 2)[0]["violations"] == 0  # denied only from its moment on
    with mock.patch("django.utils.timezone.now", return_value=later):
        answer, read = report(world, 3, occurred_at=later.isoformat())
    assert read and answer["violations"] == 1
    assert Violation.objects.get(decision__request_id="req-3").kind == ViolationKind.NOT_USABLE


def test_a_new_grace_window_loads_the_book_again(world, settings):
    report(world, 1)
    settings.STEWARD_POLICY_GRACE_SECONDS = 60
    assert report(world, 2)[1]


def test_the_kept_book_judges_as_a_book_of_the_decisions_own(world):
    book, now = current_book("production", [])
    for ref in ("acme/small-a@1", "beta/small-b@1", "nobody/unknown@1"):
        found = _decision(ref, now)
        assert book.in_force(found).violations == PolicyBook.for_decision(found).in_force(found).violations


def test_a_renamed_officer_loads_the_book_again_and_a_sign_in_does_not(world, carol):
    _deny(world, carol)
    report(world, 1)
    carol.last_login = timezone.now()
    carol.save(update_fields=["last_login"])
    assert report(world, 2)[1] == []
    carol.username = "carol-r"
    carol.save()
    answer, read = report(world, 3)
    assert read and "denied by carol-r" in Violation.objects.get(decision__request_id="req-3").detail


@pytest.mark.django_db(transaction=True)
def test_writers_that_audit_before_and_after_a_judged_write_do_not_deadlock(world):
    """One transaction records an audit event, then writes a judged table; another writes one (another
    row), then records an event. Each takes the chain head's lock and the epoch's; the epoch's trigger
    takes the chain head's first (audits migration 0013), so the second waits for the first, and both
    commit. With the epoch's lock taken first, each would wait for the other."""
    import threading

    from django.db import connections, transaction

    from audits.events import record

    DataClassification.objects.create(slug="other", name="Other", level=2)
    head_taken, wrote = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def audit_then_write() -> None:
        try:
            with transaction.atomic():
                record("test.first", object_type="compliance.dataclassification", object_repr="internal")
                head_taken.set()
                wrote.wait(1)  # the other has written its table by now, unless it waits for this one
                DataClassification.objects.filter(slug="internal").update(name="Internal data")
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
        finally:
            connections.close_all()

    def write_then_audit() -> None:
        try:
            head_taken.wait(5)
            with transaction.atomic():
                DataClassification.objects.filter(slug="other").update(name="Other data")
                wrote.set()
                record("test.second", object_type="compliance.dataclassification", object_repr="internal")
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=audit_then_write), threading.Thread(target=write_then_audit)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert DataClassification.objects.get(slug="internal").name == "Internal data"
    assert DataClassification.objects.get(slug="other").name == "Other data"
