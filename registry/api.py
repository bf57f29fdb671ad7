"""REST API for the registry: providers, models and model versions, with lifecycle actions."""

from __future__ import annotations

import re

from django.db import IntegrityError
from django.http import HttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from steward.api import requires
from steward.roles import REVIEW_VERSIONS

from .evaluation.runs import RUN_PERMISSION, cancel_run, start_run
from .evaluation.suites import SuiteFormatError, export_suite, import_suite, linked_values
from .filters import ModelVersionFilter
from .models import (
    ACTIONS,
    IDEMPOTENCY_KEY_LENGTH,
    REVIEW_CREDENTIALS,
    EndpointCredential,
    EvaluationRun,
    EvaluationSuite,
    Model,
    ModelVersion,
    Provider,
    RunStatus,
    RunTrigger,
    SuiteCategory,
    VersionTransition,
)


class ProviderSerializer(serializers.ModelSerializer):
    class Meta:
        model = Provider
        fields = ["id", "name", "slug", "website", "regions", "description", "created_at"]
        read_only_fields = ["created_at"]


class ModelSerializer(serializers.ModelSerializer):
    provider = serializers.SlugRelatedField(slug_field="slug", queryset=Provider.objects.all())

    class Meta:
        model = Model
        fields = [
            "id",
            "provider",
            "name",
            "slug",
            "family",
            "modality",
            "context_window",
            "capabilities",
            "description",
            "created_at",
        ]
        read_only_fields = ["created_at"]


class TransitionSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.get_username", read_only=True)

    class Meta:
        model = VersionTransition
        fields = ["action", "from_status", "to_status", "actor", "comment", "at"]


class ModelVersionSerializer(serializers.ModelSerializer):
    model = serializers.CharField(write_only=True, help_text="The model as provider/model, e.g. mistral/mistral-large.")
    provider = serializers.CharField(source="model.provider.slug", read_only=True)
    model_name = serializers.CharField(source="model.slug", read_only=True)
    context_window = serializers.IntegerField(source="effective_context_window", read_only=True)
    proposed_by = serializers.CharField(source="proposed_by.get_username", read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "ref",
            "model",
            "provider",
            "model_name",
            "version",
            "region",
            "endpoint_kind",
            "base_url",
            "provider_model_id",
            "api_key_env",
            "input_price_micro_usd",
            "output_price_micro_usd",
            "context_window",
            "cost_tier",
            "status",
            "status_changed_at",
            "latency_p50_ms",
            "latency_p95_ms",
            "notes",
            "proposed_by",
            "proposed_at",
        ]
        read_only_fields = [
            "ref",
            "status",
            "status_changed_at",
            "latency_p50_ms",
            "latency_p95_ms",
            "proposed_by",
            "proposed_at",
        ]
        # Uniqueness is checked by the model with a message naming the ref.
        validators: list = []

    def validate_model(self, value: str) -> Model:
        provider_slug, _, model_slug = value.partition("/")
        found = Model.objects.select_related("provider").filter(provider__slug=provider_slug, slug=model_slug).first()
        if found is None:
            raise serializers.ValidationError(f"No model {value!r} in the registry (expected provider/model).")
        return found

    def create(self, validated_data: dict) -> ModelVersion:
        return ModelVersion.propose(self.context["request"].user, **validated_data)


class ModelVersionDetailSerializer(ModelVersionSerializer):
    transitions = TransitionSerializer(many=True, read_only=True)

    class Meta(ModelVersionSerializer.Meta):
        fields = [*ModelVersionSerializer.Meta.fields, "transitions"]


CanReviewVersions = requires(REVIEW_VERSIONS, "Only governance officers can change a model version's lifecycle status.")


class ProviderViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Provider.objects.all()
    serializer_class = ProviderSerializer
    filterset_fields = ["slug"]
    search_fields = ["name", "slug"]


class ModelViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Model.objects.select_related("provider")
    serializer_class = ModelSerializer
    filterset_fields = {"provider__slug": ["exact"], "modality": ["exact"], "family": ["exact"]}
    search_fields = ["name", "slug", "family"]


comment_request = inline_serializer("LifecycleComment", fields={"comment": serializers.CharField()})


class ModelVersionViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Model versions. Engineers propose (POST); officers approve, reject, restrict, deprecate and retire."""

    queryset = ModelVersion.objects.with_related()
    filterset_class = ModelVersionFilter
    # Searching (?q=) and sorting (?sort=) come from the same filter the registry page uses.
    filter_backends = [DjangoFilterBackend]

    def get_serializer_class(self):
        return ModelVersionDetailSerializer if self.action != "list" else ModelVersionSerializer

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action != "list":
            queryset = queryset.prefetch_related("transitions__actor")
        return queryset

    def _transition(self, request, pk: str, action_name: str) -> Response:
        version = self.get_object()
        comment = request.data.get("comment", "") if isinstance(request.data, dict) else ""
        if not isinstance(comment, str):
            return Response({"comment": ["Must be a string."]}, status=status.HTTP_400_BAD_REQUEST)
        version.transition(action_name, request.user, comment)
        fresh = self.get_queryset().get(pk=version.pk)
        return Response(ModelVersionDetailSerializer(fresh, context={"request": request}).data)


def _lifecycle_action(action_name: str):
    def handler(self, request, pk=None):
        return self._transition(request, pk, action_name)

    handler.__name__ = action_name
    handler.__doc__ = f"{action_name.capitalize()} the model version (officers; a comment is required)."
    decorated = action(detail=True, methods=["post"], permission_classes=[CanReviewVersions])(handler)
    return extend_schema(request=comment_request, responses=ModelVersionDetailSerializer)(decorated)


for _name in ACTIONS:
    setattr(ModelVersionViewSet, _name, _lifecycle_action(_name))


# --- endpoint credentials -----------------------------------------------------------------------


class EndpointCredentialSerializer(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by.get_username", read_only=True, allow_null=True)
    decided_by = serializers.CharField(source="decided_by.get_username", read_only=True, allow_null=True)
    hosts = serializers.ListField(
        child=serializers.CharField(max_length=260),
        allow_empty=False,
        max_length=20,
        error_messages={"empty": "Name at least one host the key may be sent to."},
        help_text="Hosts the key may be sent to: host (any port) or host:port.",
    )

    class Meta:
        model = EndpointCredential
        fields = [
            "id",
            "env_var",
            "hosts",
            "description",
            "status",
            "requested_by",
            "requested_at",
            "decided_by",
            "decided_at",
            "decision_comment",
        ]
        read_only_fields = ["status", "requested_at", "decided_at", "decision_comment"]
        # The domain function checks uniqueness (a rejected or revoked variable can be requested again).
        extra_kwargs = {"env_var": {"validators": []}}

    def create(self, validated_data: dict) -> EndpointCredential:
        return EndpointCredential.request(
            self.context["request"].user,
            validated_data["env_var"],
            validated_data["hosts"],
            validated_data.get("description", ""),
        )


CanReviewCredentials = requires(REVIEW_CREDENTIALS, "Only governance officers can decide endpoint credentials.")


class EndpointCredentialViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """API-key variables bound to the hosts their keys may be sent to. Engineers request (POST);
    another person, an officer, approves, rejects or revokes."""

    queryset = EndpointCredential.objects.select_related("requested_by", "decided_by")
    serializer_class = EndpointCredentialSerializer
    filterset_fields = ["status", "env_var"]

    def _decide(self, request, action_name: str) -> Response:
        credential = self.get_object()
        comment = request.data.get("comment", "") if isinstance(request.data, dict) else ""
        if not isinstance(comment, str):
            return Response({"comment": ["Must be a string."]}, status=status.HTTP_400_BAD_REQUEST)
        credential.decide(action_name, request.user, comment)
        return Response(self.get_serializer(credential).data)


def _credential_action(action_name: str):
    def handler(self, request, pk=None):
        return self._decide(request, action_name)

    handler.__name__ = action_name
    handler.__doc__ = f"{action_name.capitalize()} the endpoint credential (officers; a comment is required)."
    decorated = action(detail=True, methods=["post"], permission_classes=[CanReviewCredentials])(handler)
    return extend_schema(request=comment_request, responses=EndpointCredentialSerializer)(decorated)


for _name in ("approve", "reject", "revoke"):
    setattr(EndpointCredentialViewSet, _name, _credential_action(_name))


# --- evaluations --------------------------------------------------------------------------------


def run_json(run: EvaluationRun) -> dict:
    """The figures of a run, as the run page shows them."""
    return {
        "id": run.pk,
        "suite": run.suite.slug,
        "category": run.suite.category,
        "model_version": run.model_version.ref,
        "status": run.status,
        "trigger": run.trigger,
        "total": run.total,
        "done": run.done,
        "errors": run.errors,
        "percent": run.percent,
        "eta_seconds": run.eta_seconds(),
        "score_bp": run.score_bp,
        "pass_threshold_bp": run.suite.pass_threshold_bp,
        "passed": run.passed,
        "latency_p50_ms": run.latency_p50_ms,
        "latency_p95_ms": run.latency_p95_ms,
        "cost_micro_usd": run.cost_micro_usd,
        "cost_per_1k_micro_usd": run.cost_per_1k_micro_usd,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "detail": run.detail,
    }


class EvaluationRunOut(serializers.Serializer):
    """What ``run_json`` answers: the schema's description of a run (nothing is read through it)."""

    id = serializers.IntegerField()
    suite = serializers.CharField(help_text="The suite's slug.")
    category = serializers.ChoiceField(choices=SuiteCategory.choices)
    model_version = serializers.CharField(help_text="provider/model@version")
    status = serializers.ChoiceField(choices=RunStatus.choices)
    trigger = serializers.ChoiceField(choices=RunTrigger.choices)
    total = serializers.IntegerField(help_text="Cases in the run.")
    done = serializers.IntegerField(help_text="Cases answered so far.")
    errors = serializers.IntegerField(help_text="Cases whose endpoint call failed.")
    percent = serializers.IntegerField(min_value=0, max_value=100)
    eta_seconds = serializers.IntegerField(allow_null=True, help_text="Seconds left at the pace so far.")
    score_bp = serializers.IntegerField(allow_null=True, help_text="Basis points (10,000 = every case passed).")
    pass_threshold_bp = serializers.IntegerField()
    passed = serializers.BooleanField(allow_null=True)
    latency_p50_ms = serializers.IntegerField(allow_null=True)
    latency_p95_ms = serializers.IntegerField(allow_null=True)
    cost_micro_usd = serializers.IntegerField()
    cost_per_1k_micro_usd = serializers.IntegerField(allow_null=True, help_text="Cost of 1,000 typical requests.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    detail = serializers.CharField(allow_blank=True)


class RunCreate(serializers.Serializer):
    suite = serializers.SlugRelatedField(slug_field="slug", queryset=EvaluationSuite.objects.all())
    model_version = serializers.SlugRelatedField(
        slug_field="ref", queryset=ModelVersion.objects.with_related(), help_text="provider/model@version"
    )


IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY = re.compile(rf"[\x21-\x7e](?:[\x20-\x7e]{{0,{IDEMPOTENCY_KEY_LENGTH - 2}}}[\x21-\x7e])?")

CanRunEvaluations = requires(RUN_PERMISSION, "Only engineers and officers can start or cancel evaluation runs.")


class EvaluationRunViewSet(viewsets.GenericViewSet):
    """Evaluation runs: start one (``{"suite", "model_version"}``), follow its progress, cancel it."""

    queryset = EvaluationRun.objects.select_related("suite", "model_version")

    def get_permissions(self):
        if self.action in ("create", "cancel"):
            return [CanRunEvaluations()]
        return super().get_permissions()

    @extend_schema(
        parameters=[
            OpenApiParameter("suite", str, description="Only runs of this suite (its slug)."),
            OpenApiParameter("model_version", str, description="Only runs of this version (provider/model@version)."),
            OpenApiParameter("status", str, description=f"Only runs in this state: {', '.join(RunStatus.values)}."),
        ],
        responses=EvaluationRunOut(many=True),
    )
    def list(self, request):
        queryset = self.get_queryset()
        for param, field in (("suite", "suite__slug"), ("model_version", "model_version__ref"), ("status", "status")):
            if value := request.query_params.get(param):
                queryset = queryset.filter(**{field: value})
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response([run_json(run) for run in page])

    @extend_schema(responses=EvaluationRunOut)
    def retrieve(self, request, pk=None):
        return Response(run_json(self.get_object()))

    @extend_schema(
        request=RunCreate,
        responses={
            201: EvaluationRunOut,
            422: OpenApiResponse(OpenApiTypes.OBJECT, description="The Idempotency-Key started another run."),
            503: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="The task queue does not answer: nothing was started (Retry-After says when to retry).",
            ),
        },
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                str,
                OpenApiParameter.HEADER,
                description=(
                    "A key of your choosing (at most 255 printable ASCII characters). A retry with the same "
                    "key returns the run the first request started (header Idempotent-Replayed: true) "
                    "instead of starting another; the same key for a different suite or version is 422."
                ),
            )
        ],
    )
    def create(self, request):
        key = request.headers.get(IDEMPOTENCY_HEADER, "")
        if key and not IDEMPOTENCY_KEY.fullmatch(key):
            message = f"At most {IDEMPOTENCY_KEY_LENGTH} printable ASCII characters, without spaces at either end."
            return Response({IDEMPOTENCY_HEADER: [message]}, status=status.HTTP_400_BAD_REQUEST)
        data = RunCreate(data=request.data)
        data.is_valid(raise_exception=True)
        suite, version = data.validated_data["suite"], data.validated_data["model_version"]
        if key:
            replayed = self._replay(request, key, suite, version)
            if replayed is not None:
                return replayed
        try:
            run = start_run(suite, version, by=request.user, trigger=RunTrigger.API, idempotency_key=key)
        except IntegrityError:
            # Two requests with one key at once: the other one started the run.
            replayed = self._replay(request, key, suite, version) if key else None
            if replayed is None:
                raise
            return replayed
        return Response(run_json(run), status=status.HTTP_201_CREATED)

    @staticmethod
    def _replay(request, key: str, suite: EvaluationSuite, version: ModelVersion) -> Response | None:
        """The answer for a key this person used before (None for a new key)."""
        earlier = (
            EvaluationRun.objects.select_related("suite", "model_version")
            .filter(requested_by=request.user, idempotency_key=key)
            .first()
        )
        if earlier is None:
            return None
        if (earlier.suite_id, earlier.model_version_id) != (suite.pk, version.pk):
            message = (
                f"This key started run {earlier.pk} ({earlier.suite.slug} against {earlier.model_version.ref}); "
                "use a new key for another run."
            )
            return Response({IDEMPOTENCY_HEADER: [message]}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
        return Response(run_json(earlier), status=status.HTTP_201_CREATED, headers={"Idempotent-Replayed": "true"})

    @extend_schema(request=None, responses=EvaluationRunOut)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = self.get_object()
        cancel_run(run, request.user)
        return Response(run_json(run))


class SuiteSerializer(serializers.ModelSerializer):
    task = serializers.SerializerMethodField(help_text="The task the suite guards (portfolio's), or null.")
    judge = serializers.SlugRelatedField(
        slug_field="ref", read_only=True, allow_null=True, help_text="The judge model's ref, or null."
    )
    cases = serializers.IntegerField(source="cases.count", read_only=True)

    class Meta:
        model = EvaluationSuite
        fields = [
            "id",
            "name",
            "slug",
            "category",
            "task",
            "description",
            "pass_threshold_bp",
            "schedule_minutes",
            "scorer",
            "scorer_config",
            "judge",
            "rubric",
            "concurrency",
            "max_output_chars",
            "cases",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_task(self, suite: EvaluationSuite) -> str | None:
        links = self.context.get("links")
        values = links.get(suite.pk) if links is not None else linked_values([suite])[suite.pk]
        return values.get("task")


class SuiteImport(serializers.Serializer):
    yaml = serializers.CharField(trim_whitespace=False)
    format = serializers.ChoiceField(choices=["steward", "promptfoo"], default="steward")
    name = serializers.CharField(required=False, default="")
    slug = serializers.CharField(required=False, default="")
    category = serializers.ChoiceField(choices=SuiteCategory.values, default=SuiteCategory.ACCURACY)


class SuiteImported(SuiteSerializer):
    cases_created = serializers.IntegerField(read_only=True)
    cases_updated = serializers.IntegerField(read_only=True)

    class Meta(SuiteSerializer.Meta):
        fields = [*SuiteSerializer.Meta.fields, "cases_created", "cases_updated"]


class EvaluationSuiteViewSet(viewsets.ReadOnlyModelViewSet):
    """Evaluation suites; import them as YAML (Steward's format or promptfoo's) and export them."""

    queryset = EvaluationSuite.objects.select_related("judge")
    serializer_class = SuiteSerializer
    lookup_field = "slug"

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        context = {**self.get_serializer_context(), "links": linked_values(page)}
        return self.get_paginated_response(SuiteSerializer(page, many=True, context=context).data)

    def get_permissions(self):
        if self.action == "import_yaml":
            return [IsAuthenticated()]  # import_suite checks the role
        return super().get_permissions()

    @extend_schema(request=SuiteImport, responses={201: SuiteImported})
    @action(detail=False, methods=["post"], url_path="import")
    def import_yaml(self, request):
        data = SuiteImport(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            suite, created, updated = import_suite(
                data.validated_data["yaml"],
                request.user,
                format=data.validated_data["format"],
                name=data.validated_data["name"],
                slug=data.validated_data["slug"],
                category=data.validated_data["category"],
            )
        except SuiteFormatError as error:
            return Response(error.as_dict(), status=status.HTTP_400_BAD_REQUEST)
        body = {**SuiteSerializer(suite).data, "cases_created": created, "cases_updated": updated}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses={(200, "application/yaml"): OpenApiTypes.STR})
    @action(detail=True, methods=["get"])
    def export(self, request, slug=None):
        suite = self.get_object()
        response = HttpResponse(export_suite(suite), content_type="application/yaml; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{suite.slug}.yaml"'
        return response
