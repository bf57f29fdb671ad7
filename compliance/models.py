"""Compliance: certifications with evidence, data classifications and the matrix.

The matrix says which model versions may process which data classifications. Eligibility is
computed, never stored: it follows from certifications valid at the time asked and from the
version's region, so a certification that expires makes cells ineligible by itself. Approval is
an officer's decision, recorded on the cell. ``compliance.matrix.check`` is the one function that
answers "may version V process classification C at time T?".
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone
from simple_history.models import HistoricalRecords

from audits import events as audit
from registry.models import ModelVersion, Provider, slug_validator, string_list_validator

REVIEW_CELLS = "compliance.review_matrixcell"
REQUEST_CELLS = "compliance.request_matrixcell"

ADD_HOLDINGS = "compliance.add_certificationholding"
# Holdings that end within this many days are "expiring": highlighted, alerted and renewable.
EXPIRY_WARNING_DAYS = 30
# What a renewal's audit event shows of the holding it renews and of the new one.
AUDITED_HOLDING_FIELDS = ["certification_id", "provider_id", "model_version_id", "effect", "valid_from", "valid_until"]

EVIDENCE_MAX_BYTES = 10 * 1024 * 1024
# Allowed evidence types by extension, with the bytes their content must start with.
EVIDENCE_TYPES: dict[str, bytes | None] = {
    ".pdf": b"%PDF",
    ".png": b"\x89PNG\r\n\x1a\n",
    ".jpg": b"\xff\xd8\xff",
    ".jpeg": b"\xff\xd8\xff",
    ".txt": None,
}

region_pattern_validator = RegexValidator(
    r"^[a-z0-9*?-]+$", "Use region codes such as eu-west-1 or patterns such as eu-*."
)


def validate_evidence_file(upload) -> None:
    """Evidence is a PDF, PNG, JPEG or UTF-8 text file of at most 10 MB, checked by content."""
    if not upload:
        return
    if upload.size > EVIDENCE_MAX_BYTES:
        raise ValidationError(f"Evidence files may be at most 10 MB; this one is {upload.size / 1_048_576:.1f} MB.")
    suffix = Path(upload.name).suffix.lower()
    if suffix not in EVIDENCE_TYPES:
        raise ValidationError("Evidence must be a PDF, PNG, JPEG or text file (.pdf, .png, .jpg, .jpeg, .txt).")
    upload.seek(0)
    head = upload.read(4096)
    upload.seek(0)
    magic = EVIDENCE_TYPES[suffix]
    if magic is not None and not head.startswith(magic):
        raise ValidationError(f"The file's content is not {suffix[1:].upper()}, whatever its name says.")
    if magic is None:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as error:
            # A multi-byte character cut at the end of the sample is not an error.
            if len(head) < 4096 or error.start < len(head) - 4:
                raise ValidationError("A .txt evidence file must be UTF-8 text.") from error


class Certification(models.Model):
    """A certification or legal agreement in the catalogue (SOC 2 Type II, HIPAA BAA …)."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=50, unique=True, validators=[slug_validator])
    description = models.TextField(blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class HoldingEffect(models.TextChoices):
    GRANTS = "grants", "Holds it"
    REVOKES = "revokes", "Does not hold it (override)"


class HoldingStanding(models.TextChoices):
    VALID = "valid", "Valid"
    EXPIRING = "expiring", f"Expiring within {EXPIRY_WARNING_DAYS} days"
    EXPIRED = "expired", "Expired"
    NOT_YET = "not-yet", "Not valid yet"


class CertificationHoldingQuerySet(models.QuerySet):
    def with_renewed(self) -> CertificationHoldingQuerySet:
        """Annotate ``renewed``: whether a later holding takes over (as ``CertificationHolding.renewals``)."""
        later = CertificationHolding.objects.filter(
            # A holding belongs to a provider or to a version: the other column is NULL, and never equal.
            models.Q(provider_id=models.OuterRef("provider_id"))
            | models.Q(model_version_id=models.OuterRef("model_version_id")),
            certification_id=models.OuterRef("certification_id"),
            effect=models.OuterRef("effect"),
            valid_until__gt=models.OuterRef("valid_until"),
        )
        return self.annotate(renewed=models.Exists(later))

    def in_standing(self, standing: str, day: dt.date) -> CertificationHoldingQuerySet:
        """Holdings whose ``standing_on(day)`` is ``standing``."""
        warning_end = day + dt.timedelta(days=EXPIRY_WARNING_DAYS)
        started = models.Q(valid_from__lte=day)
        return self.filter(
            {
                HoldingStanding.EXPIRED: models.Q(valid_until__lt=day),
                HoldingStanding.NOT_YET: models.Q(valid_from__gt=day),
                HoldingStanding.EXPIRING: started & models.Q(valid_until__gte=day, valid_until__lte=warning_end),
                HoldingStanding.VALID: started & models.Q(valid_until__gt=warning_end),
            }[standing]
        )


class CertificationHolding(models.Model):
    """A provider's holding of a certification, with evidence and validity dates.

    A holding on a model version overrides its provider's holdings of the same certification
    where the version's deployment differs: it can grant one the provider lacks (a dedicated,
    certified deployment) or revoke one the provider holds (a deployment outside its scope).
    """

    certification = models.ForeignKey(Certification, on_delete=models.PROTECT, related_name="holdings")
    provider = models.ForeignKey(
        Provider, on_delete=models.CASCADE, null=True, blank=True, related_name="certification_holdings"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, null=True, blank=True, related_name="certification_overrides"
    )
    effect = models.CharField(max_length=10, choices=HoldingEffect.choices, default=HoldingEffect.GRANTS)
    valid_from = models.DateField()
    valid_until = models.DateField()
    evidence_file = models.FileField(
        upload_to="evidence/%Y/%m/", blank=True, validators=[validate_evidence_file], max_length=300
    )
    evidence_url = models.URLField(blank=True, max_length=500)
    notes = models.TextField(blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(default=timezone.now)
    history = HistoricalRecords()

    objects = CertificationHoldingQuerySet.as_manager()

    class Meta:
        ordering = ["certification__name", "-valid_until"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(provider__isnull=False) & models.Q(model_version__isnull=True))
                | (models.Q(provider__isnull=True) & models.Q(model_version__isnull=False)),
                name="holding_for_provider_or_version",
            ),
            models.CheckConstraint(condition=models.Q(valid_until__gte=models.F("valid_from")), name="holding_dates"),
        ]

    def __str__(self) -> str:
        holder = self.provider or self.model_version
        return f"{holder}: {self.certification} ({self.valid_from} – {self.valid_until})"

    def clean(self) -> None:
        super().clean()
        errors: dict[str, list[str]] = {}
        if bool(self.provider_id) == bool(self.model_version_id):
            errors["provider"] = ["A holding belongs to a provider or, as an override, to one model version."]
        if self.provider_id and self.effect == HoldingEffect.REVOKES:
            errors["effect"] = ["Only a model version's override can say it does not hold a certification."]
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            errors["valid_until"] = [f"valid_until ({self.valid_until}) is before valid_from ({self.valid_from})."]
        if self.effect == HoldingEffect.GRANTS and not self.evidence_file and not self.evidence_url:
            errors["evidence_url"] = ["Evidence is required: upload a file or give a URL."]
        if errors:
            raise ValidationError(errors)

    @property
    def holder(self) -> Provider | ModelVersion:
        return self.provider or self.model_version

    def is_valid_on(self, day: dt.date) -> bool:
        return self.valid_from <= day <= self.valid_until

    def standing_on(self, day: dt.date) -> str:
        """``expired``, ``not-yet`` (valid later), ``expiring`` (within the warning days) or ``valid``."""
        if self.valid_until < day:
            return HoldingStanding.EXPIRED
        if self.valid_from > day:
            return HoldingStanding.NOT_YET
        if (self.valid_until - day).days <= EXPIRY_WARNING_DAYS:
            return HoldingStanding.EXPIRING
        return HoldingStanding.VALID

    def renew(self, by, **fields) -> CertificationHolding:
        """Record ``by``'s (an officer's) renewal: a new holding of the same certification by the same
        holder, with its own evidence and dates, checked like any holding. This one stays as history;
        the compliance sweep sees the later holding take over and resolves this one's alert.

        Only an expired or expiring holding that nothing has renewed yet can be renewed, and the
        renewal must run past this holding's end (or it would not take over).
        """
        if not by.has_perm(ADD_HOLDINGS):
            raise PermissionDenied("Only governance officers can renew certification holdings.")
        renewal = CertificationHolding(
            certification_id=self.certification_id,
            provider_id=self.provider_id,
            model_version_id=self.model_version_id,
            effect=self.effect,
            recorded_by=by,
            **fields,
        )
        with transaction.atomic():
            current = CertificationHolding.objects.select_for_update().get(pk=self.pk)
            current.check_renewable(timezone.localdate())
            renewal.full_clean()
            if renewal.valid_until <= current.valid_until:
                raise ValidationError(
                    {
                        "valid_until": [
                            f"A renewal must be valid after {current.valid_until.isoformat()}, when the holding "
                            f"it renews ends; {renewal.valid_until.isoformat()} is not."
                        ]
                    }
                )
            renewal._history_user = by
            renewal.save()
            audit.record(
                "certificationholding.renew",
                actor=by,
                obj=renewal,
                before=audit.snapshot(current, ["pk", *AUDITED_HOLDING_FIELDS]),
                after=audit.snapshot(renewal, ["pk", *AUDITED_HOLDING_FIELDS]),
                comment=renewal.notes,
            )
        return renewal

    def check_renewable(self, day: dt.date) -> None:
        """Raise ValidationError unless this holding is expired or expiring on ``day`` and not yet renewed."""
        standing = self.standing_on(day)
        if standing not in (HoldingStanding.EXPIRED, HoldingStanding.EXPIRING):
            raise ValidationError(
                {
                    "holding": [
                        f"{self} is {HoldingStanding(standing).label.lower()}: only a holding that has expired "
                        f"or expires within {EXPIRY_WARNING_DAYS} days can be renewed."
                    ]
                }
            )
        if self.renewals().exists():
            raise ValidationError({"holding": [f"{self} has already been renewed."]})

    def renewals(self) -> models.QuerySet[CertificationHolding]:
        """Later holdings of the same certification by the same holder, with the same effect: they take over."""
        return CertificationHolding.objects.filter(
            certification_id=self.certification_id,
            provider_id=self.provider_id,
            model_version_id=self.model_version_id,
            effect=self.effect,
            valid_until__gt=self.valid_until,
        )


