"""Decision records stored for fleet volume: on PostgreSQL the decision table partitioned by month of
``occurred_at``, content in a table of its own partitioned by day of its expiry, the idempotence key
in a table of its own; SQLite keeps plain tables with the same columns and behaviour.

Existing rows survive: content moves to ``audits_decisioncontent`` with its expiry (occurred_at plus
the classification's retention), every record gets its key, the content still kept its tally, and
each earlier retention run (the records' ``content_removed_at``) a row in the log of removed content.
On PostgreSQL the records then move into the partitioned table (monthly partitions from the oldest
record's month, at most 24 months back; older ones in the DEFAULT partition), which takes the old
table's name, its id sequence continuing where the old one stopped.

PostgreSQL requires the partition key in every unique index: the primary key is (id, occurred_at)
(Django still reads ``id`` as the key; ids come from one sequence, so they stay unique), and
(router, request id) is unique in ``audits_decisionkey`` instead. Violations and content point at
decisions without a foreign key constraint (none can reference a partitioned table's id alone).

Indexes of the decision table, each for a query Steward makes (checked with EXPLAIN ANALYZE on
PostgreSQL 15 over 1,000,000 records spread over 19 partitions, most in two months; the explorer's
findings at 10M may adjust them in a later migration). The nine single-column indexes the table had
are gone: each was paid for on every insert, and a filter on one of them still had to sort by time.

- ``decision_newest_first`` (occurred_at DESC, id DESC): the explorer's order (``Meta.ordering``)
  and its keyset pages. The first page is a Merge Append of one backward index-only scan per
  partition that stops after 50 rows (10 ms, planning apart); without the index, a parallel
  sequential scan and top-N sort of every partition (734 ms). A filter matching many rows (a model:
  1.1 ms for a page) reads this index and filters, still stopping after 50 rows.
- ``(policy_set, task, occurred_at)``: a policy set's decisions of one task in a time window, the
  explorer's usual filter and the escalation-rate check: an index-only range scan of the one
  partition left after pruning by time (1.2 ms for the last hour).
- ``decision_flagged`` (occurred_at DESC, id DESC) WHERE has_violation: "violations only" (one record
  in 500 here): 0.8 ms for a page, 58.6 ms without it (the newest-first index read until 50 flagged
  rows turned up). Partial, so it costs an insert only for flagged records.
- ``audits_decision_request_id`` (request_id): the global search by request id, which does not know
  the time: one index probe per partition (0.2 ms).
- router_id (the foreign key's index): a router's decisions, and the PROTECT check when deleting one.
- No BRIN on occurred_at: the monthly partitions already prune by time, and every time range the
  explorer reads is served by the two btrees above, so a BRIN index would add an insert cost for no
  plan that uses it.

``audits_decisioncontent`` has an index on decision_id (the chain page reads one record's content,
naming its expiry so that only one partition is read) and its DEFAULT partition one on expires_at for
the rows with an expiry (retention deletes the expired rows that landed there).

Unapplied, the rows go back: on PostgreSQL the records and their kept content into a plain decision
table of the earlier shape (``unpartition_postgresql``: its id sequence continuing, its indexes and
the router's foreign key as before, the violations' foreign key pointing at it again), on SQLite the
content back into the decision table; each record whose content retention removed gets the time the
log says, its content no longer marked stored (``fold_back``). The expiry, the keys, the tally and the
log go: the unique (router, request id) of the decision table is the key again.
"""

import datetime as dt

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q, Subquery
from django.db.models.functions import TruncDate


