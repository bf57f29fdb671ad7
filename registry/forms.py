"""Forms for proposing model versions, moving them through their lifecycle, and evaluations."""

from __future__ import annotations

import re
from decimal import Decimal

import yaml
from django import forms

from steward.forms import formfield_https_urls

from .evaluation.runs import evaluable_versions, unevaluable_reason
from .evaluation.suites import MAX_SUITE_BYTES, SuiteFormatError, SuiteLoader
from .models import EDITABLE_PROPOSAL_FIELDS, Model, ModelVersion, SuiteCategory, known_tiers

MICRO = Decimal(1_000_000)


class UsdPerMillionField(forms.DecimalField):
    """A price typed in USD per million tokens (2.50) and stored as integer micro-USD (2_500_000)."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("min_value", Decimal(0))
        kwargs.setdefault("max_digits", 14)
        kwargs.setdefault("decimal_places", 6)
        super().__init__(**kwargs)
        self.error_messages["min_value"] = "Prices cannot be negative."


class ProposeVersionForm(forms.ModelForm):
    """An engineer's proposal. Prices are entered in USD per million tokens."""

    input_price_usd = UsdPerMillionField(label="Input price (USD per 1M tokens)")
    output_price_usd = UsdPerMillionField(label="Output price (USD per 1M tokens)")
    cost_tier = forms.ChoiceField(choices=[], initial="medium")

    class Meta:
        model = ModelVersion
        formfield_callback = formfield_https_urls
        fields = [
            "model",
            "version",
            "region",
            "endpoint_kind",
            "base_url",
            "provider_model_id",
            "api_key_env",
            "cost_tier",
            "context_window",
            "notes",
        ]
        widgets = {"notes": forms.Textarea(attrs={"rows": 3})}
        labels = {
            "model": "Model",
            "api_key_env": "API key environment variable",
            "context_window": "Context window (tokens)",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].queryset = Model.objects.select_related("provider").order_by("provider__name", "name")
        self.fields["model"].label_from_instance = lambda m: (
            f"{m.provider.name} — {m.name} ({m.provider.slug}/{m.slug})"
        )
        self.fields["cost_tier"].choices = [(tier, tier.capitalize()) for tier in known_tiers()]
        self.fields["api_key_env"].widget.attrs["placeholder"] = "e.g. MISTRAL_API_KEY"
        self.fields["base_url"].widget.attrs["placeholder"] = "https://api.example.com/v1"
        self.fields["region"].widget.attrs["placeholder"] = "e.g. eu-west-1"
        self.fields["context_window"].widget.attrs["placeholder"] = "e.g. 128000"
        self.fields["context_window"].error_messages["invalid"] = (
            "Enter the context window as a whole number of tokens."
        )

    def clean(self) -> dict:
        cleaned = super().clean()
        for usd_field, micro_field in (
            ("input_price_usd", "input_price_micro_usd"),
            ("output_price_usd", "output_price_micro_usd"),
        ):
            value = cleaned.get(usd_field)
            if value is not None:
                setattr(self.instance, micro_field, int(value * MICRO))
        return cleaned

    def proposal_fields(self) -> dict:
        """The validated values, ready for ``ModelVersion.propose``."""
        fields = {name: self.cleaned_data[name] for name in self.Meta.fields}
        fields["input_price_micro_usd"] = self.instance.input_price_micro_usd
        fields["output_price_micro_usd"] = self.instance.output_price_micro_usd
        return fields

    def validate_unique(self) -> None:
        # ModelVersion.clean() reports a duplicate with its ref; skip the generic constraint message.
        return


