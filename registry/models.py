"""The model registry: providers, models and model versions with their governed lifecycle."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone
from simple_history.models import HistoricalRecords

from audits import events as audit
from steward.roles import PROPOSE_VERSIONS, REVIEW_VERSIONS
from steward_client.canonical import MAX_SAFE_INTEGER

# Prices and ceilings are written into audit events and signed policies, canonical JSON whose integers
# stop at 2**53 - 1 (I-JSON); a larger amount could be stored but never recorded or signed.
signable_amount = MaxValueValidator(
    MAX_SAFE_INTEGER, f"At most {MAX_SAFE_INTEGER:,} micro-USD, the largest amount a signed policy can carry."
)

slug_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9.-]*$",
    "Use lower-case letters, digits, dots and hyphens, starting with a letter or digit.",
)
version_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    "Use letters, digits, dots, underscores and hyphens, starting with a letter or digit.",
)
region_validator = RegexValidator(
    r"^[a-z]{2,}(-[a-z0-9]+)*$",
    "Use a region code such as eu-west-1, us-east-1 or global.",
)
env_var_validator = RegexValidator(
    r"^[A-Z_][A-Z0-9_]*$",
    "Must be an environment variable name matching [A-Z_][A-Z0-9_]* (the name, never the key itself).",
)


# Variables that hold Steward's own settings and secrets, or the process's: their values are never
# sent to a model endpoint, whoever asks. ``AWS_*`` holds the process's own cloud credentials; the
# one AWS variable that is a model endpoint's key (Bedrock's API key) is allowed by name.
RESERVED_VARIABLE_PREFIXES = (
    "STEWARD_",
    "DJANGO_",
    "CELERY_",
    "REDIS",
    "DATABASE",
    "PG",
    "AWS_",
    "GUNICORN_",
    "PYTHON",
    "LD_",
    "SSL_",
)
RESERVED_VARIABLE_NAMES = frozenset(
    {
        "SECRET_KEY",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "PATH",
        "HOME",
        "USER",
        "SHELL",
        "PWD",
    }
)
ALLOWED_RESERVED_LOOKALIKES = frozenset({"AWS_BEARER_TOKEN_BEDROCK"})


def is_reserved_variable(name: str) -> bool:
    """True for Steward's own settings variables (and the process's), which can never hold an endpoint key."""
    upper = name.upper()
    if upper in ALLOWED_RESERVED_LOOKALIKES:
        return False
    return upper in RESERVED_VARIABLE_NAMES or upper.startswith(RESERVED_VARIABLE_PREFIXES)


def not_reserved_variable(value: str) -> None:
    if is_reserved_variable(value):
        raise ValidationError(
            f"{value} is one of Steward's own settings variables (STEWARD_*, DATABASE_URL, CELERY_*, SECRET_KEY, "
            "REDIS*, AWS_* …); its value is never sent to a model endpoint. Use a variable of the provider's key."
        )


def string_list_validator(value) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise ValidationError("Must be a list of non-empty strings.")


class Provider(models.Model):
    """A company or platform that serves models (OpenAI, Mistral AI, an internal platform …)."""

    name = models.CharField(max_length=100, unique=True)
    # CharField, not SlugField: Django's slug check (also in forms and the API) forbids the dots that
    # slug_validator allows, as in gpt-4.1 or llama-3.1-70b-instruct.
    slug = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    website = models.URLField(blank=True)
    regions = models.JSONField(
        default=list, blank=True, validators=[string_list_validator], help_text="Regions the provider offers."
    )
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Modality(models.TextChoices):
    TEXT = "text", "Text"
    MULTIMODAL = "multimodal", "Multimodal (text + images)"
    EMBEDDING = "embedding", "Embedding"
    IMAGE = "image", "Image generation"
    AUDIO = "audio", "Audio"


class Model(models.Model):
    """A model family member offered by a provider (e.g. Mistral AI's Mistral Large)."""

    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="models")
    name = models.CharField(max_length=100)
    # CharField, not SlugField, so that dots are allowed (see Provider.slug).
    slug = models.CharField(max_length=80, db_index=True, validators=[slug_validator])
    family = models.CharField(max_length=80, blank=True)
    modality = models.CharField(max_length=20, choices=Modality.choices, default=Modality.TEXT)
    context_window = models.PositiveIntegerField(
        validators=[MinValueValidator(1)], help_text="Maximum tokens of input plus output."
    )
    capabilities = models.JSONField(
        default=list, blank=True, validators=[string_list_validator], help_text="e.g. chat, tools, vision, json"
    )
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    history = HistoricalRecords()

    class Meta:
        ordering = ["provider__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "slug"], name="model_slug_unique_per_provider"),
        ]

    def __str__(self) -> str:
        return f"{self.provider.slug}/{self.slug}"


