"""What a routing change would have done to real traffic: the change-impact preview.

``impact`` replays a window of a policy set's decision rollups (default: the last 14 whole days)
through the proposed routes and compares them, route by route, with what the current published
version did: requests per day and the share that changes model, cost per day and per 1,000
requests, latency p50/p95, the guarding suites' latest scores, requests whose classification the
new model may not process, and how the traffic spreads over providers.

Where traffic goes after the change: requests the route's primary served (or a model the route
no longer names) go to the proposed primary; requests a fallback or the escalation target served
stay on that model while the route still names it, else go to the proposal's fallback in the same
place (or its escalation target), else to its primary.

Money is integer micro-USD. A rollup group's cost is its token counts times the model's registry
prices, rounded up to the next micro-USD (``ModelVersion.price_micro_usd``, the one rounding rule);
a model the registry does not know keeps the cost its router recorded. Per-day and per-1,000 costs
round up too; counts per day and shares (basis points) round half up.

Portfolio does not read decision rollups itself: the audits app fills ``TRAFFIC_SOURCES`` with a
reader of its rollups (see ``audits/apps.py``). Each source takes (policy set slug, since, until)
and returns groups with ``key`` (task, classification, model, provider), ``requests``,
``input_tokens``, ``output_tokens``, ``cost_micro_usd`` and a mergeable ``latency`` sketch.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from compliance.matrix import Matrix
from compliance.models import DataClassification
from registry.models import EvaluationRun, ModelVersion, RunStatus

from .models import ChangeRequest, ImpactOutcome, PolicySet, PolicyVersion, Revision, Task
from .policy import Policy, Route, normalise
from .validation import PolicyYamlError, parse_document

WINDOW_DAYS = 14
OUTCOME_DAYS = 7  # how long after publishing the actual figures are taken
DEFAULT_QUALITY_DROP_BP = 200  # 2 points out of 100, when the policy set sets no threshold


class LatencySketch(Protocol):
    def merge(self, other: Any) -> Any: ...
    def quantile(self, q: float) -> float: ...


class TrafficGroup(Protocol):
    key: dict
    requests: int
    cost_micro_usd: int
    input_tokens: int
    output_tokens: int
    latency: LatencySketch


# Filled by audits (its rollups); the first source answers. Without one, every route has no traffic.
TRAFFIC_SOURCES: list[Callable[[str, dt.datetime, dt.datetime], Iterable[TrafficGroup]]] = []


def window_traffic(policy_set: str, since: dt.datetime, until: dt.datetime) -> list[TrafficGroup]:
    return list(TRAFFIC_SOURCES[0](policy_set, since, until)) if TRAFFIC_SOURCES else []


def default_window(now: dt.datetime | None = None, days: int = WINDOW_DAYS) -> tuple[dt.datetime, dt.datetime]:
    """The last ``days`` whole days of hours before the current hour: [since, until), hour-aligned."""
    now = (now or timezone.now()).astimezone(dt.UTC)
    until = now.replace(minute=0, second=0, microsecond=0)
    return until - dt.timedelta(days=days), until


# --- rounding: the one rule per kind of figure ----------------------------------------------------


def ceil_div(numerator: int, denominator: int) -> int:
    """Costs: rounded up, never under-stated."""
    return -(-numerator // denominator)


def half_up(numerator: int, denominator: int) -> int:
    """Counts and shares: rounded half up (away from zero for negative changes)."""
    sign = -1 if numerator < 0 else 1
    return sign * ((2 * abs(numerator) + denominator) // (2 * denominator))


def _merged(sketches: list[LatencySketch]) -> LatencySketch | None:
    if not sketches:
        return None
    merged = type(sketches[0])()
    for sketch in sketches:
        merged.merge(sketch)
    return merged


def _quantiles(sketch: LatencySketch | None) -> tuple[int | None, int | None]:
    if sketch is None or not getattr(sketch, "count", 1):
        return None, None
    return int(sketch.quantile(0.5) + 0.5), int(sketch.quantile(0.95) + 0.5)


# --- where each group's traffic goes -------------------------------------------------------------


def destination(served_by: str, before: Route | None, after: Route | None) -> str | None:
    """The model that would serve traffic ``served_by`` served under ``before``; None: denied."""
    if after is None:
        return None if before is not None else served_by
    if before is None or served_by == before.model or served_by not in before.models:
        return after.model
    if served_by in after.models:
        return served_by
    if before.escalation and served_by == before.escalation.to and after.escalation:
        return after.escalation.to
    if served_by in before.fallbacks:
        place = before.fallbacks.index(served_by)
        if place < len(after.fallbacks):
            return after.fallbacks[place]
    return after.model


@dataclass
class _Side:
    """One side (before or after) of a route: requests and cost per model, latency sketches."""

    requests: dict[str, int]
    cost: dict[str, int]
    sketches: list


def _side() -> _Side:
    return _Side(defaultdict(int), defaultdict(int), [])


@dataclass
class _Catalogue:
    versions: dict[str, ModelVersion]

    def price(self, ref: str | None, group: TrafficGroup) -> int:
        version = self.versions.get(ref) if ref else None
        if version is None:
            return group.cost_micro_usd if ref == group.key["model"] else 0
        return version.price_micro_usd(group.input_tokens, group.output_tokens)

    def provider(self, ref: str, fallback: str = "") -> str:
        version = self.versions.get(ref)
        return version.model.provider.slug if version else (fallback or "unknown")


def _cost_figures(cost: int, requests: int, days: int) -> dict:
    return {
        "cost_micro_usd": cost,
        "cost_per_day_micro_usd": ceil_div(cost, days),
        "cost_per_1k_micro_usd": ceil_div(cost * 1000, requests) if requests else None,
    }


def _shares(requests: dict[str, int]) -> list[dict]:
    total = sum(requests.values())
    return [
        {"provider": provider, "requests": n, "share_bp": half_up(n * 10000, total)}
        for provider, n in sorted(requests.items(), key=lambda item: (-item[1], item[0]))
        if n
    ]


def _latest_scores(version_ids: set[int], suite_ids: set[int]) -> dict[tuple[int, int], EvaluationRun]:
    """(suite id, version id) → the latest completed run; one query."""
    if not version_ids or not suite_ids:
        return {}
    newest = (
        EvaluationRun.objects.filter(
            suite=OuterRef("suite"), model_version=OuterRef("model_version"), status=RunStatus.COMPLETED
        )
        .order_by("-finished_at", "-pk")
        .values("pk")[:1]
    )
    runs = EvaluationRun.objects.filter(
        status=RunStatus.COMPLETED, suite_id__in=suite_ids, model_version_id__in=version_ids, pk=Subquery(newest)
    ).only("pk", "suite_id", "model_version_id", "score_bp", "finished_at")
    return {(run.suite_id, run.model_version_id): run for run in runs}


def _single_provider(route: Route | None, catalogue: _Catalogue) -> str | None:
    """The provider of every model a route's primary and fallbacks name, when they share one."""
    if route is None:
        return None
    providers = {catalogue.provider(ref) for ref in (route.model, *route.fallbacks)}
    return providers.pop() if len(providers) == 1 else None


