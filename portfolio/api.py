"""REST API for routing policies: tiers, tasks, policy sets and their versions, change requests.

CI pipelines submit changes here: ``POST /api/v1/change-requests`` with the YAML, then
``POST /api/v1/change-requests/<id>/submit``.
"""

from __future__ import annotations

import json

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from audits import events as audit
from compliance.models import DataClassification
from steward.api import requires
from steward.parsers import JSONParser

from .impact import impact, presented, proposed_policy, revision_impact
from .models import (
    PROPOSE_CHANGES,
    PUBLISH_CHANGES,
    ChangeRequest,
    ChangeStatus,
    CostTier,
    PolicySet,
    PolicyVersion,
    ReviewDecision,
    Task,
)
from .policy import document_changes, text_diff
from .publishing import StaleBaseError, publish, rebase, start_change
from .validation import MAX_DOCUMENT_BYTES, validate_document


class CostTierSerializer(serializers.ModelSerializer):
    class Meta:
        model = CostTier
        fields = ["id", "slug", "name", "rank", "price_ceiling_micro_usd", "description"]


class TaskSerializer(serializers.ModelSerializer):
    default_classification = serializers.SlugRelatedField(slug_field="slug", queryset=DataClassification.objects.all())
    tier = serializers.SlugRelatedField(slug_field="slug", queryset=CostTier.objects.all())

    class Meta:
        model = Task
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "default_classification",
            "tier",
            "typical_input_tokens",
            "typical_output_tokens",
        ]


class PolicySetSerializer(serializers.ModelSerializer):
    current_version = serializers.SerializerMethodField()

    class Meta:
        model = PolicySet
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "required_approvals",
            "require_provider_diversity",
            "auto_publish",
            "policy_lifetime_days",
            "current_version",
        ]

    def get_current_version(self, policy_set: PolicySet) -> int | None:
        version = policy_set.current_version()
        return version.number if version else None


class PolicyVersionSerializer(serializers.ModelSerializer):
    policy_set = serializers.CharField(source="policy_set.slug")
    change_request = serializers.PrimaryKeyRelatedField(read_only=True)
    author = serializers.CharField(source="author.get_username", default=None)
    published_by = serializers.CharField(source="published_by.get_username", default=None)

    class Meta:
        model = PolicyVersion
        fields = [
            "policy_set",
            "number",
            "spec",
            "document",
            "change_request",
            "provenance",
            "author",
            "approvers",
            "published_by",
            "published_at",
        ]


