"""Global search (the box in the top bar): model versions, models, change requests, routers, and
decisions by their request id — each kind only for those who may read it, a few of each, one query
per kind."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.db.models import Q
from django.urls import reverse

from audits.models import DecisionRecord
from portfolio.models import ChangeRequest, Router
from registry.models import Model, ModelVersion

PER_KIND = 10
MAX_QUERY = 100
CHANGE_NUMBER = re.compile(r"(?i)^(?:cr-?|#)?(\d{1,9})$")


@dataclass
class Hit:
    title: str
    url: str
    detail: str = ""


@dataclass
class Results:
    query: str
    kinds: dict[str, list[Hit]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(hits) for hits in self.kinds.values())


def search(user, query: str) -> Results:
    """What ``user`` may read that matches ``query`` (trimmed, at most MAX_QUERY characters)."""
    query = query.strip()[:MAX_QUERY]
    results = Results(query)
    if not query:
        return results
    if user.has_perm("registry.view_modelversion"):
        versions = (
            ModelVersion.objects.filter(
                Q(ref__icontains=query) | Q(model__name__icontains=query) | Q(provider_model_id__icontains=query)
            )
            .select_related("model__provider")
            .order_by("ref")[:PER_KIND]
        )
        results.kinds["Model versions"] = [
            Hit(v.ref, v.get_absolute_url(), f"{v.model.provider.name} · {v.get_status_display()}") for v in versions
        ]
        models = (
            Model.objects.filter(Q(name__icontains=query) | Q(slug__icontains=query) | Q(family__icontains=query))
            .select_related("provider")
            .order_by("provider__name", "name")[:PER_KIND]
        )
        registry = reverse("registry:version-list")
        results.kinds["Models"] = [
            Hit(m.name, f"{registry}?{urlencode({'q': m.slug})}", f"{m.provider.name} · its versions") for m in models
        ]
    if user.has_perm("portfolio.view_changerequest"):
        matches = Q(title__icontains=query)
        if number := CHANGE_NUMBER.match(query):
            matches |= Q(pk=int(number.group(1)))
        changes = ChangeRequest.objects.filter(matches).select_related("policy_set").order_by("-pk")[:PER_KIND]
        results.kinds["Change requests"] = [
            Hit(f"CR-{c.pk}: {c.title}", c.get_absolute_url(), f"{c.policy_set.name} · {c.get_status_display()}")
            for c in changes
        ]
    if user.has_perm("portfolio.view_router"):
        routers = Router.objects.filter(name__icontains=query).select_related("policy_set").order_by("name")[:PER_KIND]
        fleet = reverse("portfolio:fleet")
        results.kinds["Routers"] = [Hit(r.name, fleet, f"{r.policy_set.name} · the fleet") for r in routers]
    if user.has_perm("audits.view_decisionrecord"):
        decisions = DecisionRecord.objects.filter(request_id=query).select_related("router")[:PER_KIND]
        results.kinds["Decisions (by request id)"] = [
            Hit(d.request_id, d.get_absolute_url(), f"{d.router.name} · {d.task}/{d.classification} → {d.model}")
            for d in decisions
        ]
    return results
