"""How decision records are stored: partitions made ahead (PostgreSQL), back-dated records in the
DEFAULT partition, retention dropping content partitions (and deleting rows on SQLite), each record
stored once when two processes post the same batch at once, and a fixed number of queries per batch."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audits.decisions import ingest, remove_expired_content
from audits.models import ContentDrop, DecisionContent, DecisionKey, DecisionRecord, Violation
from audits.partitions import create_partitions, day_start
from compliance.models import DataClassification

from ..workers import PROJECT_ROOT, worker_database_url
from .conftest import decision
from .test_decisions import post

on_postgresql = pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").startswith("sqlite") or not os.environ.get("DATABASE_URL"),
    reason="partitions are PostgreSQL's",
)


def _partitions(parent: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s AND p.relkind = 'p'",
            [parent],
        )
        return {name for (name,) in cursor.fetchall()}


def _home(table: str, where: str, params: list) -> str:
    """The partition a row of ``table`` is stored in."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE {where}", params)
        return cursor.fetchone()[0]


@on_postgresql
def test_partitions_are_made_ahead(world):
    created = create_partitions()
    now = timezone.now()
    months = _partitions("audits_decisionrecord")
    month = day_start(now).replace(day=1)
    for _ in range(4):  # this month and three ahead
        assert f"audits_decisionrecord_p{month:%Y%m}" in months
        month = (month + dt.timedelta(days=32)).replace(day=1)
    assert "audits_decisionrecord_default" in months
    days = _partitions("audits_decisioncontent")
    # The world's longest retention is 30 days (secret): content days up to 30 + 7 days ahead.
    for ahead in range(38):
        assert f"audits_decisioncontent_p{now + dt.timedelta(days=ahead):%Y%m%d}" in days
    assert "audits_decisioncontent_default" in days
    assert any(name.startswith("audits_decisioncontent_p") for name in created)  # the 30-day horizon is new
    assert create_partitions() == []  # nothing twice


@on_postgresql
def test_a_decision_far_in_the_past_lands_in_the_default_partition_and_is_found(world, client_for, dave):
    long_ago = "2019-03-04T05:06:07Z"
    post(Client(), world["token"], [decision(1, occurred_at=long_ago), decision(2)])
    old = DecisionRecord.objects.get(request_id="req-1")
    assert _home("audits_decisionrecord", "id = %s", [old.pk]) == "audits_decisionrecord_default"
    now = timezone.now()
    recent = DecisionRecord.objects.get(request_id="req-2")
    assert _home("audits_decisionrecord", "id = %s", [recent.pk]) == f"audits_decisionrecord_p{now:%Y%m}"
    assert old.occurred_at == dt.datetime(2019, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    assert old.read_content().input_content == "Ticket 1: my invoice is wrong"
    body = client_for(dave).get(f"/audit/decisions/{old.pk}/").content.decode()
    assert "Ticket 1: my invoice is wrong" in body
    chain = client_for(dave).get(f"/api/v1/decisions/{old.pk}/chain").json()
    assert chain["decision"]["request_id"] == "req-1"
    # Sent again, it is a duplicate: the key holds, wherever the record's partition is.
    again = post(Client(), world["token"], [decision(1, occurred_at=long_ago)]).json()
    assert (again["accepted"], again["duplicates"]) == (0, 1)


@on_postgresql
def test_retention_drops_expired_content_partitions_and_keeps_metadata_and_digests(world, client_for, dave):
    DataClassification.objects.filter(slug="internal").update(retention_days=30)
    now = timezone.now()
    forty_days_ago = now - dt.timedelta(days=40)
    create_partitions(now=forty_days_ago)  # as the daily task did then
    create_partitions()
    post(Client(), world["token"], [decision(1, occurred_at=forty_days_ago.isoformat()), decision(2)])
    old, new = DecisionRecord.objects.get(request_id="req-1"), DecisionRecord.objects.get(request_id="req-2")
    expired_day = f"audits_decisioncontent_p{forty_days_ago + dt.timedelta(days=30):%Y%m%d}"
    assert old.content_expires_at == forty_days_ago + dt.timedelta(days=30)
    assert _home("audits_decisioncontent", "decision_id = %s", [old.pk]) == expired_day

    assert remove_expired_content() == {"internal": 1}

    remaining = _partitions("audits_decisioncontent")
    assert expired_day not in remaining
    assert f"audits_decisioncontent_p{now:%Y%m%d}" in remaining  # today's day is not over
    days = remaining - {"audits_decisioncontent_default"}
    assert not any(name < f"audits_decisioncontent_p{now:%Y%m%d}" for name in days)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [expired_day])
        assert cursor.fetchone()[0] is None  # dropped, not emptied
    drop = ContentDrop.objects.get(range_start=day_start(old.content_expires_at))
    assert drop.range_end == drop.range_start + dt.timedelta(days=1) and drop.rows == 1
    old = DecisionRecord.objects.get(pk=old.pk)
    assert old.read_content() is None and not DecisionContent.objects.filter(decision_id=old.pk).exists()
    assert old.input_sha256 and old.output_sha256 and old.content_stored and old.content_removed_at == drop.dropped_at
    assert new.read_content().input_content == "Ticket 2: my invoice is wrong"
    body = client_for(dave).get(f"/audit/decisions/{old.pk}/").content.decode()
    assert f"content removed by retention on {drop.dropped_at:%Y-%m-%d %H:%M} UTC" in body
    assert old.input_sha256 in body and "Ticket 1" not in body
    assert remove_expired_content() == {}  # nothing twice