class PlainTables(migrations.SeparateDatabaseAndState):
    """Operations whose schema change is made on plain tables (SQLite); on PostgreSQL only the state
    changes, and ``Partitioned`` builds the partitioned tables."""

    def __init__(self, *operations):
        super().__init__(database_operations=list(operations), state_operations=list(operations))

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Partitioned(PlainTables):
    """The decision table's new shape: on SQLite the operations change the plain table; on PostgreSQL
    the records move into the partitioned tables (``partition_postgresql``, with the new shape) and,
    unapplied, back into a plain table of the earlier shape (``unpartition_postgresql``)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            partition_postgresql(to_state.apps, schema_editor)
        else:
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            unpartition_postgresql(to_state.apps, schema_editor)
        else:
            super().database_backwards(app_label, schema_editor, from_state, to_state)


def carry_over(apps, schema_editor):
    """Existing records: the expiry of kept content, the keys, the tally, the log of earlier removals."""
    db = schema_editor.connection.alias
    decisions = apps.get_model("audits", "DecisionRecord").objects.using(db)
    classifications = apps.get_model("compliance", "DataClassification").objects.using(db)
    drops = apps.get_model("audits", "ContentDrop").objects.using(db)
    tally = apps.get_model("audits", "ContentTally").objects.using(db)
    removed = Q(content_removed_at__isnull=False)
    for slug, days in classifications.filter(retention_days__isnull=False).values_list("slug", "retention_days"):
        decisions.filter(Q(content_stored=True) | removed, classification=slug).update(
            content_expires_at=F("occurred_at") + dt.timedelta(days=days)
        )
    # Removed under a retention the classification no longer has: it expired by its removal.
    decisions.filter(removed, content_expires_at__isnull=True).update(content_expires_at=F("content_removed_at"))
    runs = decisions.filter(removed).order_by().values("content_removed_at").annotate(
        first=Min("content_expires_at"), last=Max("content_expires_at"), rows=Count("pk")
    )
    drops.bulk_create(
        drops.model(
            range_start=run["first"],
            range_end=run["last"] + dt.timedelta(microseconds=1),
            dropped_at=run["content_removed_at"],
            rows=run["rows"],
        )
        for run in runs
    )
    # Content was stored for them; the log says when it was removed.
    decisions.filter(removed).update(content_stored=True)
    kept = decisions.filter(content_stored=True, content_removed_at__isnull=True, content_expires_at__isnull=False)
    tally.bulk_create(
        tally.model(day=group["day"], classification=group["classification"], rows=group["rows"])
        for group in kept.annotate(day=TruncDate("content_expires_at", tzinfo=dt.UTC))
        .values("day", "classification")
        .annotate(rows=Count("pk"))
        .order_by()
    )
    schema_editor.execute(
        "INSERT INTO audits_decisionkey (router_id, request_id, decision_id)"
        " SELECT router_id, request_id, id FROM audits_decisionrecord"
    )
    if schema_editor.connection.vendor != "postgresql":
        schema_editor.execute(
            "INSERT INTO audits_decisioncontent (decision_id, expires_at, input_content, output_content)"
            " SELECT id, content_expires_at, input_content, output_content FROM audits_decisionrecord"
            " WHERE content_stored AND content_removed_at IS NULL"
        )


def fold_back(apps, schema_editor):
    """Unapplied: the kept content back in the decision table (SQLite; on PostgreSQL it came back with
    the records), and the time retention removed a record's content from the log, as
    ``audits.models.ContentRemovals`` reads it, such a record's content no longer marked stored."""
    db = schema_editor.connection.alias
    decisions = apps.get_model("audits", "DecisionRecord").objects.using(db)
    drops = apps.get_model("audits", "ContentDrop").objects.using(db)
    if schema_editor.connection.vendor != "postgresql":
        content = apps.get_model("audits", "DecisionContent").objects.using(db).filter(decision_id=OuterRef("pk"))
        decisions.filter(Exists(content)).update(
            input_content=Subquery(content.values("input_content")),
            output_content=Subquery(content.values("output_content")),
        )
    first_drop = drops.filter(
        range_start__lte=OuterRef("content_expires_at"),
        range_end__gt=OuterRef("content_expires_at"),
        dropped_at__gte=OuterRef("received_at"),
    ).order_by("dropped_at")
    decisions.filter(content_stored=True, content_expires_at__isnull=False).filter(Exists(first_drop)).update(
        content_removed_at=Subquery(first_drop.values("dropped_at")[:1]),
        content_stored=False,
        input_content="",
        output_content="",
    )


