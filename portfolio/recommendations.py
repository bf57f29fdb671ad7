"""Where a cheaper model would do: cost against score per task, and the routes worth changing.

A version's *standing* on a task comes from its latest completed run of each of the task's
suites: the score is their mean, and so is the cost per 1,000 requests. Only versions with a
completed run of every suite of the task stand on it, so that scores compare like with like.

A route (task x classification → model) in a policy set's current version gets a
*recommendation* when an approved version that is usable for the classification (the compliance
matrix says so) costs less per 1,000 requests and scores within a tolerance of the routed model;
``propose_route_change`` turns one into a draft change request.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Subquery

from compliance.matrix import Matrix
from compliance.models import DataClassification
from registry.models import EvaluationRun, ModelVersion, RunStatus, Status

from .impact import impact, proposed_policy
from .models import ChangeRequest, PolicySet, PolicyVersion, Revision, Task
from .policy import to_yaml
from .publishing import start_change

DEFAULT_TOLERANCE_BP = 200  # 2 points out of 100
NEAR_MISSES = 3


@dataclass(frozen=True)
class Standing:
    """How a version does on a task: mean latest score and mean cost per 1,000 requests."""

    version: ModelVersion
    score_bp: int
    cost_per_1k_micro_usd: int
    runs: tuple[EvaluationRun, ...]


def standings_by_task() -> dict[int, dict[int, Standing]]:
    """task id → version id → Standing, for every task that suites guard; two queries."""
    suites_of_task: dict[int, set[int]] = defaultdict(set)
    tasks_of_suite: dict[int, set[int]] = defaultdict(set)
    for task_id, suite_id in Task.suites.through.objects.values_list("task_id", "evaluationsuite_id"):
        suites_of_task[task_id].add(suite_id)
        tasks_of_suite[suite_id].add(task_id)
    newest = (
        EvaluationRun.objects.filter(
            suite=OuterRef("suite"), model_version=OuterRef("model_version"), status=RunStatus.COMPLETED
        )
        .order_by("-finished_at", "-pk")
        .values("pk")[:1]
    )
    runs = EvaluationRun.objects.filter(
        status=RunStatus.COMPLETED, suite_id__in=list(tasks_of_suite), pk=Subquery(newest)
    ).select_related("suite", "model_version__model__provider")
    grouped: dict[tuple[int, int], list[EvaluationRun]] = defaultdict(list)
    for run in runs:
        for task_id in tasks_of_suite[run.suite_id]:
            grouped[(task_id, run.model_version_id)].append(run)
    result: dict[int, dict[int, Standing]] = defaultdict(dict)
    for (task_id, version_id), task_runs in grouped.items():
        # A standing needs a score on every suite of the task, so that versions compare like with like.
        if {run.suite_id for run in task_runs} != suites_of_task[task_id]:
            continue
        if any(run.score_bp is None or run.cost_per_1k_micro_usd is None for run in task_runs):
            continue
        task_runs.sort(key=lambda run: run.suite.slug)
        result[task_id][version_id] = Standing(
            version=task_runs[0].model_version,
            score_bp=round(sum(run.score_bp for run in task_runs) / len(task_runs)),
            cost_per_1k_micro_usd=round(sum(run.cost_per_1k_micro_usd for run in task_runs) / len(task_runs)),
            runs=tuple(task_runs),
        )
    return dict(result)


def pareto_frontier(standings: Iterable[Standing]) -> list[Standing]:
    """The standings no other one beats: nothing cheaper (or as cheap) scores as well. By cost."""
    ordered = sorted(standings, key=lambda s: (s.cost_per_1k_micro_usd, -s.score_bp, s.version.ref))
    frontier: list[Standing] = []
    for standing in ordered:
        if not frontier or standing.score_bp > frontier[-1].score_bp:
            frontier.append(standing)
    return frontier


@dataclass(frozen=True)
class Recommendation:
    """A cheaper version for a route, and what changes: cost and score."""

    task: str
    classification: str
    current: Standing
    candidate: Standing

    @property
    def cost_change_percent(self) -> int:
        current = self.current.cost_per_1k_micro_usd
        if not current:
            return 0
        return round((self.candidate.cost_per_1k_micro_usd - current) * 100 / current)

    @property
    def score_change_points(self) -> float:
        return (self.candidate.score_bp - self.current.score_bp) / 100

    @property
    def change_text(self) -> str:
        """The change in words: −75% cost, score −0.4 points."""
        return f"{_signed(self.cost_change_percent)}% cost, score {_signed(self.score_change_points, '.1f')} points"

    def __str__(self) -> str:
        return f"{self.task} / {self.classification} → {self.candidate.version.ref}: {self.change_text}"


def _signed(value: float, spec: str = "d") -> str:
    """+3 / −75 with a real minus sign, as people read it."""
    text = format(abs(value), spec)
    return ("−" if value < 0 else "+") + text


@dataclass
class RouteReview:
    """One route of a policy set's current version, and the cheaper versions that would do."""

    policy_set: PolicySet
    policy_version: PolicyVersion
    task: str
    classification: str
    model: str
    current: Standing | None = None
    recommendations: list[Recommendation] = field(default_factory=list)
    near_misses: list[Recommendation] = field(default_factory=list)
    note: str = ""


