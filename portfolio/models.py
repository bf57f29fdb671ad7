"""Portfolio: cost tiers, tasks, policy sets, immutable policy versions and their change requests.

Routing policies are versioned configuration: engineers write a change request (YAML, in
revisions), officers review it, and publishing turns it into the next, immutable policy version
of its set. The rules of review live on ``ChangeRequest``; publishing is
``portfolio.publishing.publish``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from simple_history.models import HistoricalRecords

from audits import events as audit
from compliance.models import DataClassification
from registry.models import signable_amount, slug_validator

from .policy import Policy, Route

PROPOSE_CHANGES = "portfolio.add_changerequest"
REVIEW_CHANGES = "portfolio.review_changerequest"
PUBLISH_CHANGES = "portfolio.publish_changerequest"


class CostTier(models.Model):
    """A cost tier (small, medium, large …): its rank and the most a model in it may cost.

    The ceiling applies to a version's input price per million tokens, the figure that decides
    most of a request's cost; escalation must go to a tier of higher rank.
    """

    slug = models.CharField(max_length=30, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=60)
    rank = models.PositiveSmallIntegerField(unique=True, help_text="Higher ranks are larger, costlier tiers.")
    price_ceiling_micro_usd = models.BigIntegerField(
        "price ceiling (micro-USD per million input tokens)",
        validators=[MinValueValidator(0, "The price ceiling cannot be negative."), signable_amount],
    )
    description = models.TextField(blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["rank"]

    def __str__(self) -> str:
        return self.slug

    @classmethod
    def slugs_by_rank(cls) -> list[str]:
        """The tiers' slugs, smallest first: what a model version's cost tier may be (the registry asks)."""
        return list(cls.objects.order_by("rank").values_list("slug", flat=True))


class Task(models.Model):
    """A kind of work the organisation routes (ticket-triage, contract-review …)."""

    slug = models.CharField(max_length=60, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    default_classification = models.ForeignKey(DataClassification, on_delete=models.PROTECT, related_name="tasks")
    tier = models.ForeignKey(CostTier, on_delete=models.PROTECT, related_name="tasks")
    typical_input_tokens = models.PositiveIntegerField(
        default=1000, help_text="For cost estimates: tokens in a typical request."
    )
    typical_output_tokens = models.PositiveIntegerField(
        default=250, help_text="For cost estimates: tokens in a typical answer."
    )
    suites = models.ManyToManyField(
        "registry.EvaluationSuite",
        blank=True,
        related_name="tasks",
        help_text="The evaluation suites that guard this task (recommendations compare versions on them).",
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class PolicySet(models.Model):
    """A stream of routing policies for one environment (production, staging …)."""

    slug = models.CharField(max_length=40, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    required_approvals = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text="Distinct officers who must approve a change request.",
    )
    require_provider_diversity = models.BooleanField(
        default=False, help_text="Every route's fallbacks must include a model from another provider."
    )
    auto_publish = models.BooleanField(default=False, help_text="Publish as soon as the last approval arrives.")
    suspend_cells_on_failed_evaluation = models.BooleanField(
        default=False,
        help_text="When a scheduled evaluation of a model this set routes to fails, suspend its matrix cells.",
    )
    policy_lifetime_days = models.PositiveSmallIntegerField(
        default=7,
        validators=[MinValueValidator(1), MaxValueValidator(365)],
        help_text="How long a signed policy stays valid.",
    )
    # Thresholds of the change-impact preview: a change that crosses one needs each approver's acknowledgement.
    threshold_cost_increase_percent = models.PositiveSmallIntegerField(
        "cost increase threshold (%)",
        null=True,
        blank=True,
        validators=[MaxValueValidator(10000)],
        help_text="A change that raises the cost a day by more than this percentage needs an acknowledgement.",
    )
    threshold_quality_drop_bp = models.PositiveSmallIntegerField(
        "quality drop threshold (basis points)",
        null=True,
        blank=True,
        validators=[MaxValueValidator(10000)],
        help_text="A change whose new model scores lower than the old on a guarding suite by more than this "
        "(200 = 2 points) needs an acknowledgement.",
    )
    threshold_provider_share_percent = models.PositiveSmallIntegerField(
        "provider share threshold (%)",
        null=True,
        blank=True,
        validators=[MaxValueValidator(100)],
        help_text="A change after which one provider carries more than this share of the traffic needs an "
        "acknowledgement.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    history = HistoricalRecords()

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def get_absolute_url(self) -> str:
        return reverse("portfolio:policy-set", args=[self.slug])

    @property
    def has_thresholds(self) -> bool:
        return any(
            value is not None
            for value in (
                self.threshold_cost_increase_percent,
                self.threshold_quality_drop_bp,
                self.threshold_provider_share_percent,
            )
        )

    def current_version(self) -> PolicyVersion | None:
        return self.versions.order_by("-number").first()


class PolicyVersion(models.Model):
    """One published, immutable version of a policy set's routing policy.

    ``document`` is the YAML as approved; ``spec`` its normalised form (what exports and the
    signed payload are built from). Version numbers only grow.
    """

    policy_set = models.ForeignKey(PolicySet, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    document = models.TextField()
    spec = models.JSONField()
    change_request = models.OneToOneField(
        "ChangeRequest", on_delete=models.PROTECT, null=True, blank=True, related_name="published_version"
    )
    provenance = models.CharField(max_length=30, default="change-request", help_text="change-request or re-signed")
    source_version = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="For a re-signed version: the version whose routes it repeats.",
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True)
    approvers = models.JSONField(default=list, help_text="Usernames of the officers who approved it.")
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True)
    published_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["policy_set", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["policy_set", "number"], name="one_number_per_set"),
        ]

    def __str__(self) -> str:
        return f"{self.policy_set.slug} v{self.number}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValidationError("Policy versions are immutable; publish a new version instead.")
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("portfolio:policy-version", args=[self.policy_set.slug, self.number])

    def delete(self, *args, **kwargs):
        raise ValidationError("Policy versions are immutable and cannot be deleted.")

    @property
    def content_origin_id(self) -> int:
        """The version whose routes this one carries: itself, or for a re-signed version its source."""
        return self.source_version_id or self.pk

    @cached_property
    def policy(self) -> Policy:
        """The routes of this version as a ``Policy``."""
        return Policy.from_spec(self.spec)

    def route_for(self, task: str, classification: str) -> Route | None:
        """The route for (task, classification), or None: the policy's default (deny) applies."""
        return self.policy.route_for(task, classification)


class ChangeStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    IN_REVIEW = "in_review", "In review"
    APPROVED = "approved", "Approved, ready to publish"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn"
    PUBLISHED = "published", "Published"


OPEN_STATUSES = (ChangeStatus.DRAFT, ChangeStatus.IN_REVIEW, ChangeStatus.APPROVED)


class ReviewDecision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    COMMENT = "comment", "Comment"


class ChangeRequestQuerySet(models.QuerySet):
    def awaiting_review_by(self, user) -> ChangeRequestQuerySet:
        """In review, not written by ``user`` (an officer) and not approved by them in the latest
        revision (a new revision dismisses approvals, so those come back); oldest first."""
        if not user.has_perm(REVIEW_CHANGES):
            return self.none()
        approved = Review.objects.filter(
            change_request=models.OuterRef("pk"),
            reviewer=user,
            decision=ReviewDecision.APPROVE,
            dismissed_at__isnull=True,
        )
        return (
            self.filter(status=ChangeStatus.IN_REVIEW)
            .exclude(author=user)
            .filter(~models.Exists(approved))
            .select_related("policy_set", "author")
            .order_by("updated_at")
        )


class ChangeRequest(models.Model):
    """A proposed change to a policy set, written as YAML in revisions and reviewed by officers.

    The author never approves; the set's number of distinct approvals on the latest revision is
    needed; a new revision dismisses earlier approvals; any rejection is final.
    """

    policy_set = models.ForeignKey(PolicySet, on_delete=models.PROTECT, related_name="change_requests")
    title = models.CharField(max_length=200)
    rationale = models.TextField(blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="change_requests")
    base_version = models.ForeignKey(
        PolicyVersion,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The version this change starts from; publishing refuses it when no longer current.",
    )
    status = models.CharField(max_length=20, choices=ChangeStatus.choices, default=ChangeStatus.DRAFT)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    history = HistoricalRecords()

    objects = ChangeRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("review_changerequest", "Can approve or reject routing change requests"),
            ("publish_changerequest", "Can publish approved routing change requests"),
        ]

    def __str__(self) -> str:
        return f"CR-{self.pk}: {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("portfolio:change-request", args=[self.pk])

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def latest_revision(self) -> Revision | None:
        return self.revisions.order_by("-number").first()

    def active_approvals(self) -> models.QuerySet[Review]:
        return self.reviews.filter(decision=ReviewDecision.APPROVE, dismissed_at__isnull=True)

    def approver_names(self) -> list[str]:
        return sorted({review.reviewer.get_username() for review in self.active_approvals().select_related("reviewer")})

    # --- the author's actions ------------------------------------------------------------------

    def _check_author(self, by, action: str) -> None:
        if by.pk != self.author_id:
            raise PermissionDenied(f"Only the author of {self} can {action} it.")
        if not self.is_open:
            done = {"revise": "revised", "submit": "submitted", "withdraw": "withdrawn"}.get(action, f"{action}d")
            raise ValidationError({"status": [f"{self} is {self.get_status_display().lower()}; it cannot be {done}."]})

    def add_revision(self, by, document: str, base_version: PolicyVersion | None = None) -> Revision:
        """A new revision of the YAML. Earlier approvals are dismissed: they approved other text."""
        from .validation import validate_document

        self._check_author(by, "revise")
        with transaction.atomic():
            locked = ChangeRequest.objects.select_for_update().get(pk=self.pk)
            if not locked.is_open:
                raise ValidationError({"status": [f"{self} is {locked.get_status_display().lower()}."]})
            number = (locked.revisions.aggregate(n=models.Max("number"))["n"] or 0) + 1
            result = validate_document(document, self.policy_set)
            revision = Revision.objects.create(
                change_request=self,
                number=number,
                document=document,
                created_by=by,
                errors=[error.as_dict() for error in result.errors],
            )
            now = timezone.now()
            dismissed = self.active_approvals().update(dismissed_at=now)
            if base_version is not None:
                self.base_version = base_version
            if self.status == ChangeStatus.APPROVED:
                self.status = ChangeStatus.IN_REVIEW
            self.updated_at = now
            self._history_user = by
            self._change_reason = f"revision {number}" + (f" (dismissed {dismissed} approvals)" if dismissed else "")
            self.save()
            audit.record(
                "change_request.revise",
                actor=by,
                obj=self,
                after={
                    "revision": number,
                    "errors": len(revision.errors),
                    "dismissed_approvals": dismissed,
                    "base_version": self.base_version.number if self.base_version else None,
                },
            )
        return revision

    def submit(self, by) -> None:
        """Ask officers to review. Refused while the latest revision has validation errors."""
        self._check_author(by, "submit")
        if self.status != ChangeStatus.DRAFT:
            raise ValidationError({"status": [f"{self} is already {self.get_status_display().lower()}."]})
        revision = self.latest_revision()
        if revision is None:
            raise ValidationError({"policy": ["Add the policy YAML before submitting."]})
        if revision.errors:
            raise ValidationError(
                {
                    "policy": [
                        f"Revision {revision.number} has {len(revision.errors)} validation "
                        "error(s); fix them before submitting."
                    ]
                }
            )
        self._set_status(ChangeStatus.IN_REVIEW, by, "submitted for review")

    def withdraw(self, by, comment: str = "") -> None:
        self._check_author(by, "withdraw")
        self._set_status(ChangeStatus.WITHDRAWN, by, f"withdrawn: {comment}".rstrip(": "))

    def _set_status(self, status: str, by, reason: str) -> None:
        before = self.status
        self.status = status
        self.updated_at = timezone.now()
        self._history_user = by
        self._change_reason = reason
        with transaction.atomic():
            self.save()
            audit.record(
                f"change_request.{status}",
                actor=by,
                obj=self,
                before={"status": before},
                after={"status": status},
                comment=reason,
            )

    # --- reviews -------------------------------------------------------------------------------

    def review(self, by, decision: str, comment: str = "", acknowledged: tuple[str, ...] = ()) -> Review:
        """Record ``by``'s review of the latest revision; may move the request to approved or rejected.

        An approval of a revision whose impact crosses a threshold of the set needs ``acknowledged``
        to name each crossing (its code); the review and the audit trail record what was acknowledged.
        """
        comment = (comment or "").strip()
        if decision not in ReviewDecision.values:
            raise ValidationError({"decision": [f"Must be one of {', '.join(ReviewDecision.values)}."]})
        if decision in (ReviewDecision.APPROVE, ReviewDecision.REJECT):
            if not by.has_perm(REVIEW_CHANGES):
                raise PermissionDenied("Only governance officers can approve or reject change requests.")
            if by.pk == self.author_id:
                raise PermissionDenied(f"{by.get_username()} wrote {self} and cannot {decision} it.")
        elif not (by.has_perm(REVIEW_CHANGES) or by.has_perm(PROPOSE_CHANGES)):
            raise PermissionDenied("Auditors read change requests; they do not comment on them.")
        if decision == ReviewDecision.REJECT and not comment:
            raise ValidationError({"comment": ["A rejection needs a comment saying why."]})
        if decision == ReviewDecision.COMMENT and not comment:
            raise ValidationError({"comment": ["A comment cannot be empty."]})
        with transaction.atomic():
            locked = ChangeRequest.objects.select_for_update().get(pk=self.pk)
            if decision != ReviewDecision.COMMENT and locked.status not in (
                ChangeStatus.IN_REVIEW,
                ChangeStatus.APPROVED,
            ):
                raise ValidationError(
                    {
                        "status": [
                            f"{self} is {locked.get_status_display().lower()}; only requests in review "
                            "can be approved or rejected."
                        ]
                    }
                )
            if decision == ReviewDecision.COMMENT and not locked.is_open:
                raise ValidationError({"status": [f"{self} is {locked.get_status_display().lower()}."]})
            revision = locked.latest_revision()
            if decision == ReviewDecision.APPROVE and revision is not None and revision.errors:
                raise ValidationError(
                    {
                        "policy": [
                            f"Revision {revision.number} has {len(revision.errors)} validation error(s); "
                            "it cannot be approved until the author fixes them."
                        ]
                    }
                )
            if decision == ReviewDecision.APPROVE and self.active_approvals().filter(reviewer=by).exists():
                raise ValidationError({"decision": [f"{by.get_username()} has already approved this revision."]})
            acknowledgements = []
            if decision == ReviewDecision.APPROVE and revision is not None and self.policy_set.has_thresholds:
                from .impact import revision_crossings

                crossed = revision_crossings(revision)
                missing = [crossing.text for crossing in crossed if crossing.code not in set(acknowledged)]
                if missing:
                    raise ValidationError(
                        {"acknowledge": [f"Acknowledge before approving: {text}." for text in missing]}
                    )
                acknowledgements = [crossing.text for crossing in crossed]
            review = Review.objects.create(
                change_request=self,
                revision=revision,
                reviewer=by,
                decision=decision,
                comment=comment,
                acknowledged=acknowledgements,
            )
            after = {"revision": revision.number if revision else None, "decision": decision}
            if acknowledgements:
                after["acknowledged"] = acknowledgements
            audit.record(f"change_request.review.{decision}", actor=by, obj=self, after=after, comment=comment)
            if decision == ReviewDecision.REJECT:
                locked._set_status(ChangeStatus.REJECTED, by, f"rejected by {by.get_username()}: {comment}")
            elif decision == ReviewDecision.APPROVE:
                if self.active_approvals().count() >= self.policy_set.required_approvals:
                    locked._set_status(ChangeStatus.APPROVED, by, f"approved by {', '.join(self.approver_names())}")
            self.refresh_from_db()
        if decision == ReviewDecision.APPROVE and self.status == ChangeStatus.APPROVED and self.policy_set.auto_publish:
            from .publishing import publish

            try:
                publish(self, by)
            except (ValidationError, PermissionDenied):
                # The approval stands; the request stays approved for a publish by hand (which says why
                # it cannot go out, e.g. a base that is no longer current).
                self.refresh_from_db()
        return review


