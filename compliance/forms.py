"""Forms for the compliance pages: matrix cell actions, certifications, holdings, classifications."""

from __future__ import annotations

from django import forms

from registry.models import ModelVersion, Provider
from steward.forms import formfield_https_urls

from .models import Certification, CertificationHolding, DataClassification, HoldingStanding


def _text(label: str, required_message: str | None, placeholder: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=required_message is not None,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": placeholder}),
        error_messages={"required": required_message} if required_message else None,
    )


class CellRequestForm(forms.Form):
    """An engineer asks for a model version to be allowed to process a classification."""

    note = _text("Note", None, "What is it needed for? (optional)")


class CellApproveForm(forms.Form):
    justification = _text("Justification", "A justification is required to approve a cell.", "Why? (required)")
    expires_at = forms.DateTimeField(
        label="Expires at (UTC, optional)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        error_messages={"invalid": "Enter the expiry as a date and time, e.g. 2027-06-30 17:00."},
    )


class CellDenyForm(forms.Form):
    justification = _text("Justification", "A justification is required to deny a cell.", "Why? (required)")


class CellSuspendForm(forms.Form):
    reason = _text("Reason", "A reason is required to suspend a cell.", "Why? (required)")
    # Sent by the confirmation step, once the officer has seen which published routes use the cell.
    confirm = forms.BooleanField(required=False, widget=forms.HiddenInput)


class CellResumeForm(forms.Form):
    reason = _text("Reason", "A reason is required to resume a cell.", "Why? (required)")


CELL_FORMS: dict[str, type[forms.Form]] = {
    "request": CellRequestForm,
    "approve": CellApproveForm,
    "deny": CellDenyForm,
    "suspend": CellSuspendForm,
    "resume": CellResumeForm,
}


class CertificationForm(forms.ModelForm):
    """A new entry in the certification catalogue."""

    class Meta:
        model = Certification
        fields = ["name", "slug", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}
        help_texts = {"slug": "Lower-case letters, digits and dashes, e.g. soc2-type2."}


class HoldingForm(forms.ModelForm):
    """A holding of a certification by a provider or, as an override, by one model version."""

    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.all(),
        to_field_name="ref",
        required=False,
        label="Model version ref (override)",
        widget=forms.TextInput(attrs={"placeholder": "provider/model@version"}),
        error_messages={"invalid_choice": "No model version %(value)s in the registry."},
        help_text="Instead of a provider: a holding that overrides the provider's for one deployment.",
    )

    class Meta:
        model = CertificationHolding
        formfield_callback = formfield_https_urls
        fields = [
            "certification",
            "provider",
            "model_version",
            "effect",
            "valid_from",
            "valid_until",
            "evidence_file",
            "evidence_url",
            "notes",
        ]
        widgets = {
            "valid_from": forms.DateInput(attrs={"type": "date"}),
            "valid_until": forms.DateInput(attrs={"type": "date"}),
            "evidence_file": forms.ClearableFileInput(attrs={"accept": ".pdf,.png,.jpg,.jpeg,.txt"}),
            "notes": forms.Textarea(attrs={"rows": 2}),
        }
        labels = {"evidence_url": "Evidence URL"}
        help_texts = {
            "evidence_file": "PDF, PNG, JPEG or text, at most 10 MB.",
            "evidence_url": "Or a link to the evidence (a trust portal, a signed agreement).",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["provider"].queryset = Provider.objects.order_by("name")
        self.fields["provider"].required = False


class RenewHoldingForm(forms.ModelForm):
    """A renewal: the new holding's dates and evidence; certification, holder and effect are the old one's."""

    class Meta:
        model = CertificationHolding
        formfield_callback = formfield_https_urls
        fields = ["valid_from", "valid_until", "evidence_file", "evidence_url", "notes"]
        widgets = HoldingForm.Meta.widgets
        labels = HoldingForm.Meta.labels
        help_texts = HoldingForm.Meta.help_texts

    def renewal_fields(self) -> dict:
        """The validated values, ready for ``CertificationHolding.renew``."""
        return {name: self.cleaned_data[name] for name in self.Meta.fields}

    def validate_unique(self) -> None:
        # The instance is only a carrier for the form's fields; ``renew`` checks the whole holding.
        return

    def _post_clean(self) -> None:
        # The holder is the renewed holding's: ``renew`` runs the model's checks on the complete holding.
        return


HOLDING_SORTS = {
    "provider": ("holder_provider", "certification__name"),
    "certification": ("certification__name", "holder_provider"),
    "expiry": ("valid_until", "certification__name"),
    "days": ("valid_until", "certification__name"),
}


class HoldingFilterForm(forms.Form):
    """The holdings table's query string: provider, state and sort (``-`` first for descending)."""

    provider = forms.ModelChoiceField(
        queryset=Provider.objects.order_by("name"),
        to_field_name="slug",
        required=False,
        empty_label="All providers",
        error_messages={"invalid_choice": "No provider with the slug %(value)s."},
    )
    state = forms.ChoiceField(
        choices=[("", "Any state")]
        + [(s.value, s.label) for s in (HoldingStanding.VALID, HoldingStanding.EXPIRING, HoldingStanding.EXPIRED)],
        required=False,
        error_messages={"invalid_choice": "%(value)s is not a state; use valid, expiring or expired."},
    )
    sort = forms.ChoiceField(
        choices=[(key, key) for key in HOLDING_SORTS] + [(f"-{key}", f"-{key}") for key in HOLDING_SORTS],
        required=False,
        error_messages={
            "invalid_choice": f"%(value)s is not a sort; use {', '.join(HOLDING_SORTS)}, with - first to reverse."
        },
    )


class RegionListField(forms.CharField):
    """Region codes or patterns typed as a comma-separated list ("eu-*, us-east-1")."""

    def prepare_value(self, value):
        if isinstance(value, list):
            return ", ".join(value)
        return value

    def to_python(self, value) -> list[str]:
        text = super().to_python(value)
        return [item.strip() for item in text.split(",") if item.strip()]


class ClassificationForm(forms.ModelForm):
    allowed_regions = RegionListField(
        required=False,
        label="Allowed regions",
        help_text="Comma-separated region codes or patterns, e.g. eu-*, us-east-1; empty means any region.",
    )

    class Meta:
        model = DataClassification
        fields = ["slug", "name", "level", "description", "required_certifications", "allowed_regions", "storage"]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "required_certifications": forms.CheckboxSelectMultiple,
        }
        labels = {"storage": "Decision records keep"}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # Policies and decision records refer to a classification by its slug.
            self.fields["slug"].disabled = True
            self.fields["slug"].help_text = "Policies refer to the slug; it cannot change."
