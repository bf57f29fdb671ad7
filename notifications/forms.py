from __future__ import annotations

from django import forms

from steward.forms import formfield_https_urls

from .models import Kind, Webhook

KIND_CHOICES = Kind.choices


class PreferenceForm(forms.Form):
    email_kinds = forms.MultipleChoiceField(
        label="By email", choices=KIND_CHOICES, required=False, widget=forms.CheckboxSelectMultiple
    )
    webhook_kinds = forms.MultipleChoiceField(
        label="By webhook", choices=KIND_CHOICES, required=False, widget=forms.CheckboxSelectMultiple
    )
    digest = forms.TypedChoiceField(
        label="When",
        choices=[("0", "At once"), ("1", "In one digest a day")],
        coerce=lambda value: value == "1",
        initial="0",
        widget=forms.RadioSelect,
    )


class WebhookForm(forms.ModelForm):
    class Meta:
        model = Webhook
        fields = ["name", "url", "format"]
        formfield_callback = formfield_https_urls
        labels = {"url": "URL"}
        help_texts = {"url": "Slack's or Teams' incoming-webhook URL, or your own receiver's."}
