"""The filters of the audit pages (audit events, decision records, violations), shared by the pages,
their charts and their exports so that an export holds exactly what the page showed.

Choices come from the small reference tables (users, tasks, classifications, model versions,
routers, policy sets), never from ``DISTINCT`` over the decision records, which may be millions.
"""

from __future__ import annotations

import datetime as dt

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, QuerySet

from compliance.models import DataClassification
from portfolio.models import PolicySet, Router, Task
from registry.models import ModelVersion

from .models import AuditEvent, DecisionDayRollup, DecisionRecord, Violation, ViolationKind

SYSTEM = "(system)"  # the person filter's value for events nobody signed in caused


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


class SinceFilter(django_filters.DateFilter):
    """Rows from the start of this day (UTC); a range on the column, so its index serves it."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", forms.DateInput(attrs={"type": "date", "aria-label": "From"}))
        super().__init__(*args, **kwargs)

    def filter(self, qs: QuerySet, value: dt.date | None) -> QuerySet:
        return qs.filter(**{f"{self.field_name}__gte": day_start(value)}) if value else qs


class UntilFilter(SinceFilter):
    """Rows up to the end of this day (UTC), inclusive."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", forms.DateInput(attrs={"type": "date", "aria-label": "To"}))
        super().__init__(*args, **kwargs)

    def filter(self, qs: QuerySet, value: dt.date | None) -> QuerySet:
        return qs.filter(**{f"{self.field_name}__lt": day_start(value + dt.timedelta(days=1))}) if value else qs


def _usernames() -> list[tuple[str, str]]:
    names = get_user_model().objects.order_by("username").values_list("username", flat=True)
    return [(SYSTEM, "system"), *((name, name) for name in names)]


def _distinct_events(field: str):
    def choices() -> list[tuple[str, str]]:
        values = AuditEvent.objects.exclude(**{field: ""}).order_by(field).values_list(field, flat=True).distinct()
        return [(value, value) for value in values]

    return choices


def _slugs(model, field: str = "slug"):
    def choices() -> list[tuple[str, str]]:
        return [(value, value) for value in model.objects.order_by(field).values_list(field, flat=True)]

    return choices


