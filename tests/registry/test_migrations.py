"""Migrations keep existing data: the suites linked to tasks before the link moved to portfolio
(``EvaluationSuite.task`` → ``Task.suites``) are still linked after, and back again."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("registry", "0004_endpoint_credentials"), ("portfolio", "0005_router_token_expiry")]
AFTER = [("registry", "0005_suite_task_moved_to_portfolio"), ("portfolio", "0006_task_suites")]


def _migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor


def _state_before(executor: MigrationExecutor):
    """The models as they were before the move: every other app at its latest migration."""
    moved = dict(BEFORE)
    nodes = [(app, moved.get(app, name)) for app, name in executor.loader.graph.leaf_nodes()]
    return executor.loader.project_state(nodes).apps


@pytest.mark.django_db(transaction=True)
def test_suites_linked_to_tasks_keep_their_links_across_the_move_to_portfolio() -> None:
    executor = _migrate(BEFORE)
    old = _state_before(executor)
    tier = old.get_model("portfolio", "CostTier").objects.create(
        slug="small", name="Small", rank=1, price_ceiling_micro_usd=1
    )
    internal = old.get_model("compliance", "DataClassification").objects.create(slug="int", name="Int", level=1)
    tasks = {
        slug: old.get_model("portfolio", "Task").objects.create(
            slug=slug, name=slug, default_classification=internal, tier=tier
        )
        for slug in ("triage", "review")
    }
    suite = old.get_model("registry", "EvaluationSuite")
    linked = {
        "triage-accuracy": tasks["triage"],
        "triage-safety": tasks["triage"],
        "review-accuracy": tasks["review"],
        "no-task": None,
    }
    for slug, task in linked.items():
        suite.objects.create(name=slug, slug=slug, category="accuracy", task=task)

    _migrate(AFTER)

    from portfolio.models import Task
    from registry.models import EvaluationSuite

    after = {s.slug: [t.slug for t in s.tasks.all()] for s in EvaluationSuite.objects.all()}
    assert after == {
        "triage-accuracy": ["triage"],
        "triage-safety": ["triage"],
        "review-accuracy": ["review"],
        "no-task": [],
    }
    assert sorted(Task.objects.get(slug="triage").suites.values_list("slug", flat=True)) == [
        "triage-accuracy",
        "triage-safety",
    ]

    # And back: the links return to the field they came from.
    executor = _migrate(BEFORE)
    back = _state_before(executor).get_model("registry", "EvaluationSuite")
    assert {s.slug: s.task.slug if s.task_id else None for s in back.objects.all()} == {
        "triage-accuracy": "triage",
        "triage-safety": "triage",
        "review-accuracy": "review",
        "no-task": None,
    }
    _migrate(executor.loader.graph.leaf_nodes())