class Revision(models.Model):
    """One version of a change request's YAML, with the validation errors found when it was written."""

    change_request = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    document = models.TextField()
    errors = models.JSONField(default=list)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    impact = models.JSONField(
        null=True,
        blank=True,
        editable=False,
        help_text="Its change-impact preview, worked out once (portfolio.impact).",
    )

    class Meta:
        ordering = ["change_request", "number"]
        constraints = [
            models.UniqueConstraint(fields=["change_request", "number"], name="one_revision_number_per_request"),
        ]

    def __str__(self) -> str:
        return f"{self.change_request} r{self.number}"


class Review(models.Model):
    """An approval, rejection or comment on a change request's revision."""

    change_request = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="reviews")
    revision = models.ForeignKey(Revision, on_delete=models.CASCADE, related_name="reviews", null=True)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=10, choices=ReviewDecision.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    dismissed_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when a later revision dismissed this approval."
    )
    acknowledged = models.JSONField(
        default=list, blank=True, help_text="The impact thresholds the reviewer acknowledged crossing, in words."
    )

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.reviewer} {self.decision} {self.change_request}"


class ImpactOutcome(models.Model):
    """What a published change really did: the figures of the days after publishing, from rollups,
    kept beside the preview (``Revision.impact``) so that officers learn how far to trust one."""

    change_request = models.OneToOneField(ChangeRequest, on_delete=models.CASCADE, related_name="impact_outcome")
    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="+")
    since = models.DateTimeField()
    until = models.DateTimeField()
    figures = models.JSONField()
    recorded_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.change_request} outcome"


