"""Decision rollups grouped by policy version and by whether the record broke a rule, too.

The escalation-rate check judges each policy version's routes by that version's caps, and the
explorer's totals and charts answer its "policy version" and "violations: yes / no" filters from the
rollups. A set publishes a few versions a month and most records break no rule, so an hour's groups
grow little. Every rollup is made again from the stored records (``audits.rollups.rebuild``: one
GROUP BY on PostgreSQL).
"""

from django.db import migrations, models


def rebuild_rollups(apps, schema_editor):
    from audits.rollups import rebuild

    rebuild(apps.get_model("audits", "DecisionRecord"), apps.get_model("audits", "DecisionRollup"))


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
    ]
