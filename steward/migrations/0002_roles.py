"""Create the groups "Governance officers", "Engineers" and "Auditors" with their permissions."""

from django.db import migrations

from steward.roles import sync_roles_migration


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("steward", "0001_initial"),
        ("registry", "0001_initial"),
    ]

    operations = [migrations.RunPython(sync_roles_migration, migrations.RunPython.noop)]
