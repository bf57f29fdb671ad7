"""The decision keys without a foreign key check per row or an index of their own on the router.

The check cost ingest about 5 ms a batch of 1,000, a third of the key claim (``bench/ingest.py``), and
the primary key (router, request id) already serves any lookup by router. Routers are revoked, never
deleted; deleting one that has decisions is refused by Django (PROTECT), as for the decision table.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("audits", "0010_decision_partitions"),
        ("portfolio", "0009_impact_preview"),
    ]

    operations = [
        migrations.AlterField(
            model_name="decisionkey",
            name="router",
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="portfolio.router"),
        ),
    ]
