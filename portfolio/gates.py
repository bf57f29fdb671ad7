"""What a failing scheduled evaluation does to routing: where a policy set requires passing
evaluations and its current version routes through the version, the version's cells are suspended.

Connected to the registry's ``evaluation_run_finished`` (the registry does not know policy sets).
"""

from __future__ import annotations

from compliance.models import CellDecision, MatrixCell
from registry.evaluation.gates import failed_schedule

from .models import PolicySet


def suspend_cells_on_failed_schedule(sender, run, **kwargs) -> None:
    message = failed_schedule(run)
    if not message:
        return
    version = run.model_version
    suspending = [
        policy_set
        for policy_set in PolicySet.objects.filter(suspend_cells_on_failed_evaluation=True)
        if (current := policy_set.current_version()) is not None and current.policy.uses(version.ref)
    ]
    if not suspending:
        return
    names = ", ".join(p.slug for p in suspending)
    cells = MatrixCell.objects.filter(model_version=version, decision=CellDecision.APPROVED, suspended_at__isnull=True)
    for cell in cells:
        cell.suspend_by_system(f"{message}; suspended because {names} requires passing evaluations")
