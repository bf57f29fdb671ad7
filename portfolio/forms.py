"""Forms for the routing-policy pages: the YAML editor, reviews, withdrawals and version diffs.

The forms only parse input; the rules (who may review, what a rejection needs, what publishing
refuses) live on ``ChangeRequest`` and in ``portfolio.publishing``, whose errors the views attach
to these forms.
"""

from __future__ import annotations

from django import forms

from .models import ChangeStatus, PolicySet, ReviewDecision
from .validation import MAX_DOCUMENT_BYTES


class PolicyTextarea(forms.Textarea):
    """The YAML editor: a plain monospace textarea that keeps the text exactly as typed."""

    def __init__(self, attrs: dict | None = None) -> None:
        defaults = {
            "rows": 30,
            "class": "yaml-editor",
            "spellcheck": "false",
            "autocomplete": "off",
            "autocapitalize": "off",
            "wrap": "off",
        }
        super().__init__({**defaults, **(attrs or {})})


class PolicyField(forms.CharField):
    """Policy YAML: required, kept verbatim (no stripping), at most MAX_DOCUMENT_BYTES."""

    default_error_messages = {
        "required": "The policy YAML is required.",
        "too_large": f"The policy is larger than {MAX_DOCUMENT_BYTES // 1024} KB.",
    }

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("label", "Policy (YAML)")
        kwargs.setdefault("widget", PolicyTextarea())
        kwargs.setdefault("strip", False)
        super().__init__(**kwargs)

    def validate(self, value: str) -> None:
        super().validate(value)
        if len(value.encode()) > MAX_DOCUMENT_BYTES:
            raise forms.ValidationError(self.error_messages["too_large"], code="too_large")


class ChangeRequestForm(forms.Form):
    """A new change request: what it is, why, and the YAML it proposes."""

    title = forms.CharField(
        max_length=200,
        error_messages={"required": "A title is required."},
        widget=forms.TextInput(attrs={"placeholder": "e.g. Move ticket triage to a cheaper model"}),
    )
    rationale = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Why this change, and how it was checked."}),
    )
    policy = PolicyField()


class RevisionForm(forms.Form):
    """A new revision of a change request's YAML."""

    policy = PolicyField()


class ReviewForm(forms.Form):
    """Approve, reject or comment; ``ChangeRequest.review`` decides who may and what each needs."""

    decision = forms.ChoiceField(choices=ReviewDecision.choices)
    comment = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Your comment (required to reject)"}),
    )
    acknowledge = forms.MultipleChoiceField(
        choices=[("cost", "cost"), ("quality", "quality"), ("provider", "provider share")], required=False
    )


class ThresholdsForm(forms.ModelForm):
    """An officer's thresholds of the change-impact preview for a policy set; empty: no threshold."""

    class Meta:
        model = PolicySet
        fields = ["threshold_cost_increase_percent", "threshold_quality_drop_bp", "threshold_provider_share_percent"]


class WithdrawForm(forms.Form):
    comment = forms.CharField(
        required=False,
        label="Why withdraw? (optional)",
        widget=forms.Textarea(attrs={"rows": 2}),
    )


class ChangeFilterForm(forms.Form):
    """The change request list's filters; empty means any."""

    status = forms.ChoiceField(
        required=False,
        choices=[("", "Any status"), *ChangeStatus.choices],
        widget=forms.Select(attrs={"aria-label": "Status"}),
    )
    policy_set = forms.ModelChoiceField(
        PolicySet.objects.all(),
        required=False,
        to_field_name="slug",
        empty_label="Any policy set",
        widget=forms.Select(attrs={"aria-label": "Policy set"}),
    )


class VersionDiffForm(forms.Form):
    """Two version numbers of one policy set to compare (``?from=N&to=M``)."""

    def __init__(self, data, numbers: list[int], slug: str, initial: dict | None = None) -> None:
        super().__init__(data, initial=initial)
        choices = [(n, f"v{n}") for n in numbers]
        message = f"Choose a version of {slug} (it has {', '.join(f'v{n}' for n in numbers) or 'none'})."
        for name, label in (("from", "From"), ("to", "To")):
            self.fields[name] = forms.TypedChoiceField(
                label=label,
                choices=choices,
                coerce=int,
                error_messages={"invalid_choice": message, "required": message},
            )


class RouterForm(forms.Form):
    """An officer registers a router for one policy set; its token is shown once."""

    name = forms.CharField(max_length=100, help_text="e.g. edge-eu-1 (lower case, digits, dots, hyphens)")
    policy_set = forms.ModelChoiceField(queryset=PolicySet.objects.all(), to_field_name="slug")
    description = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "where it runs"}))
    expires_in_days = forms.TypedChoiceField(
        label="Token expires after",
        choices=[("", "never (until revoked)"), ("90", "90 days"), ("365", "a year")],
        coerce=int,
        empty_value=None,
        required=False,
    )
