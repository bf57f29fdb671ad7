"""What the compliance matrix's cell panel shows as relying on a cell: routes of current published policies."""

from __future__ import annotations

from django.db.models import OuterRef, Subquery

from compliance.models import DataClassification
from compliance.views.cells import CellUse
from registry.models import ModelVersion

from .models import PolicyVersion


def current_versions() -> list[PolicyVersion]:
    """The current (latest published) version of every policy set, in one query."""
    latest = PolicyVersion.objects.filter(policy_set=OuterRef("policy_set")).order_by("-number").values("number")[:1]
    return list(
        PolicyVersion.objects.filter(number=Subquery(latest)).select_related("policy_set").order_by("policy_set__slug")
    )


def routes_using(version: ModelVersion, classification: DataClassification) -> list[CellUse]:
    """Routes of current published policies for ``classification`` that may send to ``version`` (``CELL_USES``)."""
    uses = []
    for policy_version in current_versions():
        for route in policy_version.policy:
            if route.classification == classification.slug and (place := route.place_of(version.ref)):
                where = f"{policy_version.policy_set.slug} v{policy_version.number}"
                label = f"{where}: {route.task} / {route.classification} ({place})"
                uses.append(CellUse(label=label, url=policy_version.get_absolute_url()))
    return uses
