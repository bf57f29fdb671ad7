"""REST API for compliance: classifications, certifications, holdings, the matrix and its actions."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from registry.filters import ModelVersionFilter
from registry.models import ModelVersion, Provider
from steward.api import requires
from steward.parsers import FormParser, JSONParser, MultiPartParser

from .matrix import CellState, Matrix, Verdict, check
from .models import (
    REQUEST_CELLS,
    REVIEW_CELLS,
    CellDecision,
    Certification,
    CertificationHolding,
    DataClassification,
    MatrixCell,
)


class CertificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Certification
        fields = ["id", "slug", "name", "description"]


class ClassificationSerializer(serializers.ModelSerializer):
    required_certifications = serializers.SlugRelatedField(
        slug_field="slug", many=True, queryset=Certification.objects.all(), required=False
    )

    class Meta:
        model = DataClassification
        fields = ["id", "slug", "name", "level", "description", "required_certifications", "allowed_regions", "storage"]

    def validate(self, attrs: dict) -> dict:
        probe = DataClassification(**{k: v for k, v in attrs.items() if k != "required_certifications"})
        probe.clean()
        return attrs


class HoldingSerializer(serializers.ModelSerializer):
    certification = serializers.SlugRelatedField(slug_field="slug", queryset=Certification.objects.all())
    provider = serializers.SlugRelatedField(
        slug_field="slug", queryset=Provider.objects.all(), required=False, allow_null=True
    )
    model_version = serializers.SlugRelatedField(
        slug_field="ref", queryset=ModelVersion.objects.all(), required=False, allow_null=True
    )
    recorded_by = serializers.CharField(source="recorded_by.get_username", read_only=True)

    class Meta:
        model = CertificationHolding
        fields = [
            "id",
            "certification",
            "provider",
            "model_version",
            "effect",
            "valid_from",
            "valid_until",
            "evidence_file",
            "evidence_url",
            "notes",
            "recorded_by",
            "recorded_at",
        ]
        read_only_fields = ["recorded_at"]

    def validate(self, attrs: dict) -> dict:
        probe = CertificationHolding(**attrs)
        probe.clean()
        return attrs

    def create(self, validated_data: dict) -> CertificationHolding:
        holding = CertificationHolding(recorded_by=self.context["request"].user, **validated_data)
        holding._history_user = self.context["request"].user
        holding.save()
        return holding


def verdict_json(version: ModelVersion, classification: DataClassification, verdict: Verdict) -> dict:
    cell = verdict.cell
    return {
        "model": version.ref,
        "classification": classification.slug,
        "usable": verdict.usable,
        "state": verdict.state,
        "eligible": verdict.eligible,
        "reasons": verdict.reasons,
        "cell_id": cell.pk if cell else None,
        "decision": cell.decision if cell else None,
        "decided_by": cell.decided_by_name if cell else None,
        "decided_at": cell.decided_at if cell else None,
        "justification": cell.justification if cell else "",
        "expires_at": cell.expires_at if cell else None,
        "suspended": bool(cell and cell.is_suspended),
        "requested_by": cell.requested_by_name if cell else None,
    }


STATES = list(CellState.LABELS)


class VerdictOut(serializers.Serializer):
    """What ``verdict_json`` answers: one model version x classification and its verdict."""

    model = serializers.CharField(help_text="provider/model@version")
    classification = serializers.CharField(help_text="The data classification's slug.")
    usable = serializers.BooleanField(help_text="Eligible, approved, not expired and not suspended.")
    state = serializers.ChoiceField(choices=STATES)
    eligible = serializers.BooleanField(help_text="Certifications valid and region allowed.")
    reasons = serializers.ListField(child=serializers.CharField(), help_text="Why it is not usable.")
    cell_id = serializers.IntegerField(allow_null=True, help_text="The cell's id; null when nobody asked yet.")
    decision = serializers.ChoiceField(choices=CellDecision.choices, allow_null=True)
    decided_by = serializers.CharField(allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    justification = serializers.CharField(allow_blank=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    suspended = serializers.BooleanField()
    requested_by = serializers.CharField(allow_null=True)


CanReviewCells = requires(REVIEW_CELLS, "Only governance officers can approve, deny, suspend or resume matrix cells.")


CanRequestCells = requires(REQUEST_CELLS, "Only engineers can request matrix cells.")


class CellAddress(serializers.Serializer):
    model = serializers.CharField(help_text="The model version's ref, provider/model@version.")
    classification = serializers.CharField(help_text="The data classification's slug.")

    def validate_model(self, value: str) -> ModelVersion:
        version = ModelVersion.objects.with_related().filter(ref=value).first()
        if version is None:
            raise serializers.ValidationError(f"No model version {value!r} in the registry.")
        return version

    def validate_classification(self, value: str) -> DataClassification:
        classification = DataClassification.objects.filter(slug=value).first()
        if classification is None:
            raise serializers.ValidationError(f"No data classification {value!r}.")
        return classification


class RequestInput(CellAddress):
    note = serializers.CharField(required=False, allow_blank=True, default="")


class DecisionInput(CellAddress):
    justification = serializers.CharField(required=False, allow_blank=True, default="")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class SuspensionInput(CellAddress):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class CertificationViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Certification.objects.all()
    serializer_class = CertificationSerializer


class ClassificationViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = DataClassification.objects.prefetch_related("required_certifications")
    serializer_class = ClassificationSerializer
    lookup_field = "slug"


class HoldingViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = CertificationHolding.objects.select_related("certification", "provider", "model_version", "recorded_by")
    serializer_class = HoldingSerializer
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    filterset_fields = {"provider__slug": ["exact"], "certification__slug": ["exact"], "model_version__ref": ["exact"]}


class MatrixCellViewSet(viewsets.GenericViewSet):
    """The matrix: one entry per model version x classification with its verdict now (or ``?at=``).

    Filter rows like the registry (``provider``, ``status``, ``tier``, ``region``, ``q``) and
    columns with ``classification``. Officers approve, deny, suspend and resume; engineers request.
    """

    queryset = MatrixCell.objects.all()

    def get_permissions(self):
        permissions = {
            "request_cell": [CanRequestCells()],
            "approve": [CanReviewCells()],
            "deny": [CanReviewCells()],
            "suspend": [CanReviewCells()],
            "resume": [CanReviewCells()],
        }
        return permissions.get(self.action) or super().get_permissions()

    @extend_schema(
        parameters=[
            OpenApiParameter("classification", str, description="Only this classification's column."),
            OpenApiParameter("at", OpenApiTypes.DATETIME, description="RFC 3339 time; default now."),
        ],
        responses=VerdictOut(many=True),
    )
    def list(self, request):
        at = parse_at(request.query_params.get("at"))
        versions = ModelVersionFilter(request.query_params, queryset=ModelVersion.objects.with_related())
        if not versions.is_valid():
            raise ValidationError(versions.errors)
        classifications = DataClassification.objects.all()
        if slug := request.query_params.get("classification"):
            classifications = classifications.filter(slug=slug)
        page = self.paginate_queryset(versions.qs)
        matrix = Matrix(page, classifications, at)
        cells = [verdict_json(v, c, verdict) for v, row in matrix.rows() for c, verdict in row]
        return self.get_paginated_response(cells)

    def _act(self, request, input_class, act) -> Response:
        data = input_class(data=request.data)
        data.is_valid(raise_exception=True)
        version = data.validated_data["model"]
        classification = data.validated_data["classification"]
        cell = MatrixCell.for_pair(version, classification)
        act(cell, data.validated_data)
        verdict = check(version, classification)
        return Response(verdict_json(version, classification, verdict), status=status.HTTP_200_OK)

    @extend_schema(request=RequestInput, responses=VerdictOut)
    @action(detail=False, methods=["post"], url_path="request")
    def request_cell(self, request):
        """Ask for a model version to be allowed to process a classification (engineers)."""
        return self._act(request, RequestInput, lambda cell, d: cell.request(request.user, d["note"]))

    @extend_schema(request=DecisionInput, responses=VerdictOut)
    @action(detail=False, methods=["post"])
    def approve(self, request):
        """Approve a cell (officers; a justification is required; refused when ineligible)."""
        return self._act(
            request, DecisionInput, lambda cell, d: cell.approve(request.user, d["justification"], d["expires_at"])
        )

    @extend_schema(request=DecisionInput, responses=VerdictOut)
    @action(detail=False, methods=["post"])
    def deny(self, request):
        """Deny a cell (officers; a justification is required)."""
        return self._act(request, DecisionInput, lambda cell, d: cell.deny(request.user, d["justification"]))

    @extend_schema(request=SuspensionInput, responses=VerdictOut)
    @action(detail=False, methods=["post"])
    def suspend(self, request):
        """Suspend an approved cell (officers; a reason is required)."""
        return self._act(request, SuspensionInput, lambda cell, d: cell.suspend(request.user, d["reason"]))

    @extend_schema(request=SuspensionInput, responses=VerdictOut)
    @action(detail=False, methods=["post"])
    def resume(self, request):
        """Resume a suspended cell (officers; a reason is required)."""
        return self._act(request, SuspensionInput, lambda cell, d: cell.resume(request.user, d["reason"]))


def parse_at(value: str | None) -> dt.datetime:
    """An RFC 3339 time from the query string (``at``), or now."""
    if not value:
        return timezone.now()
    parsed = None
    try:
        parsed = parse_datetime(value.replace(" ", "+"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValidationError({"at": ["Must be an RFC 3339 time with a time zone, e.g. 2026-11-28T12:00:00Z."]})
    return parsed


check_response = inline_serializer(
    "ComplianceCheck",
    fields={
        "usable": serializers.BooleanField(),
        "reasons": serializers.ListField(child=serializers.CharField()),
        "state": serializers.ChoiceField(choices=STATES),
    },
)


@extend_schema(
    parameters=[
        OpenApiParameter("model", str, required=True, description="provider/model@version"),
        OpenApiParameter("classification", str, required=True, description="classification slug"),
        OpenApiParameter("at", OpenApiTypes.DATETIME, description="RFC 3339 time; default now"),
    ],
    responses=check_response,
)
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def compliance_check(request):
    """May this model version process this data classification at this time? With the reasons."""
    if not request.user.has_perm("compliance.view_matrixcell"):
        return Response({"detail": "You do not have permission to read the compliance matrix."}, status=403)
    address = CellAddress(
        data={
            "model": request.query_params.get("model", ""),
            "classification": request.query_params.get("classification", ""),
        }
    )
    address.is_valid(raise_exception=True)
    at = parse_at(request.query_params.get("at"))
    verdict = check(address.validated_data["model"], address.validated_data["classification"], at)
    return Response({"usable": verdict.usable, "reasons": verdict.reasons, "state": verdict.state})