def impact(
    policy_set: PolicySet,
    proposed: Policy,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    current: PolicyVersion | None = None,
) -> dict:
    """The impact of routing ``policy_set`` by ``proposed`` instead of its current published version
    (or ``current``), over the rollups of [since, until) (default: the last 14 whole days).

    A plain JSON-ready dict (it is cached per revision and answered by the API as it is); the
    compliance figures are added at reading time by ``with_compliance``.
    """
    if since is None or until is None:
        since, until = default_window()
    days = max(1, round((until - since) / dt.timedelta(days=1)))
    current = current if current is not None else policy_set.current_version()
    before_policy = current.policy if current else Policy(())
    groups = window_traffic(policy_set.slug, since, until)

    refs = set(before_policy.model_refs) | set(proposed.model_refs) | {g.key["model"] for g in groups}
    catalogue = _Catalogue(
        {v.ref: v for v in ModelVersion.objects.select_related("model__provider").filter(ref__in=refs)}
    )

    keys = {route.key for route in before_policy} | {route.key for route in proposed}
    by_route: dict[tuple[str, str], list[TrafficGroup]] = defaultdict(list)
    for group in groups:
        key = (group.key["task"], group.key["classification"])
        by_route[key].append(group)
        keys.add(key)

    # Each model's latency sketches anywhere in the set's window, for routes whose traffic moves to it.
    observed: dict[str, list] = defaultdict(list)
    for group in groups:
        observed[group.key["model"]].append(group.latency)
    observed_latency = _Observed(observed)

    tasks = {task.slug: task for task in Task.objects.filter(slug__in={key[0] for key in keys})}
    suites_of_task: dict[int, list] = defaultdict(list)
    for link in Task.suites.through.objects.filter(task__slug__in=list(tasks)).select_related("evaluationsuite"):
        suites_of_task[link.task_id].append(link.evaluationsuite)
    runs = _latest_scores(
        {v.pk for v in catalogue.versions.values()},
        {suite.pk for suites in suites_of_task.values() for suite in suites},
    )
    quality_drop_bp = (
        policy_set.threshold_quality_drop_bp
        if policy_set.threshold_quality_drop_bp is not None
        else DEFAULT_QUALITY_DROP_BP
    )

    routes = []
    providers_before: dict[str, int] = defaultdict(int)
    providers_after: dict[str, int] = defaultdict(int)
    totals = {"requests": 0, "moved": 0, "before": 0, "after": 0}
    unknown: set[str] = set()
    for key in sorted(keys):
        before_route, after_route = before_policy.route_for(*key), proposed.route_for(*key)
        before, after = _side(), _side()
        moved = 0
        for group in by_route.get(key, []):
            served_by = group.key["model"]
            target = destination(served_by, before_route, after_route)
            if served_by not in catalogue.versions:
                unknown.add(served_by)
            before.requests[served_by] += group.requests
            before.cost[served_by] += catalogue.price(served_by, group)
            before.sketches.append(group.latency)
            providers_before[group.key["provider"] or catalogue.provider(served_by)] += group.requests
            if target != served_by:
                moved += group.requests
            if target is None:
                continue
            after.requests[target] += group.requests
            after.cost[target] += catalogue.price(target, group)
            providers_after[
                group.key["provider"] if target == served_by and group.key["provider"] else catalogue.provider(target)
            ] += group.requests
            if target == served_by:
                after.sketches.append(group.latency)
        requests = sum(before.requests.values())
        before_cost, after_cost = sum(before.cost.values()), sum(after.cost.values())
        totals["requests"] += requests
        totals["moved"] += moved
        totals["before"] += before_cost
        totals["after"] += after_cost

        p50, p95 = _quantiles(_merged(before.sketches))
        if moved:
            after_latency = _after_latency(after_route, catalogue, observed_latency)
        else:
            after_latency = {
                "latency_p50_ms": p50,
                "latency_p95_ms": p95,
                "latency_source": "observed" if requests else None,
            }

        before_model = before_route.model if before_route else None
        after_model = after_route.model if after_route else None
        task = tasks.get(key[0])
        suites = sorted(suites_of_task.get(task.pk, []), key=lambda suite: suite.slug) if task else []
        quality = _quality(suites, runs, catalogue, before_model, after_model, quality_drop_bp)
        warnings = [score["warning"] for score in quality if score["warning"]]
        single_before, single_after = (
            _single_provider(before_route, catalogue),
            _single_provider(after_route, catalogue),
        )
        if single_after:
            warnings.append(f"the primary and every fallback are from {single_after}: no fallback at another provider")
        routes.append(
            {
                "task": key[0],
                "classification": key[1],
                "change": _change_kind(before_route, after_route),
                "before_model": before_model,
                "after_model": after_model,
                "has_traffic": bool(requests),
                "requests": requests,
                "requests_per_day": half_up(requests, days),
                "moved_requests": moved,
                "moved_share_bp": half_up(moved * 10000, requests) if requests else 0,
                "before": {
                    **_cost_figures(before_cost, requests, days),
                    "latency_p50_ms": p50,
                    "latency_p95_ms": p95,
                    "latency_source": "observed" if requests else None,
                    "by_model": _by_model(before, catalogue, days),
                    "single_provider": single_before,
                },
                "after": {
                    **_cost_figures(after_cost, sum(after.requests.values()), days),
                    **after_latency,
                    "by_model": _by_model(after, catalogue, days),
                    "single_provider": single_after,
                },
                "quality": quality,
                "warnings": warnings,
            }
        )

    return {
        "policy_set": policy_set.slug,
        "current_version": current.number if current else None,
        "window": {"since": since.isoformat(), "until": until.isoformat(), "days": days},
        "totals": {
            "requests": totals["requests"],
            "requests_per_day": half_up(totals["requests"], days),
            "moved_requests": totals["moved"],
            "moved_share_bp": half_up(totals["moved"] * 10000, totals["requests"]) if totals["requests"] else 0,
            "before": _cost_figures(totals["before"], totals["requests"], days),
            "after": _cost_figures(totals["after"], sum(providers_after.values()), days),
            "cost_change_bp": half_up((totals["after"] - totals["before"]) * 10000, totals["before"])
            if totals["before"]
            else None,
        },
        "providers": {"before": _shares(providers_before), "after": _shares(providers_after)},
        "routes": routes,
        "no_traffic": [f"{r['task']} / {r['classification']}" for r in routes if not r["has_traffic"]],
        "unknown_models": sorted(unknown),
        "quality_drop_bp": quality_drop_bp,
    }