class EndpointKind(models.TextChoices):
    OPENAI_COMPATIBLE = "openai-compatible", "OpenAI-compatible chat completions"
    ANTHROPIC = "anthropic", "Anthropic Messages"
    GEMINI = "gemini", "Google Gemini"
    BEDROCK = "bedrock", "AWS Bedrock"


class Status(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    RESTRICTED = "restricted", "Restricted"
    DEPRECATED = "deprecated", "Deprecated"
    RETIRED = "retired", "Retired"
    WITHDRAWN = "withdrawn", "Withdrawn"


# The lifecycle: which status may follow which. Restriction can be lifted (back to approved). Officers
# make every move but one: the proposer withdraws their own proposal (``ModelVersion.withdraw``).
TRANSITIONS: dict[str, set[str]] = {
    Status.PROPOSED: {Status.APPROVED, Status.REJECTED, Status.WITHDRAWN},
    Status.APPROVED: {Status.RESTRICTED, Status.DEPRECATED},
    Status.RESTRICTED: {Status.APPROVED, Status.DEPRECATED},
    Status.DEPRECATED: {Status.RETIRED},
    Status.REJECTED: set(),
    Status.RETIRED: set(),
    Status.WITHDRAWN: set(),
}

# The verb a person uses for each target status (buttons, API actions, messages).
ACTIONS: dict[str, str] = {
    "approve": Status.APPROVED,
    "reject": Status.REJECTED,
    "restrict": Status.RESTRICTED,
    "deprecate": Status.DEPRECATED,
    "retire": Status.RETIRED,
}

TIERS = ("small", "medium", "large")


# Where the cost tiers come from: portfolio, which owns them, registers its own at start
# (``register_tier_source``); until it has tiers, or without it, the defaults above.
_tier_source: Callable[[], list[str]] = lambda: []  # noqa: E731


def register_tier_source(source: Callable[[], list[str]]) -> None:
    global _tier_source
    _tier_source = source


def known_tiers() -> list[str]:
    """The cost tiers a version may be in, by rank: the portfolio's tiers, or the defaults before any exist."""
    return _tier_source() or list(TIERS)


# A version's fields that go into every signed policy naming it (with its ref): only a new proposal,
# reviewed by an officer, changes them.
SIGNED_FIELDS = (
    "region",
    "endpoint_kind",
    "base_url",
    "provider_model_id",
    "api_key_env",
    "input_price_micro_usd",
    "output_price_micro_usd",
    "cost_tier",
    "context_window",
)
# What the proposer may change while the version is proposed: everything but what makes its ref.
EDITABLE_PROPOSAL_FIELDS = (*SIGNED_FIELDS, "notes")


class ModelVersionQuerySet(models.QuerySet):
    def with_related(self) -> ModelVersionQuerySet:
        return self.select_related("model__provider", "proposed_by")

    def awaiting_review_by(self, user) -> ModelVersionQuerySet:
        """Proposed versions that ``user`` may decide: everything proposed, except their own."""
        return self.filter(status=Status.PROPOSED).exclude(proposed_by=user)


class ModelVersion(models.Model):
    """A deployable version of a model: where it runs, what it costs, and whether it may be used.

    Its stable reference everywhere is ``provider/model@version``. Prices are integer micro-USD
    per million tokens, never floats. The API key is referenced by the *name* of the environment
    variable that holds it; the key itself never enters Steward.
    """

    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="versions")
    version = models.CharField(max_length=64, validators=[version_validator])
    ref = models.CharField(max_length=200, unique=True, editable=False)
    region = models.CharField(max_length=40, validators=[region_validator])
    endpoint_kind = models.CharField(
        max_length=30, choices=EndpointKind.choices, default=EndpointKind.OPENAI_COMPATIBLE
    )
    base_url = models.URLField(max_length=300, help_text="Endpoint base URL, e.g. https://api.example.com/v1")
    provider_model_id = models.CharField(max_length=200, help_text="The model id the endpoint expects.")
    api_key_env = models.CharField(
        "API key environment variable",
        max_length=100,
        validators=[env_var_validator, not_reserved_variable],
        help_text="The name of the environment variable that holds the API key.",
    )
    input_price_micro_usd = models.BigIntegerField(
        "input price (micro-USD per million tokens)",
        validators=[MinValueValidator(0, "Prices cannot be negative."), signable_amount],
    )
    output_price_micro_usd = models.BigIntegerField(
        "output price (micro-USD per million tokens)",
        validators=[MinValueValidator(0, "Prices cannot be negative."), signable_amount],
    )
    cost_tier = models.CharField(
        max_length=30, default="medium", validators=[slug_validator], help_text="small, medium, large …"
    )
    context_window = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1, "A context window is at least 1 token.")],
        help_text="Maximum tokens of input plus output for this version; empty means the model's.",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PROPOSED, editable=False)
    status_changed_at = models.DateTimeField(default=timezone.now, editable=False)
    latency_p50_ms = models.PositiveIntegerField(null=True, blank=True, editable=False)
    latency_p95_ms = models.PositiveIntegerField(null=True, blank=True, editable=False)
    notes = models.TextField(blank=True)
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="proposed_versions", editable=False
    )
    proposed_at = models.DateTimeField(default=timezone.now, editable=False)
    history = HistoricalRecords()

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["ref"]
        permissions = [
            ("review_modelversion", "Can approve, reject, restrict, deprecate and retire model versions"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="version_unique_per_model"),
            models.CheckConstraint(
                condition=models.Q(input_price_micro_usd__gte=0) & models.Q(output_price_micro_usd__gte=0),
                name="version_prices_not_negative",
            ),
        ]
        indexes = [models.Index(fields=["status"]), models.Index(fields=["cost_tier"])]

    def __str__(self) -> str:
        return self.ref

    def save(self, *args, **kwargs) -> None:
        self.ref = self.make_ref(self.model.provider.slug, self.model.slug, self.version)
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("registry:version-detail", args=[self.pk])

    @property
    def provider(self) -> Provider:
        return self.model.provider

    @property
    def effective_context_window(self) -> int:
        """The version's own context window, or its model's when the proposal left it empty."""
        return self.context_window or self.model.context_window

    def price_micro_usd(self, input_tokens: int, output_tokens: int) -> int:
        """What ``input_tokens`` in and ``output_tokens`` out cost on this version, in micro-USD.

        Prices are per million tokens; the one rounding rule everywhere is up to the next whole
        micro-USD (a cost is never under-stated). Integers only.
        """
        total = input_tokens * self.input_price_micro_usd + output_tokens * self.output_price_micro_usd
        return -(-total // 1_000_000)

    def clean(self) -> None:
        super().clean()
        tiers = known_tiers()
        if self.cost_tier and self.cost_tier not in tiers:
            message = f"Unknown cost tier {self.cost_tier!r}; use one of {', '.join(tiers)}."
            raise ValidationError({"cost_tier": [message]})
        if self.model_id and self.version:
            self.ref = self.make_ref(self.model.provider.slug, self.model.slug, self.version)
            clash = ModelVersion.objects.filter(ref=self.ref).exclude(pk=self.pk)
            if clash.exists():
                raise ValidationError({"version": [f"{self.ref} is already in the registry."]})

    @staticmethod
    def make_ref(provider_slug: str, model_slug: str, version: str) -> str:
        return f"{provider_slug}/{model_slug}@{version}"

    # --- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def propose(cls, by, **fields) -> ModelVersion:
        """Record ``by``'s (an engineer's) proposal of a new model version.

        Validates every field and saves the version with the first entry of its timeline in one
        transaction, so nothing is half-written.
        """
        if not by.has_perm(PROPOSE_VERSIONS):
            raise PermissionDenied("Only engineers can propose model versions.")
        version = cls(proposed_by=by, **fields)
        # The ref's uniqueness is checked by clean() with a clearer message than the constraint's.
        version.full_clean(exclude=["ref"], validate_constraints=False)
        with transaction.atomic():
            version._history_user = by
            version.save()
            VersionTransition.objects.create(
                version=version,
                action="propose",
                from_status="",
                to_status=Status.PROPOSED,
                actor=by,
                comment=fields.get("notes", ""),
            )
            audit.record(
                "model_version.propose",
                actor=by,
                obj=version,
                after=audit.snapshot(version, ["ref", *SIGNED_FIELDS, "status"]),
                comment=fields.get("notes", ""),
            )
            if settings.STEWARD_EVALUATE_ON_PROPOSAL:
                from .evaluation.runs import start_runs_for_proposal

                transaction.on_commit(lambda: start_runs_for_proposal(version))
        return version

    def edit_proposal(self, by, **fields) -> None:
        """Change ``by``'s own proposal while it is proposed: any of ``EDITABLE_PROPOSAL_FIELDS``.

        Nobody else may edit it, and once an officer has decided it (or it was withdrawn) it is final.
        Validated like a proposal and recorded (history, audit event with before and after) in one
        transaction; with STEWARD_EVALUATE_ON_PROPOSAL the suites run again when an endpoint or price
        field changed, since earlier runs measured what the proposal no longer says.
        """
        unknown = set(fields) - set(EDITABLE_PROPOSAL_FIELDS)
        if unknown:
            raise ValidationError({name: ["This field cannot be edited on a proposal."] for name in sorted(unknown)})
        with transaction.atomic():
            current = self._locked_own_proposal(by, "edit")
            before = audit.snapshot(current, list(EDITABLE_PROPOSAL_FIELDS))
            for name, value in fields.items():
                setattr(current, name, value)
            current.full_clean(exclude=["ref"], validate_constraints=False)
            after = audit.snapshot(current, list(EDITABLE_PROPOSAL_FIELDS))
            changed = [name for name in EDITABLE_PROPOSAL_FIELDS if before[name] != after[name]]
            if not changed:
                raise ValidationError({"__all__": ["Nothing changed: the proposal already says all of this."]})
            current._history_user = by
            current._change_reason = f"edit: {', '.join(changed)}"
            current.save(update_fields=changed)
            audit.record(
                "model_version.edit",
                actor=by,
                obj=current,
                before={name: before[name] for name in changed},
                after={name: after[name] for name in changed},
                comment=f"changed {', '.join(changed)}",
            )
            if settings.STEWARD_EVALUATE_ON_PROPOSAL and set(changed) & set(SIGNED_FIELDS):
                from .evaluation.runs import start_runs_for_proposal

                transaction.on_commit(lambda: start_runs_for_proposal(current))
        for name in EDITABLE_PROPOSAL_FIELDS:
            setattr(self, name, getattr(current, name))

    def withdraw(self, by, comment: str) -> VersionTransition:
        """``by`` takes back their own proposal before an officer decides it; final, like a rejection."""
        comment = (comment or "").strip()
        if not comment:
            raise ValidationError({"comment": ["A comment is required to withdraw a proposal."]})
        with transaction.atomic():
            current = self._locked_own_proposal(by, "withdraw")
            current.status = Status.WITHDRAWN
            current.status_changed_at = timezone.now()
            current._change_reason = f"withdraw: {comment}"
            current._history_user = by
            current.save(update_fields=["status", "status_changed_at"])
            step = VersionTransition.objects.create(
                version=current,
                action="withdraw",
                from_status=Status.PROPOSED,
                to_status=Status.WITHDRAWN,
                actor=by,
                comment=comment,
            )
            audit.record(
                "model_version.withdraw",
                actor=by,
                obj=current,
                before={"status": Status.PROPOSED},
                after={"status": Status.WITHDRAWN},
                comment=comment,
            )
        self.status = current.status
        self.status_changed_at = current.status_changed_at
        return step

    def is_open_proposal_of(self, user) -> bool:
        """Whether ``user`` may still edit or withdraw this version: it is their proposal, undecided."""
        return self.status == Status.PROPOSED and self.proposed_by_id == user.pk and user.has_perm(PROPOSE_VERSIONS)

    def _locked_own_proposal(self, by, action: str) -> ModelVersion:
        """This version, locked for the rest of the transaction, when ``by`` may ``action`` it (else raise)."""
        current = ModelVersion.objects.select_for_update().select_related("model__provider").get(pk=self.pk)
        if current.proposed_by_id != by.pk or not by.has_perm(PROPOSE_VERSIONS):
            proposer = current.proposed_by.get_username()
            raise PermissionDenied(f"Only {proposer}, who proposed {current.ref}, can {action} it.")
        if current.status != Status.PROPOSED:
            raise ValidationError(
                {
                    "status": [
                        f"Cannot {action} {current.ref}: it is {current.get_status_display().lower()}, and only a "
                        "proposal that awaits a decision can be edited or withdrawn."
                    ]
                }
            )
        return current

    def allowed_actions(self) -> list[str]:
        return [action for action, target in ACTIONS.items() if target in TRANSITIONS[self.status]]

    def transition(self, action: str, by, comment: str) -> VersionTransition:
        """Move this version through its lifecycle on behalf of ``by`` with a required comment.

        Every caller (views, API, shell) goes through here, so the rules hold everywhere: only
        officers decide, the proposer never decides their own proposal, the move must be allowed
        from the current status, and the comment is required. Raises ValidationError or
        PermissionDenied and changes nothing on failure.
        """
        if action not in ACTIONS:
            raise ValidationError({"action": [f"Unknown action {action!r}; use one of {', '.join(ACTIONS)}."]})
        comment = (comment or "").strip()
        if not comment:
            raise ValidationError({"comment": [f"A comment is required to {action} a model version."]})
        if not by.has_perm(REVIEW_VERSIONS):
            raise PermissionDenied("Only governance officers can change a model version's lifecycle status.")
        with transaction.atomic():
            # Lock the row: two officers deciding at once must not both succeed.
            current = ModelVersion.objects.select_for_update().get(pk=self.pk)
            if current.status == Status.PROPOSED and current.proposed_by_id == by.pk:
                raise PermissionDenied(
                    f"{by.get_username()} proposed {current.ref} and cannot {action} it; another officer must decide."
                )
            target = ACTIONS[action]
            if action == "approve" and current.status == Status.PROPOSED:
                from .evaluation.gates import gate_failures, version_approval_gates

                failing = gate_failures(current, version_approval_gates())
                if failing:
                    raise ValidationError({"gates": [f"Approval requires passing evaluations: {'; '.join(failing)}."]})
            if target not in TRANSITIONS[current.status]:
                allowed = ", ".join(current.allowed_actions()) or "none (it is final)"
                raise ValidationError(
                    {
                        "status": [
                            f"Cannot {action} {current.ref}: it is {current.get_status_display().lower()}. "
                            f"Allowed actions: {allowed}."
                        ]
                    }
                )
            before = current.status
            current.status = target
            current.status_changed_at = timezone.now()
            current._change_reason = f"{action}: {comment}"
            current._history_user = by
            current.save(update_fields=["status", "status_changed_at"])
            step = VersionTransition.objects.create(
                version=current, action=action, from_status=before, to_status=target, actor=by, comment=comment
            )
            audit.record(
                f"model_version.{action}",
                actor=by,
                obj=current,
                before={"status": before},
                after={"status": target},
                comment=comment,
            )
        self.status = current.status
        self.status_changed_at = current.status_changed_at
        return step

    def approve(self, by, comment: str) -> VersionTransition:
        return self.transition("approve", by, comment)

    def reject(self, by, comment: str) -> VersionTransition:
        return self.transition("reject", by, comment)

    def restrict(self, by, comment: str) -> VersionTransition:
        return self.transition("restrict", by, comment)

    def deprecate(self, by, comment: str) -> VersionTransition:
        return self.transition("deprecate", by, comment)

    def retire(self, by, comment: str) -> VersionTransition:
        return self.transition("retire", by, comment)


class VersionTransition(models.Model):
    """One step of a model version's lifecycle: who moved it, when, from what to what, and why.

    The proposal itself is the first step (``from_status`` empty).
    """

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="transitions")
    action = models.CharField(max_length=20)
    from_status = models.CharField(max_length=20, choices=Status.choices, blank=True)
    to_status = models.CharField(max_length=20, choices=Status.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    comment = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.version.ref}: {self.action} by {self.actor} at {self.at:%Y-%m-%d %H:%M}"


