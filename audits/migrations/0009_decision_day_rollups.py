"""Daily decision rollups beside the hourly ones: the same group and sums per UTC day, kept at ingest.

The change-impact preview replays fourteen whole days; from hourly rollups that is 336 rows per group,
each sketch decoded and merged, seconds at 10,000,000 decisions; from daily rollups, 14. The existing
daily rows are made from the hourly ones (``audits.rollups.rebuild_days``: one statement on PostgreSQL).
"""

from django.db import migrations, models


def build_days(apps, schema_editor):
    from audits.rollups import rebuild_days

    rebuild_days(apps.get_model("audits", "DecisionRollup"), apps.get_model("audits", "DecisionDayRollup"))


class Migration(migrations.Migration):

    dependencies = [
        ('audits', '0008_rollup_policy_version_and_violation'),
    ]

    operations = [
        migrations.CreateModel(
            name='DecisionDayRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('policy_set', models.CharField(max_length=40)),
                ('task', models.CharField(max_length=60)),
                ('classification', models.CharField(max_length=50)),
                ('model', models.CharField(max_length=200)),
                ('provider', models.CharField(blank=True, max_length=50)),
                ('tier', models.CharField(blank=True, max_length=30)),
                ('policy_version', models.PositiveIntegerField(default=0)),
                ('has_violation', models.BooleanField(default=False)),
                ('requests', models.BigIntegerField(default=0)),
                ('cost_micro_usd', models.BigIntegerField(default=0)),
                ('input_tokens', models.BigIntegerField(default=0)),
                ('output_tokens', models.BigIntegerField(default=0)),
                ('fallbacks', models.BigIntegerField(default=0)),
                ('escalations', models.BigIntegerField(default=0)),
                ('violations', models.BigIntegerField(default=0)),
                ('latency', models.JSONField(default=dict, help_text='Sparse log-bucket latency sketch: bucket index -> count.')),
                ('day', models.DateTimeField(help_text="The day's first instant, midnight UTC.")),
            ],
            options={
                'indexes': [models.Index(fields=['policy_set', 'day'], name='decision_day_rollup_set_day')],
                'constraints': [models.UniqueConstraint(fields=('day', 'policy_set', 'task', 'classification', 'model', 'provider', 'tier', 'policy_version', 'has_violation'), name='decision_day_rollup_group')],
            },
        ),
        migrations.RunPython(build_days, migrations.RunPython.noop),
    ]
