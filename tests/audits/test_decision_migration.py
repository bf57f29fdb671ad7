"""Migration 0010 (the partitioned decision storage) can be unapplied with the decisions in it: back at
0009 every record is in the plain table with its content (or when retention removed it), its
violations pointing at it through their foreign key again; applied again, the same records, content,
violations and keys are there, and ingest goes on from there."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone

from audits.decisions import remove_expired_content
from audits.models import DecisionKey, DecisionRecord, Violation
from audits.partitions import create_partitions
from compliance.models import DataClassification

from ..workers import PROJECT_ROOT
from .conftest import decision
from .test_decisions import post

BEFORE = ("audits", "0009_decision_day_rollups")

# The columns both shapes of the decision table have (whether content is stored reads differently).
KEPT = tuple(
    field.attname
    for field in DecisionRecord._meta.concrete_fields
    if field.attname not in ("content_stored", "content_expires_at")
)


def _migrate(targets: list[tuple[str, str]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor


def _table_kind(table: str) -> str:
    """PostgreSQL's relkind of the table: 'r' for a plain table, 'p' for a partitioned one."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", [table])
        return cursor.fetchone()[0]


def _constraints(table: str) -> dict:
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, table)


def _stored() -> dict[str, dict]:
    """Every decision as the current models read it: its columns, content and violations, by request id."""
    found = {}
    for record in DecisionRecord.objects.order_by("pk"):
        content = record.read_content()
        found[record.request_id] = {
            "row": tuple(getattr(record, name) for name in KEPT),
            "content": (content.input_content, content.output_content) if content else None,
            "removed_at": record.content_removed_at,
            "violations": sorted(Violation.objects.filter(decision=record).values_list("kind", flat=True)),
        }
    return found


# SQLite's turn is the manage.py test below: a transactional test's flush cannot empty its guarded audit trail.
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the test database's own round trip is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_decisions_keep_content_and_violations_when_the_partitioned_storage_is_unapplied_and_applied_again(
    world,
):
    DataClassification.objects.filter(slug="internal").update(retention_days=30)
    forty_days_ago = timezone.now() - dt.timedelta(days=40)
    create_partitions(now=forty_days_ago)  # as the daily task did then: a day partition for req-1's content
    records = [
        decision(1, occurred_at=forty_days_ago.isoformat()),  # its content removed by retention below
        decision(2, input="Ticket 2: line one\nline two", output="billing"),
        decision(3, classification="secret", input="patient 42"),  # digests only, and not usable
        decision(4, model="beta/small-b@1"),
        decision(5, input="", output=""),  # empty content, kept
    ]
    answer = post(Client(), world["token"], records).json()
    assert (answer["accepted"], answer["rejected"]) == (5, 0), answer
    assert remove_expired_content() == {"internal": 1}
    before = _stored()
    assert before["req-1"]["content"] is None and before["req-1"]["removed_at"] is not None
    assert before["req-2"]["content"] == ("Ticket 2: line one\nline two", "billing")
    assert before["req-3"]["content"] is None and before["req-3"]["violations"]
    assert before["req-5"]["content"] == ("", "")
    assert sum(len(found["violations"]) for found in before.values()) >= 2

    executor = _migrate([BEFORE])
    nodes = [(app, BEFORE[1] if app == "audits" else name) for app, name in executor.loader.graph.leaf_nodes()]
    old = executor.loader.project_state(nodes).apps
    old_decisions = old.get_model("audits", "DecisionRecord").objects.order_by("pk")
    old_violations = old.get_model("audits", "Violation").objects
    assert {f.name for f in old_decisions.model._meta.fields} >= {"input_content", "content_removed_at"}
    back = {record.request_id: record for record in old_decisions}
    assert sorted(back) == sorted(before)
    for request_id, found in before.items():
        record = back[request_id]
        assert tuple(getattr(record, name) for name in KEPT) == found["row"]
        # The earlier shape: content in the record, "stored" only while it is there, the removal's time.
        assert record.content_stored == (found["content"] is not None)
        assert (record.input_content, record.output_content) == (found["content"] or ("", ""))
        assert record.content_removed_at == found["removed_at"]
        kinds = old_violations.filter(decision_id=record.pk).values_list("kind", flat=True)
        assert sorted(kinds) == found["violations"]
    assert {"audits_decisionkey", "audits_decisioncontent", "audits_contentdrop"}.isdisjoint(
        connection.introspection.table_names()
    )
    assert any(
        c["foreign_key"] == ("audits_decisionrecord", "id") for c in _constraints("audits_violation").values()
    ), "the violations' foreign key points at the decision table again"
    assert any(
        c["unique"] and c["columns"] == ["router_id", "request_id"]
        for c in _constraints("audits_decisionrecord").values()
    )
    if connection.vendor == "postgresql":
        assert _table_kind("audits_decisionrecord") == "r"

    _migrate(executor.loader.graph.leaf_nodes())

    assert _stored() == before
    keys = DecisionKey.objects.values_list("request_id", "decision_id")
    assert sorted(keys) == sorted((request_id, found["row"][0]) for request_id, found in before.items())
    if connection.vendor == "postgresql":
        assert _table_kind("audits_decisionrecord") == "p" and _table_kind("audits_decisioncontent") == "p"
    # Ingest goes on: the batch again is all duplicates, a new record takes an id after the others.
    again = post(Client(), world["token"], records).json()
    assert (again["accepted"], again["duplicates"]) == (0, 5)
    assert post(Client(), world["token"], [decision(6)]).json()["accepted"] == 1
    newest = DecisionRecord.objects.get(request_id="req-6")
    assert newest.pk > max(found["row"][0] for found in before.values())
    assert newest.read_content().input_content == "Ticket 6: my invoice is wrong"