# --- endpoint credentials -----------------------------------------------------------------------

REVIEW_CREDENTIALS = "registry.review_endpointcredential"
REQUEST_CREDENTIALS = "registry.add_endpointcredential"

_HOST_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
_HOST_ENTRY = re.compile(r"^(?P<host>\[[0-9a-f:.]+\]|[^:\[\]]+)(?::(?P<port>[0-9]{1,5}))?$")
MAX_CREDENTIAL_HOSTS = 20


def normalise_host(value: str) -> str:
    """``host`` or ``host:port`` in lower case; raises ValidationError for anything else (URLs, paths, wildcards)."""
    entry = value.strip().lower()
    match = _HOST_ENTRY.fullmatch(entry)
    host = match["host"] if match else ""
    valid = bool(match) and (
        _HOST_NAME.fullmatch(host) is not None and len(host) <= 253
        if not host.startswith("[")
        else _is_ipv6(host[1:-1])
    )
    if not valid:
        raise ValidationError(
            f"{value!r} is not a host: give a host such as api.openai.com, or host:port such as 127.0.0.1:8001 "
            "(no scheme, path or wildcard)."
        )
    if match["port"] is not None and not 0 < int(match["port"]) < 65536:
        raise ValidationError(f"{value!r}: the port must be between 1 and 65535.")
    return entry


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def credential_hosts_validator(value) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError("Name at least one host the key may be sent to.")
    if len(value) > MAX_CREDENTIAL_HOSTS:
        raise ValidationError(f"At most {MAX_CREDENTIAL_HOSTS} hosts.")
    for item in value:
        if not isinstance(item, str):
            raise ValidationError("Hosts must be strings.")
        normalise_host(item)


