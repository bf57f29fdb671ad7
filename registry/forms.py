"""Forms for proposing model versions and moving them through their lifecycle."""

from __future__ import annotations

from decimal import Decimal

from django import forms

from steward.forms import formfield_https_urls

from .models import Model, ModelVersion, known_tiers

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
            "notes",
        ]
        widgets = {"notes": forms.Textarea(attrs={"rows": 3})}
        labels = {"model": "Model", "api_key_env": "API key environment variable"}

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


class TransitionForm(forms.Form):
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Why? (required)"}),
        error_messages={"required": "A comment is required."},
    )
