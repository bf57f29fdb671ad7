"""Gates: approvals that require passing evaluation runs, and what a failing scheduled run sets off."""

from __future__ import annotations

from django.conf import settings

from ..models import EvaluationRun, ModelVersion, RunStatus, RunTrigger, Status, SuiteCategory


def gate_failures(version: ModelVersion, categories: list[str]) -> list[str]:
    """Why ``version`` does not pass the gates of ``categories``: the run missing or failing per category."""
    reasons = []
    for category in categories:
        label = SuiteCategory(category).label.lower() if category in SuiteCategory.values else category
        latest = (
            EvaluationRun.objects.filter(model_version=version, suite__category=category, status=RunStatus.COMPLETED)
            .select_related("suite")
            .order_by("-finished_at")
            .first()
        )
        if latest is None:
            reasons.append(f"no completed {label} run for {version.ref}")
        elif not latest.passed:
            reasons.append(
                f"the latest {label} run (#{latest.pk}, {latest.suite.name}) scored {latest.score_bp} bp, "
                f"below its pass mark of {latest.suite.pass_threshold_bp} bp"
            )
    return reasons


def version_approval_gates() -> list[str]:
    return list(settings.STEWARD_APPROVAL_GATES)


def failed_schedule(run: EvaluationRun) -> str:
    """Why a finished run is a failing scheduled run of an approved version ("" when it is not one).

    The floors above react to it (``evaluation_run_finished``): compliance raises an alert, and
    portfolio suspends the version's cells where a policy set asks for it.
    """
    version = run.model_version
    if run.status != RunStatus.COMPLETED or run.trigger != RunTrigger.SCHEDULE or run.passed:
        return ""  # an errored run (most cases unanswered) says nothing about the model
    if version.status != Status.APPROVED:
        return ""
    return (
        f"Scheduled {run.suite.name} run #{run.pk} failed for approved {version.ref}: "
        f"{run.score_bp} bp, below {run.suite.pass_threshold_bp} bp"
    )