# --- the signed policy feed ---------------------------------------------------------------------


class KeyRole(models.TextChoices):
    ROOT = "root", "Root (signs trust roots)"
    POLICY = "policy", "Policy (signs policy releases)"


class KeyStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    RETIRING = "retiring", "Retiring (still signs during a rotation)"
    RETIRED = "retired", "Retired"


class SigningKey(models.Model):
    """An Ed25519 signing key. The private half is stored only encrypted with the key-encryption key."""

    role = models.CharField(max_length=10, choices=KeyRole.choices)
    keyid = models.CharField(max_length=64, unique=True, help_text="Hex SHA-256 of the raw public key.")
    public_key = models.CharField(max_length=64, help_text="The raw 32-byte public key, hex.")
    private_key_encrypted = models.BinaryField()
    status = models.CharField(max_length=10, choices=KeyStatus.choices, default=KeyStatus.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["role", "created_at"]

    def __str__(self) -> str:
        return f"{self.role} key {self.keyid[:12]}… ({self.status})"


class TrustRoot(models.Model):
    """One version of the trust root (TUF-style): which keys may sign roots and policies.

    Every version stays published; ``document`` holds the exact bytes served.
    """

    version = models.PositiveIntegerField(unique=True)
    document = models.BinaryField()
    expires = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"trust root v{self.version}"

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the served bytes: what a router author compares with the root they ship."""
        return hashlib.sha256(bytes(self.document)).hexdigest()

    @property
    def role_keyids(self) -> dict[str, list[str]]:
        """Role name → the key ids this root lists for it."""
        roles = json.loads(bytes(self.document))["signed"]["roles"]
        return {name: list(role["keyids"]) for name, role in sorted(roles.items())}


class PolicyRelease(models.Model):
    """The signed form of a policy version: the exact payload and envelope bytes routers receive."""

    policy_version = models.OneToOneField(PolicyVersion, on_delete=models.PROTECT, related_name="release")
    payload = models.BinaryField()
    envelope = models.BinaryField()
    sha256 = models.CharField(max_length=64, help_text="Hex SHA-256 of the envelope: the bundle's ETag.")
    issued_at = models.DateTimeField()
    expires = models.DateTimeField()
    trust_version = models.PositiveIntegerField()
    keyids = models.JSONField(default=list)

    class Meta:
        ordering = ["-issued_at"]

    def __str__(self) -> str:
        return f"{self.policy_version} release ({self.sha256[:12]}…)"

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'


class Router(models.Model):
    """A router (gateway) that pulls one policy set's bundle with its token and reports back."""

    name = models.CharField(max_length=100, unique=True, validators=[slug_validator])
    policy_set = models.ForeignKey(PolicySet, on_delete=models.PROTECT, related_name="routers")
    token_hash = models.CharField(max_length=64, unique=True)
    token_prefix = models.CharField(max_length=16)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)
    token_expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: the token does not expire.")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(max_length=4, blank=True, help_text="ack or nack")
    last_status_at = models.DateTimeField(null=True, blank=True)
    applied_version = models.PositiveIntegerField(null=True, blank=True)
    trust_version = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_nack_at = models.DateTimeField(null=True, blank=True)
    # What the router's decision spool holds, as its last status report said: records it could not deliver yet.
    spool_records = models.PositiveIntegerField(default=0)
    spool_bytes = models.PositiveBigIntegerField(default=0)
    spool_oldest_at = models.DateTimeField(null=True, blank=True)
    spool_dropped = models.PositiveIntegerField(default=0, help_text="Records dropped because the spool was full.")
    history = HistoricalRecords(excluded_fields=["last_seen_at"])

    class Meta:
        ordering = ["policy_set", "name"]
        permissions = [("manage_router", "Can register routers and revoke their tokens")]

    def __str__(self) -> str:
        return self.name

    @property
    def token_expired(self) -> bool:
        return self.token_expires_at is not None and self.token_expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.token_expired

    def record_spool(self, report: dict, now: dt.datetime) -> None:
        """Keep the spool figures of a status report (reports without them leave the last ones)."""
        if report.get("spool_records") is None:
            return
        self.spool_records = report["spool_records"]
        self.spool_bytes = report.get("spool_bytes") or 0
        self.spool_dropped = report.get("spool_dropped") or 0
        age = report.get("spool_age_seconds") or 0
        self.spool_oldest_at = now - dt.timedelta(seconds=age) if self.spool_records else None


class RouterReport(models.Model):
    """One ACK or NACK a router sent: what it applied, or why it refused a bundle."""

    router = models.ForeignKey(Router, on_delete=models.CASCADE, related_name="reports")
    status = models.CharField(max_length=4)
    version = models.PositiveIntegerField(null=True, blank=True)
    trust_version = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.router} {self.status} v{self.version}"