class EditProposalForm(ProposeVersionForm):
    """The proposer's changes to their proposal. The model and version make its ref and stay as they are."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in ("model", "version"):
            self.fields[name].disabled = True
        self.fields[
            "version"
        ].help_text = "The ref names the proposal everywhere; to change it, withdraw and propose again."
        for usd_field, micro in (
            ("input_price_usd", self.instance.input_price_micro_usd),
            ("output_price_usd", self.instance.output_price_micro_usd),
        ):
            self.initial.setdefault(usd_field, Decimal(micro) / MICRO)

    def edit_fields(self) -> dict:
        """The validated values, ready for ``ModelVersion.edit_proposal``."""
        fields = self.proposal_fields()
        return {name: fields[name] for name in EDITABLE_PROPOSAL_FIELDS}


class TransitionForm(forms.Form):
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Why? (required)"}),
        error_messages={"required": "A comment is required."},
    )


class CredentialRequestForm(forms.Form):
    """An engineer's request to bind an API-key variable to the hosts its key may be sent to."""

    env_var = forms.CharField(
        label="Environment variable",
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": "e.g. MISTRAL_API_KEY", "autocomplete": "off"}),
        help_text="The name of the variable the workers read the key from; never the key itself.",
    )
    hosts = forms.CharField(
        label="Hosts",
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "api.mistral.ai"}),
        help_text="One per line (or comma-separated): host for any port, host:port for one port.",
    )
    description = forms.CharField(label="Why", required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_hosts(self) -> list[str]:
        return [host.strip() for host in re.split(r"[\s,]+", self.cleaned_data["hosts"]) if host.strip()]


# --- evaluations --------------------------------------------------------------------------------


class EvaluableVersionField(forms.ModelChoiceField):
    """Offers the versions an evaluation makes sense for; any other version is refused with the reason."""

    def to_python(self, value):
        try:
            return super().to_python(value)
        except forms.ValidationError:
            other = ModelVersion.objects.with_related().filter(pk=value).first() if str(value).isdigit() else None
            if other is not None and (reason := unevaluable_reason(other)):
                raise forms.ValidationError(reason, code="invalid_choice") from None
            raise


class StartRunForm(forms.Form):
    """Which model version a suite runs against: only those an evaluation makes sense for (not rejected,
    withdrawn or retired; a chat model behind an endpoint Steward can call), each with its status."""

    model_version = EvaluableVersionField(
        queryset=ModelVersion.objects.none(),
        label="Model version",
        error_messages={"invalid_choice": "No model version with that id in the registry."},
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["model_version"]
        field.queryset = evaluable_versions().with_related().order_by("ref")
        field.label_from_instance = lambda v: f"{v.ref} ({v.get_status_display().lower()})"


class SuiteImportForm(forms.Form):
    """A suite as YAML, pasted or uploaded: Steward's format, or a promptfoo test file."""

    FORMATS = [("steward", "Steward suite"), ("promptfoo", "promptfoo test file")]

    yaml = forms.CharField(
        label="YAML",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 10, "class": "yaml-editor compact", "spellcheck": "false"}),
    )
    file = forms.FileField(label="…or upload a file", required=False)
    format = forms.ChoiceField(choices=FORMATS, initial="steward")
    name = forms.CharField(required=False, max_length=120, help_text="promptfoo: the suite's name.")
    slug = forms.CharField(required=False, max_length=80, help_text="promptfoo: the suite's slug.")
    category = forms.ChoiceField(choices=SuiteCategory.choices, initial=SuiteCategory.ACCURACY)

    def clean(self) -> dict:
        cleaned = super().clean()
        text, upload = cleaned.get("yaml") or "", cleaned.get("file")
        if upload is not None and text.strip():
            raise forms.ValidationError("Paste YAML or upload a file, not both.")
        if upload is not None:
            if upload.size > MAX_SUITE_BYTES:
                raise forms.ValidationError(f"The file is larger than {MAX_SUITE_BYTES // (1024 * 1024)} MB.")
            try:
                text = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                raise forms.ValidationError("The file is not UTF-8 text.") from None
        if not text.strip():
            raise forms.ValidationError("Paste the suite's YAML or upload a file.")
        cleaned["text"] = text
        return cleaned

    def located_errors(self, error: SuiteFormatError) -> list[tuple[str, int | None, str]]:
        """The import's errors as (path, line, message); the line is found by following the path."""
        text = self.cleaned_data["text"]
        return [(path, yaml_line(text, path) if path else None, message) for path, message in error.errors]


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def yaml_line(text: str, path: str) -> int | None:
    """The line of ``path`` (``cases[3].expected``) in a YAML document: of its key, or of the deepest
    part that exists. None when the document does not parse or the path starts nowhere."""
    try:
        node = yaml.compose(text, Loader=SuiteLoader)  # noqa: S506 - a restricted SafeLoader
    except (yaml.YAMLError, ValueError):
        return None
    line = None
    for name, index in _PATH_PART.findall(path):
        if isinstance(node, yaml.MappingNode) and name:
            found = next(((key, value) for key, value in node.value if key.value == name), None)
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and index:
            position = int(index)
            if position >= len(node.value):
                break
            node = node.value[position]
            line = node.start_mark.line + 1
        else:
            break
    return line
