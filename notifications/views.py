"""The person's notification choices and webhooks (a section of the profile page) and the unsubscribe link."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_not_required
from django.core import signing
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from steward.forms import add_model_errors
from steward.views import profile_page

from .delivery import ALL, read_unsubscribe_token
from .forms import PreferenceForm, WebhookForm
from .models import Delivery, Kind, Preference, Webhook

RECENT_DELIVERIES = 10


def _preference_form(preference: Preference, data=None) -> PreferenceForm:
    initial = {
        "email_kinds": preference.email_kinds,
        "webhook_kinds": preference.webhook_kinds,
        "digest": "1" if preference.digest else "0",
    }
    return PreferenceForm(data, initial=initial, prefix="notify")


def profile_section(request: HttpRequest, preference_form=None, webhook_form=None) -> str:
    """The profile page's Notifications section (``steward.views.PROFILE_SECTIONS``)."""
    preference_form = preference_form or _preference_form(Preference.for_user(request.user))
    context = {
        "preference_form": preference_form,
        "kind_rows": list(zip(preference_form["email_kinds"], preference_form["webhook_kinds"], strict=True)),
        "webhook_form": webhook_form or WebhookForm(prefix="webhook"),
        "webhooks": Webhook.objects.filter(user=request.user, removed_at__isnull=True),
        "deliveries": Delivery.objects.filter(user=request.user).select_related("webhook")[:RECENT_DELIVERIES],
        "has_email": bool(request.user.email),
    }
    return render_to_string("notifications/_profile_section.html", context, request)


def _profile_with(request: HttpRequest, status: int, **forms) -> HttpResponse:
    return profile_page(request, sections=[profile_section(request, **forms)], status=status)


@require_POST
def preferences(request: HttpRequest) -> HttpResponse:
    preference = Preference.for_user(request.user)
    form = _preference_form(preference, request.POST)
    if form.is_valid():
        try:
            preference.change(request.user, **form.cleaned_data)
        except ValidationError as error:
            add_model_errors(form, error)
        else:
            messages.success(request, "Notification choices saved.")
            return redirect("/profile/#notifications")
    return _profile_with(request, 400, preference_form=form)


@require_POST
def add_webhook(request: HttpRequest) -> HttpResponse:
    form = WebhookForm(request.POST, prefix="webhook")
    if form.is_valid():
        try:
            webhook, secret = Webhook.create(request.user, **form.cleaned_data)
        except ValidationError as error:
            add_model_errors(form, error)
        else:
            response = render(request, "notifications/webhook_created.html", {"webhook": webhook, "secret": secret})
            # The secret is shown this once; make sure no cache keeps the page.
            response["Cache-Control"] = "no-store"
            return response
    return _profile_with(request, 400, webhook_form=form)


@require_POST
def remove_webhook(request: HttpRequest, pk: int) -> HttpResponse:
    webhook = get_object_or_404(Webhook, pk=pk, user=request.user, removed_at__isnull=True)
    webhook.remove(request.user)
    messages.success(request, f"Webhook {webhook.name} removed.")
    return redirect("/profile/#notifications")


@login_not_required
@csrf_exempt  # the signed token is the credential; mail clients' one-click unsubscribe POSTs without a form
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET: what the link turns off and a button; POST: turn it off. No sign-in needed."""
    try:
        user_id, kind = read_unsubscribe_token(token)
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return render(request, "notifications/unsubscribe.html", {"invalid": True}, status=400)
    person = get_user_model().objects.filter(pk=user_id).first()
    if person is None or (kind != ALL and kind not in Kind.values):
        return render(request, "notifications/unsubscribe.html", {"invalid": True}, status=400)
    label = "every email from Steward" if kind == ALL else f"emails about “{Kind(kind).label.lower()}”"
    done = False
    if request.method == "POST":
        preference = Preference.for_user(person)
        email_kinds = [] if kind == ALL else [k for k in preference.email_kinds if k != kind]
        preference.change(
            person,
            email_kinds=email_kinds,
            webhook_kinds=preference.webhook_kinds,
            digest=preference.digest,
            comment="unsubscribe link",
        )
        done = True
    return render(request, "notifications/unsubscribe.html", {"label": label, "done": done, "person": person})
