"""The judging epoch: a number that changes, in the same transaction, with every write to what
``audits.judging.PolicyBook`` reads (PostgreSQL only).

Ingest keeps the book it loaded for a policy set between batches and loads it again only when the
epoch it read has changed (``audits.judging.current_book``): eight queries and most of a batch's
Python time saved while the portfolio stands still, which is nearly always. A statement-level
trigger on each table the book reads sets the epoch from a sequence, so a value is never handed
out twice, not even by a transaction that rolled back. The tables are written out here, as they
stood; ``tests/audits/test_kept_book.py`` holds them to the queries the book makes.

Writers of those tables take the epoch row's lock until they commit: governance writes (an officer's
decision, a publication, a new holding) wait for each other there; ingest never writes them.
"""

from django.db import migrations

JUDGED_TABLES = (
    "compliance_certification",
    "compliance_certificationholding",
    "compliance_dataclassification",
    "compliance_dataclassification_required_certifications",
    "compliance_historicalmatrixcell",
    "portfolio_policyrelease",
    "portfolio_policyset",
    "portfolio_policyversion",
    "registry_historicalmodelversion",
    "registry_model",
    "registry_modelversion",
    "registry_provider",
)


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite: the book is loaded for every batch
    execute = schema_editor.execute
    execute("CREATE SEQUENCE audits_judging_epoch_seq")
    execute("CREATE TABLE audits_judgingepoch (id smallint PRIMARY KEY CHECK (id = 1), value bigint NOT NULL)")
    execute("INSERT INTO audits_judgingepoch VALUES (1, nextval('audits_judging_epoch_seq'))")
    execute(
        "CREATE FUNCTION audits_judging_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " UPDATE audits_judgingepoch SET value = nextval('audits_judging_epoch_seq') WHERE id = 1;"
        " RETURN NULL; END $$"
    )
    for table in JUDGED_TABLES:
        execute(
            f'CREATE TRIGGER audits_judging_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "{table}"'
            " FOR EACH STATEMENT EXECUTE FUNCTION audits_judging_changed()"
        )
    # The officers' names in a cell's history (a violation says who denied it): a renamed or removed
    # user, not a sign-in (which writes only last_login) or a new one.
    execute(
        'CREATE TRIGGER audits_judging_changed AFTER UPDATE OF username OR DELETE OR TRUNCATE ON "auth_user"'
        " FOR EACH STATEMENT EXECUTE FUNCTION audits_judging_changed()"
    )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in (*JUDGED_TABLES, "auth_user"):
        schema_editor.execute(f'DROP TRIGGER audits_judging_changed ON "{table}"')
    schema_editor.execute("DROP FUNCTION audits_judging_changed()")
    schema_editor.execute("DROP TABLE audits_judgingepoch")
    schema_editor.execute("DROP SEQUENCE audits_judging_epoch_seq")


class Migration(migrations.Migration):
    # Only what creates the tables watched (a later migration of theirs renames none of them).
    dependencies = [
        ("audits", "0011_decision_keys_without_router_check"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("compliance", "0001_initial"),
        ("portfolio", "0002_signed_feed"),
        ("registry", "0001_initial"),
    ]

    operations = [migrations.RunPython(create, drop)]