class _Observed:
    """Each model's observed p50/p95 over the window, merged once per model when first asked for."""

    def __init__(self, sketches: dict[str, list]) -> None:
        self.sketches = sketches
        self.quantiles: dict[str, tuple[int | None, int | None]] = {}

    def __call__(self, ref: str) -> tuple[int | None, int | None] | None:
        if not self.sketches.get(ref):
            return None
        if ref not in self.quantiles:
            self.quantiles[ref] = _quantiles(_merged(self.sketches[ref]))
        return self.quantiles[ref]


def _after_latency(route: Route | None, catalogue: _Catalogue, observed: _Observed) -> dict:
    """Latency of the traffic that moves: the new primary's as observed in the window when it served
    any, else as its evaluations measured it; and which."""
    if route is None:
        return {"latency_p50_ms": None, "latency_p95_ms": None, "latency_source": None}
    if (seen := observed(route.model)) is not None:
        return {"latency_p50_ms": seen[0], "latency_p95_ms": seen[1], "latency_source": "observed"}
    version = catalogue.versions.get(route.model)
    if version is not None and version.latency_p50_ms is not None:
        return {
            "latency_p50_ms": version.latency_p50_ms,
            "latency_p95_ms": version.latency_p95_ms,
            "latency_source": "evaluation",
        }
    return {"latency_p50_ms": None, "latency_p95_ms": None, "latency_source": "not measured"}


