"""Published policy versions and their signed releases are immutable in the database itself."""

from django.db import migrations

TABLES = ("portfolio_policyversion", "portfolio_policyrelease")

POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION portfolio_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'published policy versions are immutable: % refused on %', TG_OP, TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;
"""


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FUNCTION, params=None)
        for table in TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION portfolio_refuse_change();",
                params=None,
            )
    elif vendor == "sqlite":
        for table in TABLES:
            for operation in ("UPDATE", "DELETE"):
                schema_editor.execute(
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} BEGIN "
                    f"SELECT RAISE(ABORT, 'published policy versions are immutable: {operation} refused on {table}'); "
                    "END;"
                )


def remove(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for table in TABLES:
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table};", params=None)
        elif vendor == "sqlite":
            for operation in ("update", "delete"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation};")
    if vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS portfolio_refuse_change();", params=None)


class Migration(migrations.Migration):
    dependencies = [("portfolio", "0003_suspend_on_failed_evaluation")]

    operations = [migrations.RunPython(install, remove)]