def review_routes(tolerance_bp: int = DEFAULT_TOLERANCE_BP) -> list[RouteReview]:
    """Every route of every policy set's current version, with its recommendations (cheapest first)."""
    tasks = {task.slug: task for task in Task.objects.all()}
    task_suites = set(Task.objects.filter(suites__isnull=False).values_list("slug", flat=True))
    standings = standings_by_task()
    classifications = {c.slug: c for c in DataClassification.objects.all()}
    reviews: list[RouteReview] = []
    for policy_set in PolicySet.objects.order_by("slug"):
        current = policy_set.current_version()
        if current is None:
            continue
        for route in current.policy:
            reviews.append(RouteReview(policy_set, current, route.task, route.classification, route.model))
    candidates = {
        standing.version.pk: standing.version
        for by_version in standings.values()
        for standing in by_version.values()
        if standing.version.status == Status.APPROVED
    }
    matrix = Matrix(list(candidates.values()), list(classifications.values()))
    for review in reviews:
        task = tasks.get(review.task)
        if task is None or review.task not in task_suites:
            review.note = f"no evaluation suite measures {review.task}"
            continue
        on_task = standings.get(task.pk, {})
        review.current = next((s for s in on_task.values() if s.version.ref == review.model), None)
        if review.current is None:
            review.note = f"{review.model} has no completed run of every suite of {review.task}"
            continue
        classification = classifications.get(review.classification)
        found = []
        for standing in on_task.values():
            if (
                standing.version.pk == review.current.version.pk
                or standing.version.pk not in candidates
                or standing.cost_per_1k_micro_usd >= review.current.cost_per_1k_micro_usd
                or classification is None
                or not matrix.verdict(standing.version, classification).usable
            ):
                continue
            found.append(Recommendation(review.task, review.classification, review.current, standing))
        within = [r for r in found if r.candidate.score_bp >= review.current.score_bp - tolerance_bp]
        outside = [r for r in found if r not in within]
        review.recommendations = sorted(
            within, key=lambda r: (r.candidate.cost_per_1k_micro_usd, r.candidate.version.ref)
        )
        review.near_misses = sorted(outside, key=lambda r: -r.candidate.score_bp)[:NEAR_MISSES]
        if not review.recommendations:
            review.note = (
                f"no cheaper approved, usable version scores within {tolerance_bp / 100:g} points of {review.model}"
            )
    return reviews


def propose_route_change(
    policy_set: PolicySet, task: str, classification: str, ref: str, by, tolerance_bp: int = DEFAULT_TOLERANCE_BP
) -> ChangeRequest:
    """Open a draft change request that routes (task, classification) to the recommended ``ref``.

    Refused when the recommendation no longer holds (new runs, another policy version, a cell
    that became unusable). Returns the change request.
    """
    review = next(
        (
            r
            for r in review_routes(tolerance_bp)
            if r.policy_set.pk == policy_set.pk and (r.task, r.classification) == (task, classification)
        ),
        None,
    )
    recommendations = review.recommendations if review else []
    recommendation = next((r for r in recommendations if r.candidate.version.ref == ref), None)
    if recommendation is None:
        raise ValidationError(
            {"model": [f"{ref} is no longer recommended for {policy_set.slug}: {task} / {classification}."]}
        )
    document = to_yaml(review.policy_version.policy.with_route_model(task, classification, ref).as_spec())
    figures = impact(policy_set, proposed_policy(document))
    totals = figures["totals"]
    evidence = recommendation.candidate.runs + recommendation.current.runs
    runs = ", ".join(f"#{run.pk} {run.suite.slug}" for run in evidence)
    rationale = (
        f"Recommended by Steward's evaluations: {recommendation}. "
        f"{recommendation.candidate.version.ref} scores {recommendation.candidate.score_bp / 100:.1f} and costs "
        f"{recommendation.candidate.cost_per_1k_micro_usd} µUSD per 1,000 requests; {review.model} scores "
        f"{recommendation.current.score_bp / 100:.1f} and costs {recommendation.current.cost_per_1k_micro_usd} µUSD "
        f"(runs {runs}; tolerance {tolerance_bp / 100:g} points). "
        f"On the last {figures['window']['days']} days of traffic: {totals['moved_requests']} requests change model, "
        f"cost {totals['before']['cost_per_day_micro_usd']} → {totals['after']['cost_per_day_micro_usd']} µUSD a day."
    )
    title = f"{task} / {classification}: route to {ref}"
    change_request = start_change(policy_set, by, title, rationale, document)
    # The draft carries its impact preview: the figures its rationale quotes.
    Revision.objects.filter(change_request=change_request, impact__isnull=True).update(impact=figures)
    return change_request