SQLITE_RETENTION = textwrap.dedent(
    """
    import datetime as dt, json
    from django.utils import timezone
    from audits.decisions import ingest, remove_expired_content
    from audits.models import ContentDrop, DecisionContent, DecisionRecord
    from compliance.models import DataClassification, StorageRule
    from portfolio.models import PolicySet, Router

    policy_set = PolicySet.objects.create(slug="production", name="Production")
    router = Router.objects.create(name="edge", policy_set=policy_set, token_hash="a" * 64, token_prefix="swr_a")
    DataClassification.objects.create(
        slug="internal", name="Internal", level=1, storage=StorageRule.CONTENT, retention_days=30
    )
    now = timezone.now()
    def record(n, occurred_at):
        return {"request_id": f"req-{n}", "occurred_at": occurred_at.isoformat(), "task": "triage",
                "classification": "internal", "model": "acme/small@1", "policy_version": 1, "fallback_used": False,
                "escalated": False, "latency_ms": 5, "input_tokens": 1, "output_tokens": 1, "cost_micro_usd": 1,
                "input": f"text {n}", "output": "ok"}
    accepted = ingest(router, [record(1, now - dt.timedelta(days=40)), record(2, now)]).accepted
    removed = remove_expired_content()
    old, new = DecisionRecord.objects.get(request_id="req-1"), DecisionRecord.objects.get(request_id="req-2")
    drop = ContentDrop.objects.get()
    print(json.dumps({
        "vendor": __import__("django.db").db.connection.vendor,
        "accepted": accepted,
        "removed": removed,
        "old_content": DecisionContent.objects.filter(decision=old).exists(),
        "old_digest": old.input_sha256,
        "old_removed_at": old.content_removed_at.isoformat(),
        "new_content": new.read_content().input_content,
        "drop": [drop.rows, drop.dropped_at.isoformat(), drop.range_start == old.content_expires_at],
        "again": remove_expired_content(),
    }))
    """
)