class StorageRule(models.TextChoices):
    CONTENT = "content", "Keep content"
    DIGEST = "digest", "Keep only a SHA-256 digest"


class DataClassification(models.Model):
    """A kind of data a request may carry (public, internal, pii, phi, pci …) and what it requires."""

    slug = models.SlugField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100)
    level = models.PositiveSmallIntegerField(
        default=0, validators=[MinValueValidator(0)], help_text="Higher is more sensitive."
    )
    description = models.TextField(blank=True)
    required_certifications = models.ManyToManyField(Certification, blank=True, related_name="classifications")
    allowed_regions = models.JSONField(
        default=list,
        blank=True,
        validators=[string_list_validator],
        help_text="Region codes or patterns (eu-*); empty means any region.",
    )
    storage = models.CharField(max_length=10, choices=StorageRule.choices, default=StorageRule.CONTENT)
    required_evaluation_categories = models.JSONField(
        default=list,
        blank=True,
        validators=[string_list_validator],
        help_text="Evaluation categories (accuracy, bias, safety, compliance) a version must pass to be approved "
        "for this classification.",
    )
    retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Days decision records keep their content; empty keeps it."
    )
    history = HistoricalRecords(m2m_fields=[required_certifications])

    class Meta:
        ordering = ["level", "slug"]

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        super().clean()
        if isinstance(self.allowed_regions, list):
            bad = [str(r) for r in self.allowed_regions if not isinstance(r, str) or not _is_region_pattern(r)]
            if bad:
                raise ValidationError({"allowed_regions": [f"Not a region code or pattern: {', '.join(bad)}."]})

    def allows_region(self, region: str) -> bool:
        return not self.allowed_regions or any(fnmatch.fnmatchcase(region, p) for p in self.allowed_regions)