def partition_postgresql(apps, schema_editor):
    """Move the records into the partitioned decision table and the kept content into the partitioned
    content table (PostgreSQL only), then build the indexes the module docstring explains."""
    from audits.partitions import create_partitions

    run = schema_editor.execute
    quote = schema_editor.quote_name
    decision = apps.get_model("audits", "DecisionRecord")
    fields = [f for f in decision._meta.local_concrete_fields if f.column != "id"]
    columns = ", ".join(quote(f.column) for f in fields)
    definitions = ", ".join(f"{quote(f.column)} {schema_editor.column_sql(decision, f)[0]}" for f in fields)

    # The updates of ``carry_over`` left deferred foreign key checks, which would block dropping the old table.
    run("SET CONSTRAINTS ALL IMMEDIATE")
    run("ALTER TABLE audits_decisionrecord RENAME TO audits_decisionrecord_unpartitioned")
    run("CREATE SEQUENCE audits_decisionrecord_ids AS bigint")
    run(
        "CREATE TABLE audits_decisionrecord (id bigint NOT NULL DEFAULT nextval('audits_decisionrecord_ids'),"
        f" {definitions}) PARTITION BY RANGE (occurred_at)"
    )
    run("CREATE TABLE audits_decisionrecord_default PARTITION OF audits_decisionrecord DEFAULT")
    run(
        "CREATE TABLE audits_decisioncontent (decision_id bigint NOT NULL, expires_at timestamp with time zone NULL,"
        " input_content text NOT NULL, output_content text NOT NULL) PARTITION BY RANGE (expires_at)"
    )
    run("CREATE TABLE audits_decisioncontent_default PARTITION OF audits_decisioncontent DEFAULT")

    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT min(occurred_at), now() FROM audits_decisionrecord_unpartitioned")
        oldest, now = cursor.fetchone()
    since = max(oldest, now - dt.timedelta(days=730)) if oldest else None
    create_partitions(now=now, since=since, using=schema_editor.connection.alias)

    run(f"INSERT INTO audits_decisionrecord (id, {columns}) SELECT id, {columns} FROM audits_decisionrecord_unpartitioned")
    run(
        "INSERT INTO audits_decisioncontent (decision_id, expires_at, input_content, output_content)"
        " SELECT id, content_expires_at, input_content, output_content FROM audits_decisionrecord_unpartitioned"
        " WHERE content_stored AND content_removed_at IS NULL"
    )
    run("SELECT setval('audits_decisionrecord_ids', coalesce((SELECT max(id) FROM audits_decisionrecord), 0) + 1, false)")
    # Its identity sequence and the violations' foreign key go with it.
    run("DROP TABLE audits_decisionrecord_unpartitioned CASCADE")
    run("ALTER SEQUENCE audits_decisionrecord_ids RENAME TO audits_decisionrecord_id_seq")
    run("ALTER SEQUENCE audits_decisionrecord_id_seq OWNED BY audits_decisionrecord.id")

    run("ALTER TABLE audits_decisionrecord ADD CONSTRAINT audits_decisionrecord_pkey PRIMARY KEY (id, occurred_at)")
    for statement in schema_editor._model_indexes_sql(decision):
        run(statement)
    run("CREATE INDEX audits_decisioncontent_decision ON audits_decisioncontent (decision_id)")
    run(
        "CREATE INDEX audits_decisioncontent_default_expiry ON audits_decisioncontent_default (expires_at)"
        " WHERE expires_at IS NOT NULL"
    )
    run("ANALYZE audits_decisionrecord")


# Columns of the earlier decision table that the partitioned one does not have.
CONTENT_COLUMNS = ("input_content", "output_content", "content_removed_at")


def unpartition_postgresql(apps, schema_editor):
    """Unapplied on PostgreSQL: the records, each with its kept content, into a plain decision table of
    the earlier shape (``apps``), made by the schema editor as migrations 0001 to 0009 made it (its
    indexes and the router's foreign key at the end of the migration, after the rows); the partitioned
    tables dropped. The id sequence continues after the largest id."""
    run = schema_editor.execute
    quote = schema_editor.quote_name
    decision = apps.get_model("audits", "DecisionRecord")
    # The partitioned table's columns, then the content (empty for a record without kept content).
    moved = [f.column for f in decision._meta.local_concrete_fields if f.column not in CONTENT_COLUMNS]
    columns = ", ".join(quote(column) for column in (*moved, "input_content", "output_content"))

    run(
        "CREATE TEMPORARY TABLE decision_rows ON COMMIT DROP AS"
        f" SELECT {', '.join(f'r.{quote(column)}' for column in moved)},"
        " coalesce(c.input_content, '') AS input_content, coalesce(c.output_content, '') AS output_content"
        " FROM audits_decisionrecord r LEFT JOIN audits_decisioncontent c ON c.decision_id = r.id"
    )
    # Their partitions, indexes and the id sequence go with them.
    run("DROP TABLE audits_decisionrecord, audits_decisioncontent")
    schema_editor.create_model(decision)
    run(f"INSERT INTO audits_decisionrecord ({columns}) SELECT {columns} FROM decision_rows")
    run(
        "SELECT setval(pg_get_serial_sequence('audits_decisionrecord', 'id'),"
        " coalesce((SELECT max(id) FROM audits_decisionrecord), 0) + 1, false)"
    )
    run("DROP TABLE decision_rows")
    run("ANALYZE audits_decisionrecord")


