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


def after_run(run: EvaluationRun) -> None:
    """A scheduled run that fails for an approved version raises an alert and may suspend its cells."""
    version = run.model_version
    if run.trigger != RunTrigger.SCHEDULE or run.passed or version.status != Status.APPROVED:
        return
    from compliance.models import AlertKind, ComplianceAlert, MatrixCell
    from portfolio.models import PolicySet

    message = (
        f"Scheduled {run.suite.name} run #{run.pk} failed for approved {version.ref}: "
        f"{run.score_bp} bp, below {run.suite.pass_threshold_bp} bp"
    )
    ComplianceAlert.objects.create(kind=AlertKind.EVALUATION_FAILED, message=message)
    suspending = [
        policy_set
        for policy_set in PolicySet.objects.filter(suspend_cells_on_failed_evaluation=True)
        if (current := policy_set.current_version()) is not None and _uses(current.spec, version.ref)
    ]
    if not suspending:
        return
    names = ", ".join(p.slug for p in suspending)
    for cell in MatrixCell.objects.filter(model_version=version, decision="approved", suspended_at__isnull=True):
        cell.suspend_by_system(f"{message}; suspended because {names} requires passing evaluations")


def _uses(spec: dict, ref: str) -> bool:
    for route in spec.get("routes", []):
        escalation = route.get("escalation") or {}
        if ref == route["model"] or ref in route.get("fallbacks", []) or ref == escalation.get("to"):
            return True
    return False
