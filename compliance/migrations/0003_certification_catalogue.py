"""The certification catalogue every organisation starts with; officers can add more."""

from django.db import migrations

from compliance.catalogue import ensure_catalogue


def add_catalogue(apps, schema_editor):
    ensure_catalogue(apps.get_model("compliance", "Certification"))


class Migration(migrations.Migration):
    dependencies = [("compliance", "0002_roles")]

    operations = [migrations.RunPython(add_catalogue, migrations.RunPython.noop)]
