"""Give the roles their compliance permissions (officers decide cells, engineers request them)."""

from django.db import migrations

from steward.roles import sync_roles_migration


class Migration(migrations.Migration):
    dependencies = [
        ("steward", "0002_roles"),
        ("compliance", "0001_initial"),
    ]

    operations = [migrations.RunPython(sync_roles_migration, migrations.RunPython.noop)]