class CredentialStatus(models.TextChoices):
    REQUESTED = "requested", "Awaiting approval"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    REVOKED = "revoked", "Revoked"


class EndpointCredential(models.Model):
    """The binding of an API-key environment variable to the hosts its key may be sent to.

    Steward never holds the key: the worker reads it from its environment, and attaches it to a
    request only when this binding is approved and the request goes to one of ``hosts``. An
    engineer requests the binding; another person, an officer, approves it. Steward's own settings
    variables can never be bound (``is_reserved_variable``).
    """

    env_var = models.CharField(
        "environment variable",
        max_length=100,
        unique=True,
        validators=[env_var_validator, not_reserved_variable],
        help_text="The name of the variable that holds the key, e.g. MISTRAL_API_KEY.",
    )
    hosts = models.JSONField(
        validators=[credential_hosts_validator],
        help_text="The hosts the key may be sent to: host (any port) or host:port.",
    )
    description = models.TextField(blank=True)
    status = models.CharField(
        max_length=10, choices=CredentialStatus.choices, default=CredentialStatus.REQUESTED, editable=False
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, editable=False
    )
    requested_at = models.DateTimeField(default=timezone.now, editable=False)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True, editable=False
    )
    decided_at = models.DateTimeField(null=True, blank=True, editable=False)
    decision_comment = models.TextField(blank=True, editable=False)
    history = HistoricalRecords()

    class Meta:
        ordering = ["env_var"]
        permissions = [("review_endpointcredential", "Can approve, reject and revoke endpoint credentials")]

    def __str__(self) -> str:
        return self.env_var

    def get_absolute_url(self) -> str:
        return reverse("registry:credential", args=[self.pk])

    def clean(self) -> None:
        super().clean()
        if isinstance(self.hosts, list):
            try:
                self.hosts = sorted({normalise_host(host) for host in self.hosts if isinstance(host, str)})
            except ValidationError as error:
                raise ValidationError({"hosts": error.messages}) from None

    @property
    def is_approved(self) -> bool:
        return self.status == CredentialStatus.APPROVED

    def allows_host(self, host: str, port: int | None) -> bool:
        """True when a request to ``host`` on ``port`` may carry this key."""
        host = host.lower()
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 literal, as written in a URL
        return any(entry == host or (port is not None and entry == f"{host}:{port}") for entry in self.hosts)

    # --- actions: pages, API and the demo seed all go through these ------------------------------

    @classmethod
    def request(cls, by, env_var: str, hosts: list[str], description: str = "") -> EndpointCredential:
        """``by`` asks for ``env_var``'s key to be sent to ``hosts``; an officer must approve.

        Asking again for a rejected or revoked variable (or with other hosts for an approved one)
        reopens it: the new hosts need a new approval before any key is sent.
        """
        if not by.has_perm(REQUEST_CREDENTIALS):
            raise PermissionDenied("Only engineers and officers can request endpoint credentials.")
        with transaction.atomic():
            credential = cls.objects.select_for_update().filter(env_var=env_var).first()
            before = None
            if credential is None:
                credential = cls(env_var=env_var)
            else:
                if credential.status == CredentialStatus.REQUESTED:
                    raise ValidationError({"env_var": [f"{env_var} is already requested and awaits an officer."]})
                before = audit.snapshot(credential, ["hosts", "status", "description"])
            credential.hosts = hosts
            credential.description = (description or "").strip()
            credential.status = CredentialStatus.REQUESTED
            credential.requested_by = by
            credential.requested_at = timezone.now()
            credential.decided_by, credential.decided_at, credential.decision_comment = None, None, ""
            credential.full_clean(validate_unique=credential.pk is None)
            credential._history_user = by
            credential._change_reason = "requested"
            credential.save()
            audit.record(
                "endpoint_credential.request",
                actor=by,
                obj=credential,
                before=before,
                after=audit.snapshot(credential, ["env_var", "hosts", "status", "description"]),
            )
        return credential

    def decide(self, action: str, by, comment: str) -> None:
        """Approve, reject or revoke on behalf of ``by`` (an officer who did not request it), with a comment."""
        targets = {
            "approve": (CredentialStatus.REQUESTED, CredentialStatus.APPROVED),
            "reject": (CredentialStatus.REQUESTED, CredentialStatus.REJECTED),
            "revoke": (CredentialStatus.APPROVED, CredentialStatus.REVOKED),
        }
        if action not in targets:
            raise ValidationError({"action": [f"Unknown action {action!r}; use approve, reject or revoke."]})
        comment = (comment or "").strip()
        if not comment:
            raise ValidationError({"comment": [f"A comment is required to {action} an endpoint credential."]})
        if not by.has_perm(REVIEW_CREDENTIALS):
            raise PermissionDenied("Only governance officers can decide endpoint credentials.")
        required, target = targets[action]
        with transaction.atomic():
            current = EndpointCredential.objects.select_for_update().get(pk=self.pk)
            if action != "revoke" and current.requested_by_id == by.pk:
                raise PermissionDenied(
                    f"{by.get_username()} requested {current.env_var} and cannot {action} it; another officer must."
                )
            if current.status != required:
                raise ValidationError(
                    {"status": [f"Cannot {action} {current.env_var}: it is {current.get_status_display().lower()}."]}
                )
            before = current.status
            current.status = target
            current.decided_by, current.decided_at, current.decision_comment = by, timezone.now(), comment
            current._history_user = by
            current._change_reason = f"{action}: {comment}"
            current.save()
            audit.record(
                f"endpoint_credential.{action}",
                actor=by,
                obj=current,
                before={"status": before},
                after={"status": target, "hosts": current.hosts},
                comment=comment,
            )
        self.refresh_from_db()