def _is_region_pattern(pattern: str) -> bool:
    try:
        region_pattern_validator(pattern)
    except ValidationError:
        return False
    return True


AUDITED_CELL_FIELDS = [
    "decision",
    "requested_by_id",
    "decided_by_id",
    "justification",
    "expires_at",
    "suspended_at",
    "suspension_reason",
]


class CellDecision(models.TextChoices):
    REQUESTED = "requested", "Requested"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"


class MatrixCellQuerySet(models.QuerySet):
    def awaiting_review_by(self, user) -> MatrixCellQuerySet:
        """Requested cells that ``user`` (an officer) may decide: every request but their own; oldest first."""
        if not user.has_perm(REVIEW_CELLS):
            return self.none()
        return (
            self.filter(decision=CellDecision.REQUESTED)
            .exclude(requested_by=user)
            .select_related("model_version", "classification", "requested_by")
            .order_by("requested_at", "pk")
        )


class MatrixCell(models.Model):
    """An officer's decision on one model version x data classification.

    Whether the cell may be *used* also depends on things that change by themselves (the
    version's status, certifications' validity, the clock): ``compliance.matrix.check`` decides.
    """

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="matrix_cells")
    classification = models.ForeignKey(DataClassification, on_delete=models.CASCADE, related_name="cells")
    decision = models.CharField(max_length=10, choices=CellDecision.choices, default=CellDecision.REQUESTED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    requested_at = models.DateTimeField(null=True, blank=True)
    request_note = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    justification = models.TextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    suspended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    suspension_reason = models.TextField(blank=True)
    history = HistoricalRecords()

    objects = MatrixCellQuerySet.as_manager()

    class Meta:
        ordering = ["model_version__ref", "classification__level"]
        constraints = [
            models.UniqueConstraint(fields=["model_version", "classification"], name="one_cell_per_pair"),
        ]
        permissions = [
            ("review_matrixcell", "Can approve, deny, suspend and resume matrix cells"),
            ("request_matrixcell", "Can request a matrix cell"),
        ]

    def __str__(self) -> str:
        return f"{self.model_version.ref} x {self.classification.slug}"

    def get_absolute_url(self) -> str:
        return reverse("compliance:cell", args=[self.model_version_id, self.classification.slug])

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None

    def is_expired_at(self, at: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= at

    # --- actions: views, API, commands and tasks all go through these --------------------------

    @classmethod
    def for_pair(cls, version: ModelVersion, classification: DataClassification) -> MatrixCell:
        """The cell for this pair, unsaved when nobody has asked or decided yet."""
        cell = cls.objects.filter(model_version=version, classification=classification).first()
        return cell or cls(model_version=version, classification=classification, decision="")

    def request(self, by, note: str = "") -> None:
        """An engineer asks for this version to be allowed to process this classification."""
        if not by.has_perm(REQUEST_CELLS):
            raise PermissionDenied("Only engineers can request matrix cells.")
        if self.decision == CellDecision.APPROVED:
            raise ValidationError({"decision": [f"{self} is already approved."]})
        if self.decision == CellDecision.REQUESTED and self.pk:
            raise ValidationError({"decision": [f"{self} is already requested and awaits an officer."]})
        self._record(
            by,
            f"request: {note.strip()}".rstrip(": "),
            decision=CellDecision.REQUESTED,
            requested_by=by,
            requested_at=timezone.now(),
            request_note=note.strip(),
            decided_by=None,
            decided_at=None,
            justification="",
            expires_at=None,
        )

    def approve(self, by, justification: str, expires_at: dt.datetime | None = None) -> None:
        """Approve this cell. Refused, with the reasons, when the cell is not eligible now."""
        from .matrix import eligibility_reasons

        now = timezone.now()
        self._check_officer(by, justification, "approve")
        if self.requested_by_id is not None and self.requested_by_id == by.pk:
            raise PermissionDenied(f"{by.get_username()} requested {self} and cannot approve it; another officer must.")
        if expires_at is not None and expires_at <= now:
            raise ValidationError({"expires_at": [f"The expiry {expires_at:%Y-%m-%d %H:%M} UTC is in the past."]})
        reasons = eligibility_reasons(self.model_version, self.classification, now)
        if reasons:
            raise ValidationError({"eligibility": [f"{self} is not eligible: {'; '.join(reasons)}."]})
        from registry.evaluation.gates import gate_failures

        failing = gate_failures(self.model_version, self.classification.required_evaluation_categories)
        if failing:
            raise ValidationError(
                {"gates": [f"{self.classification.slug} requires passing evaluations: {'; '.join(failing)}."]}
            )
        self._record(
            by,
            f"approve: {justification.strip()}",
            decision=CellDecision.APPROVED,
            decided_by=by,
            decided_at=now,
            justification=justification.strip(),
            expires_at=expires_at,
        )

    def deny(self, by, justification: str) -> None:
        self._check_officer(by, justification, "deny")
        if self.decision == CellDecision.DENIED:
            raise ValidationError({"decision": [f"{self} is already denied."]})
        self._record(
            by,
            f"deny: {justification.strip()}",
            decision=CellDecision.DENIED,
            decided_by=by,
            decided_at=timezone.now(),
            justification=justification.strip(),
            expires_at=None,
        )

    def suspend(self, by, reason: str) -> None:
        self._check_officer(by, reason, "suspend")
        if not self.pk or self.decision != CellDecision.APPROVED:
            raise ValidationError({"decision": [f"Only an approved cell can be suspended; {self} is not approved."]})
        if self.is_suspended:
            raise ValidationError({"decision": [f"{self} is already suspended."]})
        self._record(
            by,
            f"suspend: {reason.strip()}",
            suspended_at=timezone.now(),
            suspended_by=by,
            suspension_reason=reason.strip(),
        )

    def suspend_by_system(self, reason: str) -> None:
        """Suspension by Steward itself (a failing scheduled evaluation), recorded without a person."""
        if self.is_suspended:
            return
        self._record(
            None, f"suspend: {reason}", suspended_at=timezone.now(), suspended_by=None, suspension_reason=reason
        )

    def resume(self, by, reason: str) -> None:
        self._check_officer(by, reason, "resume")
        if not self.is_suspended:
            raise ValidationError({"decision": [f"{self} is not suspended."]})
        self._record(by, f"resume: {reason.strip()}", suspended_at=None, suspended_by=None, suspension_reason="")

    def _check_officer(self, by, text: str, action: str) -> None:
        if not by.has_perm(REVIEW_CELLS):
            raise PermissionDenied("Only governance officers can approve, deny, suspend or resume matrix cells.")
        if not (text or "").strip():
            field = "reason" if action in ("suspend", "resume") else "justification"
            raise ValidationError({field: [f"A {field} is required to {action} a cell."]})

    def _record(self, by, reason: str, **changes) -> None:
        """Apply ``changes`` under a row lock, with who and why in the cell's history and the audit trail."""
        action, _, comment = reason.partition(": ")
        with transaction.atomic():
            if self.pk:
                MatrixCell.objects.select_for_update().filter(pk=self.pk).first()
            before = audit.snapshot(self, AUDITED_CELL_FIELDS) if self.pk else None
            for field, value in changes.items():
                setattr(self, field, value)
            self._history_user = by
            self._change_reason = reason
            self.save()
            audit.record(
                f"matrix_cell.{action}",
                actor=by,
                obj=self,
                before=before,
                after=audit.snapshot(self, AUDITED_CELL_FIELDS),
                comment=comment,
            )


class AlertKind(models.TextChoices):
    CERTIFICATION_EXPIRING = "certification-expiring", "Certification expiring"
    CERTIFICATION_EXPIRED = "certification-expired", "Certification expired"
    CELL_UNUSABLE = "cell-unusable", "Approved cell became unusable"
    EVALUATION_FAILED = "evaluation-failed", "Scheduled evaluation failed"


class ComplianceAlert(models.Model):
    """Something an officer should look at, recorded by the daily compliance sweep.

    An alert stays open while its condition holds and is resolved by the sweep when it no
    longer does (a renewed certification, a re-approved cell).
    """

    kind = models.CharField(max_length=30, choices=AlertKind.choices)
    message = models.TextField()
    holding = models.ForeignKey(CertificationHolding, on_delete=models.CASCADE, null=True, blank=True)
    cell = models.ForeignKey(MatrixCell, on_delete=models.CASCADE, null=True, blank=True)
    detected_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-detected_at"]
        indexes = [models.Index(fields=["resolved_at", "kind"])]

    def __str__(self) -> str:
        return self.message

    def get_absolute_url(self) -> str | None:
        """Where an officer acts on the alert: the cell's page, or the holding's row among the
        certifications (renewing resolves it); None for an alert about neither."""
        if self.cell_id:
            return self.cell.get_absolute_url()
        if self.holding_id:
            return f"{reverse('compliance:certifications')}#holding-{self.holding_id}"
        return None