def test_retention_on_sqlite_deletes_the_expired_content_and_logs_it(tmp_path):
    """The embedded default (plain tables): the same retention, run by ``manage.py`` on a fresh SQLite database."""
    environment = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'steward.sqlite3'}"}
    manage = [sys.executable, str(PROJECT_ROOT / "manage.py")]
    migrated = subprocess.run([*manage, "migrate", "-v0"], env=environment, capture_output=True, text=True, timeout=300)
    assert migrated.returncode == 0, migrated.stderr
    run = subprocess.run(
        [*manage, "shell", "-c", SQLITE_RETENTION], env=environment, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["vendor"] == "sqlite" and found["accepted"] == 2
    assert found["removed"] == {"internal": 1} and found["again"] == {}
    assert found["old_content"] is False and len(found["old_digest"]) == 64
    assert found["new_content"] == "text 2"
    rows, dropped_at, covers = found["drop"]
    assert rows == 1 and covers and found["old_removed_at"] == dropped_at


CONCURRENT_INGEST = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import django
    django.setup()
    from audits.decisions import ingest
    from portfolio.models import Router
    router_id, go, records = json.loads(sys.stdin.read())
    router = Router.objects.select_related("policy_set").get(pk=router_id)
    router.policy_set.slug  # everything read before the start
    print("ready", flush=True)
    while not Path(go).exists():
        time.sleep(0.001)
    print(json.dumps(ingest(router, records).as_dict()), flush=True)
    """
)


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_two_processes_posting_the_same_batch_at_once_store_each_record_once(alice, carol, bob):
    from ..factories import routed_world

    world = routed_world(alice, carol, bob)
    records = [decision(n, model="nobody/ghost@1" if n % 10 == 0 else "acme/small-a@1") for n in range(300)]
    go = Path(tempfile.mkdtemp()) / "go"
    environment = {**os.environ, "DATABASE_URL": worker_database_url(), "DJANGO_SETTINGS_MODULE": "steward.settings"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_INGEST],
            cwd=PROJECT_ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in processes:
        process.stdin.write(json.dumps([world["router"].pk, str(go), records]))
        process.stdin.close()
    for process in processes:
        assert process.stdout.readline().strip() == "ready"
    go.touch()
    results = []
    for process in processes:
        out = process.stdout.read()
        assert process.wait(timeout=120) == 0
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["accepted"] for r in results) == [0, 300]
    assert sorted(r["duplicates"] for r in results) == [0, 300]
    assert all(not r["errors"] for r in results)
    # Each of the 30 unknown models broke two rules, recorded once.
    assert sum(r["violations"] for r in results) == Violation.objects.count() == 60
    assert Violation.objects.values("decision_id", "kind").distinct().count() == 60
    assert DecisionRecord.objects.count() == 300 and DecisionKey.objects.count() == 300
    assert DecisionContent.objects.count() == 300
    assert DecisionRecord.objects.values("request_id").distinct().count() == 300
    keyed = dict(DecisionKey.objects.values_list("request_id", "decision_id"))
    assert keyed == dict(DecisionRecord.objects.values_list("request_id", "pk"))


@on_postgresql
def test_a_batch_of_1000_takes_as_many_queries_as_a_batch_of_10(world):
    DataClassification.objects.filter(slug="internal").update(retention_days=30)  # content with a tally
    router = world["router"]

    def queries(first: int, count: int) -> list[str]:
        # One record of each batch names a model nobody registered: a violation in each.
        batch = [
            decision(n, model="nobody/ghost@1" if n == first else "acme/small-a@1") for n in range(first, first + count)
        ]
        with CaptureQueriesContext(connection) as captured:
            result = ingest(router, batch)
        assert result.accepted == count and result.violations == 2  # not allowed, not usable
        return [query["sql"].split(" ", 2)[:2] for query in captured.captured_queries]

    queries(0, 3)  # the first batch creates its rollup rows; both measured batches only add to them
    small, large = queries(100, 10), queries(1000, 1000)
    assert len(small) == len(large), (small, large)
    assert sum(1 for verb in large if verb[0] == "COPY") == 3  # decisions, content, violations
    assert DecisionRecord.objects.count() == DecisionContent.objects.count() == 1013