SQLITE_WORLD = textwrap.dedent(
    """
    import datetime as dt
    from django.utils import timezone
    from audits.decisions import ingest, remove_expired_content
    from compliance.models import DataClassification, StorageRule
    from portfolio.models import PolicySet, Router

    policy_set = PolicySet.objects.create(slug="production", name="Production")
    router = Router.objects.create(name="edge", policy_set=policy_set, token_hash="a" * 64, token_prefix="swr_a")
    DataClassification.objects.create(
        slug="internal", name="Internal", level=1, storage=StorageRule.CONTENT, retention_days=30
    )
    DataClassification.objects.create(slug="secret", name="Secret", level=5, storage=StorageRule.DIGEST)
    now = timezone.now()
    def record(n, occurred_at, **fields):
        return {"request_id": f"req-{n}", "occurred_at": occurred_at.isoformat(), "task": "triage",
                "classification": "internal", "model": "acme/small@1", "policy_version": 1, "fallback_used": False,
                "escalated": False, "latency_ms": 5, "input_tokens": 1, "output_tokens": 1, "cost_micro_usd": 1,
                "input": f"text {n}", "output": "ok", **fields}
    batch = [record(1, now - dt.timedelta(days=40)), record(2, now, input="line one\\nline two"),
             record(3, now, classification="secret"), record(4, now, input="", output="")]
    assert ingest(router, batch).accepted == 4
    assert remove_expired_content() == {"internal": 1}
    """
)

SQLITE_SNAPSHOT = textwrap.dedent(
    """
    import json
    from audits.models import DecisionKey, DecisionRecord, Violation
    found = {}
    for record in DecisionRecord.objects.order_by("pk"):
        content = record.read_content()
        found[record.request_id] = {
            "row": [str(getattr(record, name)) for name in KEPT],
            "content": [content.input_content, content.output_content] if content else None,
            "removed_at": str(record.content_removed_at),
            "violations": sorted(Violation.objects.filter(decision=record).values_list("kind", flat=True)),
        }
    keys = sorted(DecisionKey.objects.values_list("request_id", "decision_id"))
    print(json.dumps({"decisions": found, "keys": keys}))
    """
)

SQLITE_EARLIER_SHAPE = textwrap.dedent(
    """
    import json
    from django.db import connection
    found = {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(KEPT)}, input_content, output_content, content_stored, content_removed_at"
            " FROM audits_decisionrecord ORDER BY id"
        )
        for row in cursor.fetchall():
            record = dict(zip((*KEPT, "input", "output", "stored", "removed_at"), row))
            cursor.execute("SELECT kind FROM audits_violation WHERE decision_id = %s ORDER BY kind", [record["id"]])
            record["violations"] = [kind for (kind,) in cursor.fetchall()]
            found[record["request_id"]] = record
        cursor.execute("PRAGMA foreign_key_list(audits_violation)")
        references = [row[2] for row in cursor.fetchall()]
        tables = connection.introspection.table_names(cursor)
    print(json.dumps({"decisions": found, "references": references, "tables": tables}, default=str))
    """
)


def _manage(environment: dict, *arguments: str, script: str | None = None) -> dict | None:
    """``manage.py`` with the arguments (or ``shell -c`` of the script); the last line it printed, as JSON."""
    command = [sys.executable, str(PROJECT_ROOT / "manage.py"), *arguments]
    if script is not None:
        command += ["shell", "-c", f"KEPT = {KEPT!r}\n{script}"]
    run = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1]) if script is not None else None


def test_on_sqlite_the_decisions_survive_unapplying_and_applying_the_storage_migration(tmp_path):
    """The embedded default (plain tables), through ``manage.py`` on a fresh SQLite database."""
    environment = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'steward.sqlite3'}"}
    _manage(environment, "migrate", "-v0")
    _manage(environment, script=SQLITE_WORLD + "print('{}')")
    before = _manage(environment, script=SQLITE_SNAPSHOT)["decisions"]
    assert before["req-1"]["content"] is None and before["req-1"]["removed_at"] != "None"
    assert before["req-3"]["content"] is None and before["req-4"]["content"] == ["", ""]
    assert any(found["violations"] for found in before.values())

    _manage(environment, "migrate", "audits", BEFORE[1], "-v0")
    earlier = _manage(environment, script=SQLITE_EARLIER_SHAPE)
    assert earlier["references"] == ["audits_decisionrecord"]
    assert {"audits_decisionkey", "audits_decisioncontent", "audits_contentdrop"}.isdisjoint(earlier["tables"])
    assert sorted(earlier["decisions"]) == sorted(before)
    for request_id, found in before.items():
        record = earlier["decisions"][request_id]
        assert str(record["id"]) == found["row"][0] and record["violations"] == found["violations"]
        assert bool(record["stored"]) == (found["content"] is not None)
        assert [record["input"], record["output"]] == (found["content"] or ["", ""])
        assert (record["removed_at"] is None) == (found["removed_at"] == "None")

    _manage(environment, "migrate", "-v0")
    after = _manage(environment, script=SQLITE_SNAPSHOT)
    assert after["decisions"] == before
    assert after["keys"] == sorted([request_id, int(found["row"][0])] for request_id, found in before.items())
