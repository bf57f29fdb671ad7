"""REST API for the registry: providers, models and model versions, with lifecycle actions."""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from steward.roles import REVIEW_VERSIONS

from .filters import ModelVersionFilter
from .models import ACTIONS, Model, ModelVersion, Provider, VersionTransition


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
    context_window = serializers.IntegerField(source="model.context_window", read_only=True)
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


class CanReviewVersions(BasePermission):
    message = "Only governance officers can change a model version's lifecycle status."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.has_perm(REVIEW_VERSIONS))


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
