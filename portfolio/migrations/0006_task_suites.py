"""The task a suite guards becomes portfolio's relation (Task.suites): every existing link is copied.

Before, ``registry.EvaluationSuite.task`` pointed up at ``portfolio.Task``; the registry's next
migration removes that field once the links are here.
"""

from django.db import migrations, models


def copy_links(apps, schema_editor):
    EvaluationSuite = apps.get_model("registry", "EvaluationSuite")
    Task = apps.get_model("portfolio", "Task")
    # Until registry's next migration drops EvaluationSuite.task, its reverse accessor is also called
    # "suites" on Task: ask for the new field itself.
    through = Task._meta.get_field("suites").remote_field.through
    through.objects.bulk_create(
        [
            through(task_id=task_id, evaluationsuite_id=suite_id)
            for suite_id, task_id in EvaluationSuite.objects.filter(task__isnull=False).values_list("pk", "task_id")
        ]
    )


def copy_links_back(apps, schema_editor):
    EvaluationSuite = apps.get_model("registry", "EvaluationSuite")
    Task = apps.get_model("portfolio", "Task")
    for link in Task._meta.get_field("suites").remote_field.through.objects.order_by("pk"):
        EvaluationSuite.objects.filter(pk=link.evaluationsuite_id, task__isnull=True).update(task_id=link.task_id)


class Migration(migrations.Migration):
    dependencies = [
        ("portfolio", "0005_router_token_expiry"),
        ("registry", "0004_endpoint_credentials"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="suites",
            field=models.ManyToManyField(
                blank=True,
                help_text="The evaluation suites that guard this task (recommendations compare versions on them).",
                related_name="tasks",
                to="registry.evaluationsuite",
            ),
        ),
        migrations.RunPython(copy_links, copy_links_back),
    ]
