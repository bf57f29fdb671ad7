"""Two runs of one suite side by side, case by case: what changed between them and by how much.

The earlier run is "before" and the later one "after" whichever page the comparison was asked
from, so that a regression always reads as a case that passed before and no longer does.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError

from ..models import CaseResult, EvaluationCase, EvaluationRun

PASS, FAIL, ERROR, MISSING = "pass", "fail", "error", "missing"
# How a case moved from before to after; the order is the order of the page (changed cases first).
REGRESSED, IMPROVED, CHANGED, SAME = "regressed", "improved", "changed", "same"
MOVES = (REGRESSED, IMPROVED, CHANGED, SAME)
MOVE_LABELS = {
    REGRESSED: "Regressed",
    IMPROVED: "Improved",
    CHANGED: "Changed",
    SAME: "Unchanged",
}


def verdict(result: CaseResult | None) -> str:
    """A result's verdict: pass, fail, error, or missing (no answer recorded in that run)."""
    if result is None:
        return MISSING
    if result.error:
        return ERROR
    return PASS if result.passed else FAIL


def _move(before: str, after: str) -> str:
    if before == after:
        return SAME
    if before == PASS:
        return REGRESSED
    if after == PASS:
        return IMPROVED
    return CHANGED  # between fail, error and missing: neither passes


@dataclass(frozen=True)
class CaseComparison:
    """One case with its result in each run."""

    case: EvaluationCase
    before: CaseResult | None
    after: CaseResult | None

    @property
    def before_verdict(self) -> str:
        return verdict(self.before)

    @property
    def after_verdict(self) -> str:
        return verdict(self.after)

    @property
    def move(self) -> str:
        return _move(self.before_verdict, self.after_verdict)

    @property
    def move_label(self) -> str:
        return MOVE_LABELS[self.move]

    @property
    def changed(self) -> bool:
        return self.move != SAME

    @property
    def sides(self) -> list[tuple[CaseResult | None, str]]:
        """Each run's result with its verdict, before then after (the page's two columns)."""
        return [(self.before, self.before_verdict), (self.after, self.after_verdict)]

    @property
    def score_delta_bp(self) -> int | None:
        """After's score minus before's, in basis points; None when either run has no answer."""
        if self.before is None or self.after is None:
            return None
        return self.after.score_bp - self.before.score_bp


@dataclass(frozen=True)
class RunComparison:
    """Two runs of a suite, the earlier first, and every case of the suite with both results."""

    before: EvaluationRun
    after: EvaluationRun
    cases: list[CaseComparison]

    @property
    def score_delta_bp(self) -> int | None:
        if self.before.score_bp is None or self.after.score_bp is None:
            return None
        return self.after.score_bp - self.before.score_bp

    def counts(self) -> dict[str, int]:
        """How many cases moved each way, every move present (zero when none did)."""
        counts = dict.fromkeys(MOVES, 0)
        for case in self.cases:
            counts[case.move] += 1
        return counts

    def ordered(self, changed_only: bool = False) -> list[CaseComparison]:
        """Changed cases first (regressions, then improvements, then other changes), then the rest,
        each group in the suite's order."""
        rank = {move: index for index, move in enumerate(MOVES)}
        cases = [case for case in self.cases if case.changed] if changed_only else self.cases
        return sorted(cases, key=lambda case: rank[case.move])  # stable: suite order within a move


def compare_runs(run: EvaluationRun, other: EvaluationRun) -> RunComparison:
    """Compare two runs of the same suite; two queries however many cases the suite has.

    Raises ``ValidationError`` keyed by ``with`` (the other run, as the page's parameter names it)
    when the runs cannot be compared.
    """
    if other.pk == run.pk:
        raise ValidationError({"with": f"Choose a run other than #{run.pk} to compare it with."})
    if other.suite_id != run.suite_id:
        rule = f"Run #{other.pk} is of the suite {other.suite.name}, not {run.suite.name}: choose a run of one suite."
        raise ValidationError({"with": rule})
    before, after = sorted((run, other), key=lambda r: (r.created_at, r.pk))
    results: dict[tuple[int, int], CaseResult] = {
        (result.run_id, result.case_id): result for result in CaseResult.objects.filter(run__in=[before.pk, after.pk])
    }
    cases = EvaluationCase.objects.filter(suite_id=run.suite_id).order_by("position", "pk")
    return RunComparison(
        before=before,
        after=after,
        cases=[
            CaseComparison(case, results.get((before.pk, case.pk)), results.get((after.pk, case.pk))) for case in cases
        ],
    )