def _quality(
    suites: list,
    runs: dict[tuple[int, int], EvaluationRun],
    catalogue: _Catalogue,
    before_model: str | None,
    after_model: str | None,
    quality_drop_bp: int,
) -> list[dict]:
    """Per guarding suite: the latest scores of the before and after primaries, with a warning when the
    new model scores lower by more than ``quality_drop_bp`` or was never run on the suite."""

    def score(suite, ref: str | None) -> int | None:
        version = catalogue.versions.get(ref) if ref else None
        run = runs.get((suite.pk, version.pk)) if version else None
        return run.score_bp if run else None

    rows = []
    for suite in suites:
        before, after = score(suite, before_model), score(suite, after_model)
        change = after - before if before is not None and after is not None else None
        warning = None
        if after_model and after_model != before_model:
            if after is None:
                warning = f"{after_model} has not been evaluated on {suite.slug}"
            elif change is not None and -change > quality_drop_bp:
                warning = (
                    f"{after_model} scores {-change / 100:g} points lower than {before_model} on {suite.slug} "
                    f"(more than {quality_drop_bp / 100:g})"
                )
        rows.append(
            {
                "suite": suite.slug,
                "before_score_bp": before,
                "after_score_bp": after,
                "change_bp": change,
                "warning": warning,
            }
        )
    return rows


def _change_kind(before: Route | None, after: Route | None) -> str:
    if before is None and after is None:
        return "not routed"
    if before is None:
        return "added"
    if after is None:
        return "removed"
    return "unchanged" if before == after else "changed"


def _by_model(side: _Side, catalogue: _Catalogue, days: int) -> list[dict]:
    return [
        {
            "model": ref,
            "provider": catalogue.provider(ref),
            "in_registry": ref in catalogue.versions,
            "requests": n,
            "requests_per_day": half_up(n, days),
            "cost_micro_usd": side.cost[ref],
            "cost_per_day_micro_usd": ceil_div(side.cost[ref], days),
        }
        for ref, n in sorted(side.requests.items())
    ]


# --- read at the moment of review: compliance today, thresholds, the headline -------------------


