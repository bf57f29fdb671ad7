"""The suite's task now lives in portfolio (``Task.suites``, where portfolio 0006 copied every link).

This is the registry's last migration that depends on portfolio: it must run after the copy.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0004_endpoint_credentials"),
        ("portfolio", "0006_task_suites"),
    ]

    operations = [
        migrations.RemoveField(model_name="evaluationsuite", name="task"),
        migrations.RemoveField(model_name="historicalevaluationsuite", name="task"),
    ]
