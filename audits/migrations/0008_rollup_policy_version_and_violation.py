"""Decision rollups grouped by policy version and by whether the record broke a rule, too.

The escalation-rate check judges each policy version's routes by that version's caps, and the
explorer's totals and charts answer its "policy version" and "violations: yes / no" filters from the
rollups. A set publishes a few versions a month and most records break no rule, so an hour's groups
grow little. Every rollup is made again from the stored records (``audits.rollups.rebuild``: one
GROUP BY on PostgreSQL).

On PostgreSQL a covering index on the hour carries each rollup's group and sums, so a chart or a
total over 30 days reads the index alone (an index-only scan) and not the rows with their latency
sketches (a count for each of a few hundred buckets, about 330 bytes of each row of 500): at
10,000,000 records, 117,000 rollups a month.
"""

from django.db import migrations, models


def rebuild_rollups(apps, schema_editor):
    from audits.rollups import rebuild

    rebuild(apps.get_model("audits", "DecisionRecord"), apps.get_model("audits", "DecisionRollup"), day_model=None)


class Migration(migrations.Migration):

    dependencies = [
        ('audits', '0007_decision_rollups'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='decisionrollup',
            name='decision_rollup_group_hour',
        ),
        migrations.AddField(
            model_name='decisionrollup',
            name='has_violation',
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name='decisionrollup',
            name='policy_version',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddConstraint(
            model_name='decisionrollup',
            constraint=models.UniqueConstraint(fields=('hour', 'policy_set', 'task', 'classification', 'model', 'provider', 'tier', 'policy_version', 'has_violation'), name='decision_rollup_group_hour'),
        ),
        migrations.RunPython(rebuild_rollups, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name='decisionrollup',
            index=models.Index(fields=['hour'], include=('policy_set', 'task', 'classification', 'model', 'provider', 'tier', 'policy_version', 'has_violation', 'requests', 'cost_micro_usd', 'escalations', 'violations'), name='decision_rollup_hour_sums'),
        ),
    ]
