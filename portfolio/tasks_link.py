"""The task a suite guards, as the suite YAML's and API's ``task`` key (``Task.suites``).

The registry imports and exports suites without knowing tasks; it asks this link.
"""

from __future__ import annotations

from registry.evaluation.suites import SuiteLink
from registry.models import EvaluationSuite

from .models import Task


def _check(slug: str) -> str:
    return "" if Task.objects.filter(slug=slug).exists() else f"unknown task {slug!r}"


def _attach(suite: EvaluationSuite, slug: str | None) -> None:
    """The suite guards exactly the task named (or none)."""
    suite.tasks.set(Task.objects.filter(slug=slug) if slug else [])


def _values(suite_ids: list[int]) -> dict[int, str]:
    links = Task.suites.through.objects.filter(evaluationsuite_id__in=suite_ids).order_by("task__slug")
    found: dict[int, str] = {}
    for suite_id, slug in links.values_list("evaluationsuite_id", "task__slug"):
        found.setdefault(suite_id, slug)
    return found


TASK_LINK = SuiteLink(key="task", label="Task", check=_check, attach=_attach, values=_values)
