"""Routing-policy pages: policy sets, versions and diffs, change requests and the YAML editor."""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from .models import PolicySet, PolicyVersion


@permission_required("portfolio.view_policyset", raise_exception=True)
def policy_sets(request: HttpRequest) -> HttpResponse:
    return render(request, "portfolio/policy_sets.html", {"policy_sets": PolicySet.objects.all()})


@permission_required("portfolio.view_policyset", raise_exception=True)
def policy_set(request: HttpRequest, slug: str) -> HttpResponse:
    return render(request, "portfolio/policy_set.html", {"policy_set": get_object_or_404(PolicySet, slug=slug)})


@permission_required("portfolio.view_policyversion", raise_exception=True)
def policy_version(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    version = get_object_or_404(PolicyVersion, policy_set__slug=slug, number=number)
    return render(request, "portfolio/policy_version.html", {"version": version})