def with_compliance(result: dict, at: dt.datetime | None = None) -> dict:
    """``result`` with, per route and in total, the requests whose classification the model that
    would serve them may not process at ``at`` (default now): the matrix may have changed since the
    impact was worked out."""
    refs = {
        entry["model"] for route in result["routes"] if route["after_model"] for entry in route["after"]["by_model"]
    }
    slugs = {route["classification"] for route in result["routes"] if route["after_model"]}
    versions = {v.ref: v for v in ModelVersion.objects.with_related().filter(ref__in=refs)}
    classifications = {c.slug: c for c in DataClassification.objects.filter(slug__in=slugs)}
    matrix = Matrix(versions.values(), classifications.values(), at) if versions and classifications else None
    total = 0
    routes = []
    for route in result["routes"]:
        found: list[dict] = []
        if route["after_model"]:
            classification = classifications.get(route["classification"])
            for entry in route["after"]["by_model"]:
                version = versions.get(entry["model"])
                if version is None or classification is None or matrix is None:
                    reasons = ["not in the registry" if version is None else "unknown classification"]
                else:
                    verdict = matrix.verdict(version, classification)
                    if verdict.usable:
                        continue
                    reasons = verdict.reasons or [verdict.label]
                found.append({"model": entry["model"], "requests": entry["requests"], "reasons": reasons})
        requests = sum(item["requests"] for item in found)
        total += requests
        routes.append({**route, "compliance": {"requests": requests, "models": found}})
    return {**result, "routes": routes, "compliance": {"requests": total}}


@dataclass(frozen=True)
class Crossing:
    """A threshold of the policy set that the change crosses; approvers acknowledge it by ``code``."""

    code: str
    text: str


def largest_share(shares: list[dict]) -> dict | None:
    return shares[0] if shares else None


def crossings(result: dict, policy_set: PolicySet) -> list[Crossing]:
    """The thresholds of ``policy_set`` that the impact ``result`` crosses, in a fixed order."""
    found = []
    totals = result["totals"]
    before = totals["before"]["cost_per_day_micro_usd"]
    after = totals["after"]["cost_per_day_micro_usd"]
    if (percent := policy_set.threshold_cost_increase_percent) is not None:
        change = totals["cost_change_bp"]
        if (change is not None and change > percent * 100) or (change is None and after > 0):
            rise = f"{change / 100:g} %" if change is not None else "from nothing"
            found.append(
                Crossing(
                    "cost",
                    f"Cost rises {rise} ({before:,} → {after:,} µUSD a day), above the {percent} % threshold",
                )
            )
    if (points := policy_set.threshold_quality_drop_bp) is not None:
        drops = [
            f"{route['task']} / {route['classification']} on {score['suite']} ({-score['change_bp'] / 100:g})"
            for route in result["routes"]
            if route["after_model"] != route["before_model"]
            for score in route["quality"]
            if score["change_bp"] is not None and -score["change_bp"] > points
        ]
        if drops:
            found.append(
                Crossing(
                    "quality",
                    f"Quality drops more than {points / 100:g} points: {'; '.join(drops)}",
                )
            )
    if (percent := policy_set.threshold_provider_share_percent) is not None:
        largest = largest_share(result["providers"]["after"])
        if largest and largest["share_bp"] > percent * 100:
            found.append(
                Crossing(
                    "provider",
                    f"{largest['provider']} would carry {largest['share_bp'] / 100:g} % of the traffic, "
                    f"above the {percent} % threshold",
                )
            )
    return found


def presented(result: dict, policy_set: PolicySet) -> dict:
    """The impact as the change request's page and the API show it: compliance as of now, and the
    thresholds of the set that it crosses."""
    body = with_compliance(result)
    body["crossings"] = [{"code": c.code, "text": c.text} for c in crossings(result, policy_set)]
    return body


def headline(result: dict) -> dict:
    """The figures the approve form shows: cost a day before and after, traffic that moves, the
    largest provider share after, requests the after model may not process, the warnings."""
    totals = result["totals"]
    return {
        "cost_before": totals["before"]["cost_per_day_micro_usd"],
        "cost_after": totals["after"]["cost_per_day_micro_usd"],
        "cost_change_bp": totals["cost_change_bp"],
        "moved_per_day": half_up(totals["moved_requests"], result["window"]["days"]),
        "moved_share_bp": totals["moved_share_bp"],
        "largest_after": largest_share(result["providers"]["after"]),
        "compliance_requests": result.get("compliance", {}).get("requests", 0),
        "warnings": sum(len(route["warnings"]) for route in result["routes"]),
    }


# --- per revision, and after publishing -----------------------------------------------------------


def proposed_policy(document: str, parsed: dict | None = None) -> Policy | None:
    """The routes of a policy document (``parsed``: its YAML already read, e.g. by validation), or None
    while it does not parse into routes."""
    try:
        return Policy.from_spec(normalise(parsed if parsed is not None else parse_document(document)))
    except (PolicyYamlError, KeyError, TypeError, AttributeError, ValueError):
        return None