# --- evaluations --------------------------------------------------------------------------------


class SuiteCategory(models.TextChoices):
    ACCURACY = "accuracy", "Accuracy"
    BIAS = "bias", "Bias"
    SAFETY = "safety", "Safety"
    COMPLIANCE = "compliance", "Compliance"


class EvaluationSuite(models.Model):
    """A set of cases that measures one quality of a model on one of the organisation's tasks.

    Scores are basis points (0–10000); a run passes when its score reaches ``pass_threshold_bp``.
    """

    name = models.CharField(max_length=120, unique=True)
    slug = models.CharField(max_length=80, unique=True, validators=[slug_validator])
    category = models.CharField(max_length=20, choices=SuiteCategory.choices)
    description = models.TextField(blank=True)
    pass_threshold_bp = models.PositiveIntegerField(
        default=8000,
        validators=[MinValueValidator(0), MaxValueValidator(10000)],
        help_text="The score (basis points, 0–10000) a run must reach to pass.",
    )
    schedule_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Run against every approved version this often; empty: on demand only."
    )
    scorer = models.CharField(max_length=30, default="exact", help_text="The default scorer of its cases.")
    scorer_config = models.JSONField(default=dict, blank=True)
    judge = models.ForeignKey(
        ModelVersion,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="judged_suites",
        help_text="For the llm-judge scorer: an approved model version that grades the answers.",
    )
    rubric = models.TextField(blank=True, help_text="For the llm-judge scorer: how to grade.")
    concurrency = models.PositiveSmallIntegerField(
        default=16,
        validators=[MinValueValidator(1), MaxValueValidator(256)],
        help_text="Requests in flight at once per worker.",
    )
    max_output_chars = models.PositiveIntegerField(default=4000, help_text="Longer answers are truncated and marked.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    history = HistoricalRecords()

    class Meta:
        ordering = ["category", "name"]
        permissions = [("run_evaluationsuite", "Can start and cancel evaluation runs")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("registry:suite", args=[self.slug])


class EvaluationCase(models.Model):
    """One prompt and what a good answer is. Bias cases share a ``group`` and differ in one attribute."""

    suite = models.ForeignKey(EvaluationSuite, on_delete=models.CASCADE, related_name="cases")
    key = models.CharField(max_length=100, help_text="Stable id of the case within its suite.")
    position = models.PositiveIntegerField(default=0)
    messages = models.JSONField(help_text='Chat messages: [{"role": "user", "content": "..."}].')
    expected = models.TextField(blank=True)
    scorer = models.CharField(max_length=30, blank=True, help_text="Overrides the suite's scorer.")
    scorer_config = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    group = models.CharField(max_length=100, blank=True, help_text="Bias: cases that must get the same label.")

    class Meta:
        ordering = ["suite", "position", "pk"]
        constraints = [models.UniqueConstraint(fields=["suite", "key"], name="case_key_unique_per_suite")]

    def __str__(self) -> str:
        return f"{self.suite.slug}:{self.key}"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    # Most cases got no answer (STEWARD_EVALUATION_ERRORED_SHARE): the run says nothing about the
    # model, so it is never a version's latest score and never counts for a gate.
    ERRORED = "errored", "Errored"


FINISHED_RUN_STATUSES = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.ERRORED)


class RunTrigger(models.TextChoices):
    MANUAL = "manual", "Started in the browser"
    API = "api", "Started through the API"
    SCHEDULE = "schedule", "Scheduled"
    PROPOSAL = "proposal", "On proposal"
    DEMO = "demo", "Demo data"


IDEMPOTENCY_KEY_LENGTH = 255


class EvaluationRun(models.Model):
    """One suite run against one model version, executed by Celery workers in chunks."""

    suite = models.ForeignKey(EvaluationSuite, on_delete=models.PROTECT, related_name="runs")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="evaluation_runs")
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    trigger = models.CharField(max_length=12, choices=RunTrigger.choices, default=RunTrigger.MANUAL)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_progress_at = models.DateTimeField(null=True, blank=True)
    resumes = models.PositiveSmallIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    score_bp = models.PositiveIntegerField(null=True, blank=True)
    passed = models.BooleanField(null=True)
    latency_p50_ms = models.PositiveIntegerField(null=True, blank=True)
    latency_p95_ms = models.PositiveIntegerField(null=True, blank=True)
    cost_micro_usd = models.BigIntegerField(default=0)
    cost_per_1k_micro_usd = models.BigIntegerField(null=True, blank=True)
    detail = models.TextField(blank=True)
    # The client's Idempotency-Key header when it started the run through the API: a retry with the
    # same key gets this run back instead of starting a second one.
    idempotency_key = models.CharField(max_length=IDEMPOTENCY_KEY_LENGTH, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["suite", "model_version", "-created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["requested_by", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="evaluation_run_idempotency_key_once_per_person",
            )
        ]

    def __str__(self) -> str:
        return f"run {self.pk}: {self.suite.slug} × {self.model_version.ref}"

    def get_absolute_url(self) -> str:
        return reverse("registry:run", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_RUN_STATUSES

    @property
    def percent(self) -> int:
        return int(self.done * 100 / self.total) if self.total else 0

    def eta_seconds(self, now=None) -> int | None:
        """Time left at the pace so far; None before the first answers or after the end."""
        if self.is_finished or not self.started_at or not self.done:
            return None
        elapsed = ((now or timezone.now()) - self.started_at).total_seconds()
        return int(elapsed / self.done * (self.total - self.done))


class CaseResult(models.Model):
    """The answer to one case in one run, and its score. Written once per (run, case)."""

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="results")
    case = models.ForeignKey(EvaluationCase, on_delete=models.CASCADE, related_name="results")
    output = models.TextField(blank=True)
    truncated = models.BooleanField(default=False)
    label = models.CharField(max_length=200, blank=True, help_text="What the scorer read as the answer's label.")
    score_bp = models.PositiveIntegerField(default=0)
    passed = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    detail = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_micro_usd = models.BigIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "case__position"]
        constraints = [models.UniqueConstraint(fields=["run", "case"], name="one_result_per_run_case")]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.case_id}: {self.score_bp} bp"
