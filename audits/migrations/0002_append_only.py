"""Make the audit trail append-only in the database itself: UPDATE and DELETE are refused."""

from django.db import migrations

POSTGRES = """
CREATE OR REPLACE FUNCTION audits_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % refused on audits_auditevent', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audits_auditevent_append_only
    BEFORE UPDATE OR DELETE ON audits_auditevent
    FOR EACH ROW EXECUTE FUNCTION audits_refuse_change();
"""

POSTGRES_REVERSE = """
DROP TRIGGER IF EXISTS audits_auditevent_append_only ON audits_auditevent;
DROP FUNCTION IF EXISTS audits_refuse_change();
"""

SQLITE = [
    """CREATE TRIGGER audits_auditevent_no_update BEFORE UPDATE ON audits_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused on audits_auditevent'); END;""",
    """CREATE TRIGGER audits_auditevent_no_delete BEFORE DELETE ON audits_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused on audits_auditevent'); END;""",
]

SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS audits_auditevent_no_update;",
    "DROP TRIGGER IF EXISTS audits_auditevent_no_delete;",
]


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE:
            schema_editor.execute(statement)
    else:
        raise RuntimeError(f"No append-only triggers for the {vendor} database; Steward supports PostgreSQL and SQLite.")


def remove(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_REVERSE, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_REVERSE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("audits", "0001_initial")]

    operations = [migrations.RunPython(install, remove)]