def revision_impact(revision: Revision) -> dict | None:
    """The impact of ``revision`` over the 14 days before it was first asked for, worked out once and
    kept on the revision (so that every approver reads the same figures); None while its document
    has validation errors."""
    if revision.impact is None:
        policy = proposed_policy(revision.document)
        if policy is None or revision.errors:
            return None
        policy_set = PolicySet.objects.get(pk=revision.change_request.policy_set_id)
        result = impact(policy_set, policy)
        Revision.objects.filter(pk=revision.pk, impact__isnull=True).update(impact=result)
        revision.impact = result
    return revision.impact


def revision_crossings(revision: Revision) -> list[Crossing]:
    result = revision_impact(revision)
    if result is None:
        return []
    return crossings(result, PolicySet.objects.get(pk=revision.change_request.policy_set_id))


def _hour_after(moment: dt.datetime) -> dt.datetime:
    start = moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    return start if start == moment else start + dt.timedelta(hours=1)


def record_outcomes(now: dt.datetime | None = None) -> list[ImpactOutcome]:
    """For every change request published at least seven whole days ago without an outcome yet: the
    figures of its version's first seven whole days of traffic (the "before" side of its own
    impact, where the version was in force). Idempotent: one outcome per change request."""
    now = now or timezone.now()
    due = (
        PolicyVersion.objects.filter(
            change_request__isnull=False,
            change_request__impact_outcome__isnull=True,
            published_at__lte=now - dt.timedelta(days=OUTCOME_DAYS, hours=1),
        )
        .select_related("policy_set", "change_request")
        .order_by("published_at")
    )
    recorded = []
    for version in due:
        since = _hour_after(version.published_at)
        until = since + dt.timedelta(days=OUTCOME_DAYS)
        if until > now:
            continue
        figures = impact(version.policy_set, version.policy, since, until, current=version)
        outcome, _ = ImpactOutcome.objects.get_or_create(
            change_request=version.change_request,
            defaults={"policy_version": version, "since": since, "until": until, "figures": figures},
        )
        recorded.append(outcome)
    return recorded


def predicted_against_actual(predicted: dict, actual: dict) -> dict:
    """The preview's "after" figures beside what the published version did (the outcome's "before"),
    both per day so that windows of different lengths compare."""

    def pair(name: str, before: Any, after: Any) -> dict:
        return {"figure": name, "predicted": before, "actual": after}

    predicted_largest = largest_share(predicted["providers"]["after"])
    actual_largest = largest_share(actual["providers"]["before"])
    totals = [
        pair("requests a day", predicted["totals"]["requests_per_day"], actual["totals"]["requests_per_day"]),
        pair(
            "cost a day (µUSD)",
            predicted["totals"]["after"]["cost_per_day_micro_usd"],
            actual["totals"]["before"]["cost_per_day_micro_usd"],
        ),
        pair(
            "cost per 1,000 requests (µUSD)",
            predicted["totals"]["after"]["cost_per_1k_micro_usd"],
            actual["totals"]["before"]["cost_per_1k_micro_usd"],
        ),
        pair(
            "largest provider share",
            f"{predicted_largest['provider']} {predicted_largest['share_bp'] / 100:g} %" if predicted_largest else None,
            f"{actual_largest['provider']} {actual_largest['share_bp'] / 100:g} %" if actual_largest else None,
        ),
    ]
    actual_routes = {(r["task"], r["classification"]): r for r in actual["routes"]}
    routes = []
    for route in predicted["routes"]:
        if route["after_model"] is None:
            continue
        seen = actual_routes.get((route["task"], route["classification"]))
        routes.append(
            {
                "task": route["task"],
                "classification": route["classification"],
                "model": route["after_model"],
                "requests_per_day": (route["requests_per_day"], seen["requests_per_day"] if seen else 0),
                "cost_per_day_micro_usd": (
                    route["after"]["cost_per_day_micro_usd"],
                    seen["before"]["cost_per_day_micro_usd"] if seen else 0,
                ),
                "latency_p95_ms": (
                    route["after"]["latency_p95_ms"],
                    seen["before"]["latency_p95_ms"] if seen else None,
                ),
            }
        )
    return {"totals": totals, "routes": routes}


def change_request_outcome(change_request: ChangeRequest) -> dict | None:
    """Predicted against actual for a published change request, once its outcome is recorded."""
    outcome = ImpactOutcome.objects.filter(change_request=change_request).first()
    if outcome is None:
        return None
    latest = change_request.latest_revision()
    predicted = latest.impact if latest else None
    if predicted is None:
        return None
    return {"outcome": outcome, **predicted_against_actual(predicted, outcome.figures)}