def _size_check(text: str) -> Response | None:
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        return Response(
            {"policy": [f"The policy is larger than {MAX_DOCUMENT_BYTES // 1024} KB."]},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    return None


class PolicyField(serializers.CharField):
    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("help_text", "The routing policy as YAML (docs/policy-format.md).")
        super().__init__(**kwargs)


class ChangeRequestCreate(serializers.Serializer):
    policy_set = serializers.SlugRelatedField(slug_field="slug", queryset=PolicySet.objects.all())
    title = serializers.CharField(max_length=200)
    rationale = serializers.CharField(required=False, allow_blank=True, default="")
    policy = PolicyField(required=False, help_text="YAML; defaults to the current version's text.")


class RevisionCreate(serializers.Serializer):
    policy = PolicyField()


class ReviewCreate(serializers.Serializer):
    decision = serializers.ChoiceField(choices=ReviewDecision.values)
    comment = serializers.CharField(required=False, allow_blank=True, default="")
    acknowledge = serializers.ListField(
        child=serializers.ChoiceField(choices=["cost", "quality", "provider"]),
        required=False,
        default=list,
        max_length=3,
        help_text="The impact thresholds this approval acknowledges crossing (GET …/impact lists them).",
    )


class WithdrawInput(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class PolicyErrorOut(serializers.Serializer):
    path = serializers.CharField(allow_blank=True, help_text="Where in the YAML, e.g. routes[0].model.")
    message = serializers.CharField()


class ValidationOut(serializers.Serializer):
    valid = serializers.BooleanField()
    errors = PolicyErrorOut(many=True)


class ReviewOut(serializers.Serializer):
    reviewer = serializers.CharField()
    decision = serializers.ChoiceField(choices=ReviewDecision.choices)
    comment = serializers.CharField(allow_blank=True)
    revision = serializers.IntegerField(allow_null=True)
    dismissed = serializers.BooleanField(help_text="A later revision dismissed this approval.")
    acknowledged = serializers.ListField(
        child=serializers.CharField(), help_text="The impact thresholds acknowledged, in words."
    )
    at = serializers.DateTimeField()


class ChangeRequestSummary(serializers.Serializer):
    """What ``change_request_json(detail=False)`` answers (the list)."""

    id = serializers.IntegerField()
    policy_set = serializers.CharField()
    title = serializers.CharField()
    rationale = serializers.CharField(allow_blank=True)
    author = serializers.CharField()
    status = serializers.ChoiceField(choices=ChangeStatus.choices)
    base_version = serializers.IntegerField(allow_null=True)
    revision = serializers.IntegerField(allow_null=True, help_text="The latest revision's number.")
    valid = serializers.BooleanField(help_text="The latest revision passed validation.")
    errors = PolicyErrorOut(many=True)
    approvals = serializers.ListField(child=serializers.CharField(), help_text="Officers whose approval stands.")
    required_approvals = serializers.IntegerField()
    published_version = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ChangeRequestOut(ChangeRequestSummary):
    """What ``change_request_json`` answers for one change request."""

    policy = serializers.CharField(allow_blank=True, help_text="The latest revision's YAML.")
    reviews = ReviewOut(many=True)
    route_changes = serializers.ListField(child=serializers.CharField(), help_text="Routes added, changed, removed.")
    diff = serializers.ListField(child=serializers.CharField(), help_text="Unified diff of the YAML, line by line.")


def change_request_json(change_request: ChangeRequest, detail: bool = True) -> dict:
    latest = change_request.latest_revision()
    body = {
        "id": change_request.pk,
        "policy_set": change_request.policy_set.slug,
        "title": change_request.title,
        "rationale": change_request.rationale,
        "author": change_request.author.get_username(),
        "status": change_request.status,
        "base_version": change_request.base_version.number if change_request.base_version else None,
        "revision": latest.number if latest else None,
        "valid": bool(latest) and not latest.errors,
        "errors": latest.errors if latest else [],
        "approvals": change_request.approver_names(),
        "required_approvals": change_request.policy_set.required_approvals,
        "published_version": (
            change_request.published_version.number if hasattr(change_request, "published_version") else None
        ),
        "created_at": change_request.created_at,
        "updated_at": change_request.updated_at,
    }
    if detail:
        base = change_request.base_version
        body["policy"] = latest.document if latest else ""
        body["reviews"] = [
            {
                "reviewer": review.reviewer.get_username(),
                "decision": review.decision,
                "comment": review.comment,
                "revision": review.revision.number if review.revision else None,
                "dismissed": review.dismissed_at is not None,
                "acknowledged": review.acknowledged,
                "at": review.created_at,
            }
            for review in change_request.reviews.select_related("reviewer", "revision")
        ]
        body["route_changes"] = []
        body["diff"] = []
        if latest:
            result = validate_document(latest.document, change_request.policy_set)
            body["route_changes"] = document_changes(base.spec if base else None, result.document) or []
            body["diff"] = text_diff(
                base.document if base else "",
                latest.document,
                f"{change_request.policy_set.slug} v{base.number}" if base else "(empty)",
                f"CR-{change_request.pk} r{latest.number}",
            )
    return body


class PolicyYamlParser(BaseParser):
    """A YAML policy sent as the body itself (``Content-Type: application/yaml``): read as ``{"policy": text}``."""

    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read(MAX_DOCUMENT_BYTES + 1) if stream is not None else b""
        try:
            return {"policy": raw.decode("utf-8")}
        except UnicodeDecodeError as error:
            raise ParseError(f"YAML parse error - the body is not UTF-8 ({error.reason})") from None


class CrossingOut(serializers.Serializer):
    code = serializers.ChoiceField(choices=["cost", "quality", "provider"], help_text="What to acknowledge.")
    text = serializers.CharField(help_text="The threshold crossed, in words.")


class ImpactOut(serializers.Serializer):
    """The change-impact preview (docs/reviewing-changes.md explains each figure)."""

    policy_set = serializers.CharField()
    current_version = serializers.IntegerField(allow_null=True, help_text="The published version compared with.")
    window = serializers.DictField(help_text="since, until (RFC 3339) and days of the rollups replayed.")
    totals = serializers.DictField(help_text="Requests, requests a day, moved requests, costs before and after.")
    providers = serializers.DictField(help_text="Provider shares (basis points) of the traffic before and after.")
    routes = serializers.ListField(child=serializers.DictField(), help_text="Each route's figures.")
    no_traffic = serializers.ListField(child=serializers.CharField(), help_text="Routes without traffic.")
    unknown_models = serializers.ListField(
        child=serializers.CharField(), help_text="Model references in the traffic that the registry does not hold."
    )
    quality_drop_bp = serializers.IntegerField(help_text="The quality drop (basis points) that warns.")
    compliance = serializers.DictField(help_text="Requests the model that would serve them may not process today.")
    crossings = CrossingOut(many=True, help_text="The policy set's thresholds this change crosses.")


class ChangeRequestImpactOut(ImpactOut):
    change_request = serializers.IntegerField()
    revision = serializers.IntegerField(help_text="The revision the preview is of (worked out once per revision).")


CanReadPolicySets = requires("portfolio.view_policyset", "You do not have permission to read policy sets.")
CanProposeChanges = requires(PROPOSE_CHANGES, "Only engineers can write change requests.")
CanPublishChanges = requires(PUBLISH_CHANGES, "Only governance officers can publish change requests.")


class CostTierViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = CostTier.objects.all()
    serializer_class = CostTierSerializer
    lookup_field = "slug"


class TaskViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Task.objects.select_related("tier", "default_classification")
    serializer_class = TaskSerializer
    lookup_field = "slug"


class PolicySetViewSet(viewsets.ReadOnlyModelViewSet):
    """Policy sets and their immutable versions; ``/validate`` checks YAML without saving anything."""

    queryset = PolicySet.objects.all()
    serializer_class = PolicySetSerializer
    lookup_field = "slug"

    def get_permissions(self):
        if self.action in ("validate", "impact"):
            # Validating and previewing save nothing: anyone who may read policy sets may ask.
            return [IsAuthenticated(), CanReadPolicySets()]
        return super().get_permissions()

    # Every version at once, newest first: a bare list, not a page.
    @extend_schema(responses=PolicyVersionSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def versions(self, request, slug=None):
        policy_set = self.get_object()
        versions = policy_set.versions.select_related("policy_set", "author", "published_by").order_by("-number")
        return Response(PolicyVersionSerializer(versions, many=True).data)

    @extend_schema(
        request=inline_serializer("ValidatePolicy", fields={"policy": PolicyField()}),
        responses=ValidationOut,
    )
    @action(detail=True, methods=["post"])
    def validate(self, request, slug=None):
        """Validate YAML against this set now, without saving: for editors and CI."""
        policy_set = self.get_object()
        data = RevisionCreate(data=request.data)
        data.is_valid(raise_exception=True)
        if too_big := _size_check(data.validated_data["policy"]):
            return too_big
        result = validate_document(data.validated_data["policy"], policy_set)
        return Response({"valid": result.ok, "errors": [e.as_dict() for e in result.errors]})

    @extend_schema(
        request={
            "application/json": inline_serializer("PreviewPolicy", fields={"policy": PolicyField()}),
            "application/yaml": OpenApiTypes.STR,
        },
        responses={200: ImpactOut, 400: OpenApiTypes.OBJECT, 413: OpenApiTypes.OBJECT},
    )
    @action(detail=True, methods=["post"], parser_classes=[JSONParser, PolicyYamlParser])
    def impact(self, request, slug=None):
        """What-if for CI: the impact this YAML would have had on the last 14 days of the set's traffic,
        against its current version. Nothing is saved; no change request is created. A document with
        validation errors is answered 400 with them."""
        policy_set = self.get_object()
        data = RevisionCreate(data=request.data)
        data.is_valid(raise_exception=True)
        text = data.validated_data["policy"]
        if too_big := _size_check(text):
            return too_big
        result = validate_document(text, policy_set)
        policy = proposed_policy(text, result.document) if result.ok else None
        if policy is None:
            return Response({"policy": [str(error) for error in result.errors]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(presented(impact(policy_set, policy), policy_set))


def _version_for(slug: str, number: str | None) -> PolicyVersion:
    policy_set = get_object_or_404(PolicySet, slug=slug)
    if number is None:
        version = policy_set.current_version()
        if version is None:
            raise Http404(f"{slug} has no published version yet.")
        return version
    return get_object_or_404(PolicyVersion, policy_set=policy_set, number=int(number))


@extend_schema(
    parameters=[
        OpenApiParameter("fmt", str, OpenApiParameter.PATH, enum=["yaml", "json"], description="The format."),
    ],
    responses={(200, "application/yaml"): OpenApiTypes.STR, (200, "application/json"): OpenApiTypes.OBJECT},
)
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def policy_version_export(request, slug: str, fmt: str, number: str | None = None):
    """A policy version as YAML (the approved text) or JSON (its normalised form)."""
    if not request.user.has_perm("portfolio.view_policyversion"):
        return Response({"detail": "You do not have permission to read policy versions."}, status=403)
    version = _version_for(slug, number)
    name = f"{slug}-v{version.number}.{fmt}"
    audit.record(f"export.policy_{fmt}", actor=request.user, obj=version, after={"policy_set": slug})
    if fmt == "yaml":
        response = HttpResponse(version.document, content_type="application/yaml; charset=utf-8")
    else:
        body = {"policy_set": slug, "version": version.number, **version.spec}
        response = HttpResponse(json.dumps(body, indent=2, sort_keys=True), content_type="application/json")
    response["Content-Disposition"] = f'inline; filename="{name}"'
    response["X-Policy-Version"] = str(version.number)
    return response


class ChangeRequestViewSet(viewsets.GenericViewSet):
    """Change requests: create, revise, submit, review, withdraw, rebase and publish."""

    queryset = ChangeRequest.objects.select_related("policy_set", "author", "base_version")

    def get_permissions(self):
        if self.action in ("create", "revisions", "submit", "withdraw", "rebase"):
            return [CanProposeChanges()]
        if self.action == "publish":
            return [CanPublishChanges()]
        if self.action == "reviews":
            # Officers approve or reject, engineers and officers comment: ChangeRequest.review decides.
            return [IsAuthenticated()]
        return super().get_permissions()

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, description=f"Only this state: {', '.join(ChangeStatus.values)}."),
            OpenApiParameter("policy_set", str, description="Only this policy set (its slug)."),
        ],
        responses=ChangeRequestSummary(many=True),
    )
    def list(self, request):
        queryset = self.get_queryset()
        if state := request.query_params.get("status"):
            queryset = queryset.filter(status=state)
        if slug := request.query_params.get("policy_set"):
            queryset = queryset.filter(policy_set__slug=slug)
        page = self.paginate_queryset(queryset.prefetch_related("revisions"))
        return self.get_paginated_response([change_request_json(cr, detail=False) for cr in page])

    @extend_schema(responses=ChangeRequestOut)
    def retrieve(self, request, pk=None):
        return Response(change_request_json(self.get_object()))

    @extend_schema(request=ChangeRequestCreate, responses={201: ChangeRequestOut})
    def create(self, request):
        data = ChangeRequestCreate(data=request.data)
        data.is_valid(raise_exception=True)
        policy = data.validated_data.get("policy")
        if policy is not None and (too_big := _size_check(policy)):
            return too_big
        change_request = start_change(
            data.validated_data["policy_set"],
            request.user,
            data.validated_data["title"],
            data.validated_data["rationale"],
            policy,
        )
        return Response(change_request_json(change_request), status=status.HTTP_201_CREATED)

    @extend_schema(request=RevisionCreate, responses={201: ChangeRequestOut})
    @action(detail=True, methods=["post"])
    def revisions(self, request, pk=None):
        """Add a revision (the author): earlier approvals are dismissed."""
        change_request = self.get_object()
        data = RevisionCreate(data=request.data)
        data.is_valid(raise_exception=True)
        if too_big := _size_check(data.validated_data["policy"]):
            return too_big
        change_request.add_revision(request.user, data.validated_data["policy"])
        return Response(change_request_json(change_request), status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=ChangeRequestOut)
    @action(detail=True, methods=["post"])
    def submit(self, request, pk=None):
        change_request = self.get_object()
        change_request.submit(request.user)
        return Response(change_request_json(change_request))

    @extend_schema(request=ReviewCreate, responses={201: ChangeRequestOut})
    @action(detail=True, methods=["post"])
    def reviews(self, request, pk=None):
        """Approve, reject (with a comment) or comment. The author never approves."""
        change_request = self.get_object()
        data = ReviewCreate(data=request.data)
        data.is_valid(raise_exception=True)
        change_request.review(
            request.user,
            data.validated_data["decision"],
            data.validated_data["comment"],
            acknowledged=tuple(data.validated_data["acknowledge"]),
        )
        change_request.refresh_from_db()
        return Response(change_request_json(change_request), status=status.HTTP_201_CREATED)

    @extend_schema(request=WithdrawInput, responses=ChangeRequestOut)
    @action(detail=True, methods=["post"])
    def withdraw(self, request, pk=None):
        change_request = self.get_object()
        data = WithdrawInput(data=request.data)
        data.is_valid(raise_exception=True)
        change_request.withdraw(request.user, data.validated_data["comment"])
        return Response(change_request_json(change_request))

    @extend_schema(request=None, responses=ChangeRequestOut)
    @action(detail=True, methods=["post"])
    def rebase(self, request, pk=None):
        """Move the change onto the current version as a new revision (approvals are dismissed)."""
        change_request = self.get_object()
        rebase(change_request, request.user)
        change_request.refresh_from_db()
        return Response(change_request_json(change_request))

    @extend_schema(request=None, responses={200: ChangeRequestImpactOut, 409: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def impact(self, request, pk=None):
        """The latest revision's impact on the last 14 days of traffic: the figures its page shows
        (worked out once per revision; compliance as of now). 409 while the revision has validation errors."""
        change_request = self.get_object()
        revision = change_request.latest_revision()
        result = revision_impact(revision) if revision else None
        if result is None:
            what = f"Revision {revision.number} has validation errors" if revision else "There is no revision yet"
            return Response({"detail": f"{what}; its impact appears once it validates."}, status=409)
        body = presented(result, change_request.policy_set)
        return Response({"change_request": change_request.pk, "revision": revision.number, **body})

    @extend_schema(request=None, responses=ChangeRequestOut)
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        """Publish as the set's next version (officers). 409 when the base is no longer current."""
        change_request = self.get_object()
        try:
            version = publish(change_request, request.user)
        except StaleBaseError as error:
            body = {**error.message_dict, "rebase": f"/api/v1/change-requests/{change_request.pk}/rebase"}
            return Response(body, status=status.HTTP_409_CONFLICT)
        change_request.refresh_from_db()
        return Response({**change_request_json(change_request), "published_version": version.number})