class Migration(migrations.Migration):
    dependencies = [
        ("audits", "0009_decision_day_rollups"),
        ("compliance", "0005_retention"),
        ("portfolio", "0008_tier_ceiling_within_signable_range"),
    ]

    operations = [
        migrations.CreateModel(
            name="ContentDrop",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("range_start", models.DateTimeField()),
                ("range_end", models.DateTimeField()),
                ("dropped_at", models.DateTimeField()),
                ("rows", models.BigIntegerField()),
            ],
            options={"ordering": ["dropped_at", "pk"]},
        ),
        migrations.CreateModel(
            name="ContentTally",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("day", models.DateField()),
                ("classification", models.CharField(max_length=50)),
                ("rows", models.BigIntegerField(default=0)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("day", "classification"), name="content_tally_day_class")
                ],
            },
        ),
        migrations.CreateModel(
            name="DecisionKey",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "router", "request_id", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                (
                    "router",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="+", to="portfolio.router"
                    ),
                ),
                ("request_id", models.CharField(max_length=128)),
                ("decision_id", models.BigIntegerField()),
            ],
        ),
        migrations.AddField(
            model_name="decisionrecord",
            name="content_expires_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When retention removes the kept content: occurred_at plus the classification's retention at ingest.",
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="violation",
            name="decision",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="violations",
                to="audits.decisionrecord",
            ),
        ),
        PlainTables(
            migrations.CreateModel(
                name="DecisionContent",
                fields=[
                    (
                        "decision",
                        models.OneToOneField(
                            db_constraint=False,
                            on_delete=django.db.models.deletion.CASCADE,
                            primary_key=True,
                            related_name="content",
                            serialize=False,
                            to="audits.decisionrecord",
                        ),
                    ),
                    ("expires_at", models.DateTimeField(blank=True, null=True)),
                    ("input_content", models.TextField(blank=True)),
                    ("output_content", models.TextField(blank=True)),
                ],
            ),
        ),
        migrations.RunPython(carry_over, fold_back),
        Partitioned(
            migrations.RemoveConstraint(model_name="decisionrecord", name="one_decision_per_router_request"),
            migrations.RemoveField(model_name="decisionrecord", name="content_removed_at"),
            migrations.RemoveField(model_name="decisionrecord", name="input_content"),
            migrations.RemoveField(model_name="decisionrecord", name="output_content"),
            migrations.AlterField(
                model_name="decisionrecord",
                name="content_stored",
                field=models.BooleanField(
                    default=False,
                    help_text="True when the content was kept at ingest (it stays True after retention removed it).",
                ),
            ),
            migrations.AlterField(
                model_name="decisionrecord", name="classification", field=models.CharField(max_length=50)
            ),
            migrations.AlterField(model_name="decisionrecord", name="has_violation", field=models.BooleanField(default=False)),
            migrations.AlterField(model_name="decisionrecord", name="model", field=models.CharField(max_length=200)),
            migrations.AlterField(model_name="decisionrecord", name="occurred_at", field=models.DateTimeField()),
            migrations.AlterField(model_name="decisionrecord", name="policy_set", field=models.CharField(max_length=40)),
            migrations.AlterField(
                model_name="decisionrecord", name="policy_version", field=models.PositiveIntegerField()
            ),
            migrations.AlterField(
                model_name="decisionrecord", name="provider", field=models.CharField(blank=True, max_length=50)
            ),
            migrations.AlterField(
                model_name="decisionrecord",
                name="router",
                field=models.ForeignKey(
                    db_constraint=False,
                    on_delete=django.db.models.deletion.PROTECT,
                    related_name="decisions",
                    to="portfolio.router",
                ),
            ),
            migrations.AlterField(model_name="decisionrecord", name="task", field=models.CharField(max_length=60)),
            migrations.AddIndex(
                model_name="decisionrecord",
                index=models.Index(fields=["-occurred_at", "-id"], name="decision_newest_first"),
            ),
            migrations.AddIndex(
                model_name="decisionrecord",
                index=models.Index(
                    condition=models.Q(("has_violation", True)), fields=["-occurred_at", "-id"], name="decision_flagged"
                ),
            ),
        ),
    ]
