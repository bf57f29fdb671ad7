"""The one filter for model versions, shared by the registry page and the REST API."""

from __future__ import annotations

import django_filters
from django.db.models import Q

from .models import ModelVersion, Provider, Status

SORTS = {
    "ref": "ref",
    "provider": "model__provider__name",
    "status": "status",
    "tier": "cost_tier",
    "region": "region",
    "input_price": "input_price_micro_usd",
    "output_price": "output_price_micro_usd",
    "proposed_at": "proposed_at",
}


def _distinct_values(field: str):
    def choices():
        values = ModelVersion.objects.order_by(field).values_list(field, flat=True).distinct()
        return [(value, value) for value in values]

    return choices


class ModelVersionFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    provider = django_filters.ModelChoiceFilter(
        field_name="model__provider", queryset=Provider.objects.all(), to_field_name="slug", empty_label="All providers"
    )
    status = django_filters.ChoiceFilter(choices=Status.choices, empty_label="All statuses")
    tier = django_filters.ChoiceFilter(
        field_name="cost_tier", choices=_distinct_values("cost_tier"), empty_label="All tiers"
    )
    region = django_filters.ChoiceFilter(choices=_distinct_values("region"), empty_label="All regions")
    sort = django_filters.ChoiceFilter(
        method="sort_by",
        label="Sort",
        choices=[(key, key) for key in SORTS] + [(f"-{key}", f"-{key}") for key in SORTS],
        empty_label="Ref",
    )

    class Meta:
        model = ModelVersion
        fields = ["q", "provider", "status", "tier", "region", "sort"]

    def search(self, queryset, name: str, value: str):
        for word in value.split():
            queryset = queryset.filter(
                Q(ref__icontains=word)
                | Q(model__name__icontains=word)
                | Q(model__family__icontains=word)
                | Q(provider_model_id__icontains=word)
                | Q(model__provider__name__icontains=word)
            )
        return queryset

    def sort_by(self, queryset, name: str, value: str):
        descending = value.startswith("-")
        field = SORTS[value.lstrip("-")]
        return queryset.order_by(f"-{field}" if descending else field, "ref")