class ChangeFilter(django_filters.FilterSet):
    """Who changed which kind of object, when: the changes feed."""

    person = django_filters.ChoiceFilter(choices=_usernames, method="by_person", empty_label="Everyone")
    object_type = django_filters.ChoiceFilter(choices=_distinct_events("object_type"), empty_label="All objects")
    since = SinceFilter(field_name="at")
    until = UntilFilter(field_name="at")

    class Meta:
        model = AuditEvent
        fields = ["person", "object_type", "since", "until"]

    def by_person(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(actor_name="" if value == SYSTEM else value)


class AuditEventFilter(ChangeFilter):
    """The audit trail's filters: the changes feed's, and the action."""

    action = django_filters.ChoiceFilter(choices=_distinct_events("action"), empty_label="All actions")

    class Meta:
        model = AuditEvent
        fields = ["person", "action", "object_type", "since", "until"]


VIOLATION_CHOICES = [("yes", "Any violation"), ("no", "No violation"), *ViolationKind.choices]


class DecisionFilter(django_filters.FilterSet):
    """The decisions explorer's filters, also applied by its charts and its exports."""

    since = SinceFilter(field_name="occurred_at")
    until = UntilFilter(field_name="occurred_at")
    task = django_filters.ChoiceFilter(choices=_slugs(Task), empty_label="All tasks")
    classification = django_filters.ChoiceFilter(choices=_slugs(DataClassification), empty_label="All classifications")
    model = django_filters.ChoiceFilter(choices=_slugs(ModelVersion, "ref"), empty_label="All models")
    router = django_filters.ModelChoiceFilter(
        queryset=Router.objects.order_by("name"), to_field_name="name", empty_label="All routers"
    )
    policy_set = django_filters.ChoiceFilter(choices=_slugs(PolicySet), empty_label="All policy sets")
    policy_version = django_filters.NumberFilter(
        min_value=1, widget=forms.NumberInput(attrs={"placeholder": "Policy v…", "min": 1, "class": "narrow-number"})
    )
    violation = django_filters.ChoiceFilter(
        choices=VIOLATION_CHOICES, method="by_violation", empty_label="Violations: any or none"
    )

    class Meta:
        model = DecisionRecord
        fields = [
            "since",
            "until",
            "task",
            "classification",
            "model",
            "router",
            "policy_set",
            "policy_version",
            "violation",
        ]

    def by_violation(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value == "yes":
            return queryset.filter(has_violation=True)
        if value == "no":
            return queryset.filter(has_violation=False)
        # A decision has at most one violation of each kind; EXISTS keeps the rows distinct anyway.
        of_kind = Violation.objects.filter(decision=OuterRef("pk"), kind=value)
        return queryset.filter(has_violation=True).filter(Exists(of_kind))


class ViolationFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=ViolationKind.choices, empty_label="All kinds")
    policy_set = django_filters.ChoiceFilter(choices=_slugs(PolicySet), empty_label="All policy sets")
    since = SinceFilter(field_name="detected_at")
    until = UntilFilter(field_name="detected_at")

    class Meta:
        model = Violation
        fields = ["kind", "policy_set", "since", "until"]


# Filters of the explorer the rollups do not carry, by label: they are not among a rollup's group.
NOT_IN_ROLLUPS = {"router": "router", "violation": "violation kind"}
ROLLUP_FIELDS = ("policy_set", "task", "classification", "model", "policy_version")


def _cleaned(decisions: DecisionFilter) -> dict | None:
    """The filter's values, or None when they do not hold (the page shows the errors, and no rows)."""
    if not decisions.is_bound:
        return {}
    return decisions.form.cleaned_data if decisions.is_valid() else None


def rollups_for(decisions: DecisionFilter) -> tuple[QuerySet[DecisionDayRollup], list[str]]:
    """The daily rollups holding exactly the decisions of the filter, and the labels of the filters
    they cannot answer (a router, a violation kind): with any of those, the rollups hold more.

    The time filters are whole UTC days, so whole daily rollups (a twenty-fourth of the hourly rows);
    every other filter but those two is a field of the rollup's group.
    """
    data = _cleaned(decisions)
    if data is None:
        return DecisionDayRollup.objects.none(), []
    rollups = DecisionDayRollup.objects.all()
    if data.get("since"):
        rollups = rollups.filter(day__gte=day_start(data["since"]))
    if data.get("until"):
        rollups = rollups.filter(day__lt=day_start(data["until"] + dt.timedelta(days=1)))
    for field in ROLLUP_FIELDS:
        if data.get(field) not in (None, ""):
            rollups = rollups.filter(**{field: data[field]})
    unanswered = []
    if data.get("violation") in ("yes", "no"):
        rollups = rollups.filter(has_violation=data["violation"] == "yes")
    elif data.get("violation"):
        unanswered.append(NOT_IN_ROLLUPS["violation"])
    if data.get("router"):
        unanswered.append(NOT_IN_ROLLUPS["router"])
    return rollups, unanswered


def violations_for(decisions: DecisionFilter) -> QuerySet[Violation] | None:
    """The violations behind a decision filter, for the violations chart, by when they were found;
    None when the filter names what a violation does not record (a model, router or policy version).

    Only the violations' own columns are read (time found, policy set, task, classification, kind),
    never the decision records: escalation-rate violations belong to a route, not to a decision, and a
    decision's violations are found when it is received.
    """
    data = _cleaned(decisions)
    if data is None:
        return Violation.objects.none()
    if any(data.get(field) not in (None, "") for field in ("model", "router", "policy_version")):
        return None
    if data.get("violation") == "no":
        return Violation.objects.none()
    violations = Violation.objects.all()
    if data.get("since"):
        violations = violations.filter(detected_at__gte=day_start(data["since"]))
    if data.get("until"):
        violations = violations.filter(detected_at__lt=day_start(data["until"] + dt.timedelta(days=1)))
    for field in ("policy_set", "task", "classification"):
        if data.get(field):
            violations = violations.filter(**{field: data[field]})
    if data.get("violation") in ViolationKind.values:
        violations = violations.filter(kind=data["violation"])
    return violations
