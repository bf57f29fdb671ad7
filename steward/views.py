"""Pages every app shares: sign-in, the profile with API tokens, sign-in lockouts, health, errors.

The dashboard and the approvals inbox, which read every app, are the top floor's (``hub.views``).
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time
from collections.abc import Callable

from axes.models import AccessAttempt
from axes.utils import reset as axes_reset
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required, permission_required
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.core.exceptions import DisallowedHost
from django.db import connection, transaction
from django.db.models import Max, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.utils import timezone
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from audits.events import record

from . import degraded
from .models import ApiToken
from .roles import REVIEW_VERSIONS


class SignInView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True


TOKEN_LIFETIMES = [("30", "30 days"), ("90", "90 days"), ("365", "a year"), ("", "never (until revoked)")]


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. 'CI pipeline'.")
    expires_in_days = forms.TypedChoiceField(
        label="Expires after",
        choices=TOKEN_LIFETIMES,
        coerce=int,
        empty_value=None,
        required=False,
        initial="90",
    )


# Sections that the apps above add to the profile page (notifications: what to be told, and how).
# Each takes the request and returns rendered HTML.
PROFILE_SECTIONS: list[Callable[[HttpRequest], str]] = []


def profile(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    new_token = None
    if request.method == "POST" and form.is_valid():
        _, new_token = ApiToken.issue(request.user, form.cleaned_data["name"], form.cleaned_data["expires_in_days"])
        form = TokenForm()
    return profile_page(request, form=form, new_token=new_token)


def profile_page(
    request: HttpRequest,
    form: TokenForm | None = None,
    new_token: str | None = None,
    sections: list[str] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The profile page; an app above that refuses a form of its section renders it with ``sections``."""
    tokens = ApiToken.objects.filter(user=request.user)
    context = {
        "form": form or TokenForm(),
        "tokens": tokens,
        "new_token": new_token,
        "sections": sections if sections is not None else [section(request) for section in PROFILE_SECTIONS],
    }
    response = render(request, "profile.html", context, status=status)
    if new_token:
        # The token is shown this once; make sure no cache keeps the page.
        response["Cache-Control"] = "no-store"
    return response


@require_POST
def revoke_token(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    token.revoke(by=request.user)
    messages.success(request, f"Token {token.name} revoked.")
    return redirect("profile")


# --- sign-in lockouts ----------------------------------------------------------------------------


def _lockout_rows() -> list[dict]:
    """Accounts and addresses with failed sign-ins within the lockout period, and whether each is locked."""
    since = timezone.now() - settings.AXES_COOLOFF_TIME
    attempts = AccessAttempt.objects.filter(attempt_time__gte=since)
    limit = settings.AXES_FAILURE_LIMIT
    rows = []
    for kind, field in (("account", "username"), ("address", "ip_address")):
        totals = (
            attempts.exclude(**{f"{field}__isnull": True})
            .values(field)
            .annotate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
        )
        for total in totals.order_by("-last"):
            rows.append(
                {
                    "kind": kind,
                    "value": total[field],
                    "failures": total["failures"],
                    "last": total["last"],
                    "locked": total["failures"] >= limit,
                }
            )
    return rows


@permission_required("axes.view_accessattempt", raise_exception=True)
def lockouts(request: HttpRequest) -> HttpResponse:
    """Failed sign-ins by account and by address; officers unlock a locked one."""
    context = {
        "rows": _lockout_rows(),
        "limit": settings.AXES_FAILURE_LIMIT,
        "cooloff": settings.AXES_COOLOFF_TIME,
    }
    return render(request, "lockouts.html", context)


@require_POST
@permission_required("axes.delete_accessattempt", raise_exception=True)
def unlock(request: HttpRequest) -> HttpResponse:
    kind, value = request.POST.get("kind", ""), request.POST.get("value", "").strip()
    if kind not in ("account", "address") or not value or len(value) > 255:
        messages.error(request, "Choose an account or an address to unlock.")
        return redirect("lockouts")
    with transaction.atomic():
        cleared = axes_reset(username=value) if kind == "account" else axes_reset(ip=value)
        record(
            "auth.unlock",
            actor=request.user,
            object_type="auth.user" if kind == "account" else "auth.address",
            object_repr=value,
            after={kind: value, "attempts_cleared": cleared},
        )
    messages.success(request, f"Sign-in unlocked for the {kind} {value}.")
    return redirect("lockouts")


def _database_status() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        degraded.recovered("database")
        return {"ok": True, "detail": connection.vendor}
    except Exception as error:  # noqa: BLE001 - a health page reports, it does not raise
        return {"ok": False, "detail": str(error).strip()}


def _cache_status() -> dict | None:
    """The shared cache (Redis), written and read back; None when the cache is per process."""
    backend = settings.CACHES["default"]["BACKEND"]
    if "locmem" in backend.lower() or "dummy" in backend.lower():
        return None
    try:
        stamp = str(time.time())
        cache.set("steward:health", stamp, 30)
        if cache.get("steward:health") != stamp:
            return {"ok": False, "detail": "the cache did not keep what was written"}
        degraded.recovered("cache")
        return {"ok": True, "detail": settings.CACHES["default"]["LOCATION"].split("@")[-1]}
    except Exception as error:  # noqa: BLE001
        return {"ok": False, "detail": f"{type(error).__name__}: {error}"}


def _broker_status() -> dict:
    from .celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        degraded.recovered("broker")
        return {"ok": True, "detail": app.conf.broker_url.split("@")[-1]}
    except Exception as error:  # noqa: BLE001
        return {"ok": False, "detail": str(error)}


def _worker_status() -> dict:
    from .tasks import ping

    timeout = settings.STEWARD_HEALTH_PING_TIMEOUT
    try:
        result = ping.apply_async(expires=timeout)
        answer = result.get(timeout=timeout)
        result.forget()
        return {"ok": answer == "pong", "detail": f"a worker answered within {timeout} s"}
    except Exception as error:  # noqa: BLE001
        return {"ok": False, "detail": f"no worker answered within {timeout} s ({type(error).__name__})"}


class _CachedCheck:
    """A slow check (the broker, a worker ping) run at most once per ``seconds`` in this process.

    While one request runs it, the others answer at once with the last result (or "checking"), so
    a burst of health probes never ties up more than one request thread, nor floods the broker.
    """

    def __init__(self, check) -> None:
        self.check = check
        self.lock = threading.Lock()
        self.result: dict | None = None
        self.checked_at = 0.0

    def __call__(self) -> dict:
        seconds = settings.STEWARD_HEALTH_CACHE_SECONDS
        if self.result is not None and time.monotonic() - self.checked_at < seconds:
            return self.result
        if not self.lock.acquire(blocking=False):
            return self.result or {"ok": None, "detail": "being checked by another request"}
        try:
            self.result, self.checked_at = self.check(), time.monotonic()
        finally:
            self.lock.release()
        return self.result

    def forget(self) -> None:
        self.result, self.checked_at = None, 0.0


broker_check = _CachedCheck(lambda: _broker_status())
worker_check = _CachedCheck(lambda: _worker_status())


def _status_word(check: dict) -> str:
    return {True: "ok", False: "degraded", None: "checking"}[check["ok"]]


def _may_see_detail(request: HttpRequest) -> bool:
    """Officers and admins see each check's detail; without the database, nobody is known to be one."""
    try:
        user = request.user
        return user.is_authenticated and (user.is_superuser or user.has_perm(REVIEW_VERSIONS))
    except Exception as error:
        if not degraded.is_database_outage(error):
            raise
        request.user = AnonymousUser()  # the templates read it too
        return False


@login_not_required
@never_cache
def health(request: HttpRequest) -> HttpResponse:
    """Database, cache, broker and worker status, for people (HTML) and load balancers (JSON).

    Anyone sees the status words and, under ``degraded``, for each service that does not answer
    (now, or lately in this process) what Steward answers meanwhile and how many such answers this
    process gave since when; officers (and admins) also see each check's detail, which names hosts
    and errors.
    """
    checks = {"database": _database_status()}
    cache_status = _cache_status()
    if cache_status is not None:
        checks["cache"] = cache_status
    checks["broker"] = broker_check()
    checks["worker"] = worker_check() if checks["broker"]["ok"] else {"ok": False, "detail": "broker down"}
    noted = degraded.recent()
    healthy = all(check["ok"] is not False for check in checks.values())
    status = 200 if healthy else 503
    detailed = _may_see_detail(request)
    shown = {
        name: {"ok": check["ok"], "status": _status_word(check), **({"detail": check["detail"]} if detailed else {})}
        for name, check in checks.items()
    }
    # What Steward answers meanwhile, for each service that does not answer now or did lately here.
    answers = {}
    for name in checks:
        if checks[name]["ok"] is False or name in noted:
            answers[name] = {"answer": degraded.ANSWERS[name], "answers_given": 0}
            if name in noted:
                answers[name].update(answers_given=noted[name]["count"], since=_moment(noted[name]["since"]))
                if noted[name]["answered_again_at"] is not None:
                    answers[name]["answers_again_since"] = _moment(noted[name]["answered_again_at"])
    body = {"ok": healthy, "status": "ok" if healthy else "degraded", "checks": shown}
    if answers:
        body["degraded"] = answers
    if "application/json" in request.headers.get("Accept", "") or request.GET.get("format") == "json":
        response = JsonResponse(body, status=status)
    else:
        context = {"checks": shown, "degraded": answers, "healthy": healthy, "detailed": detailed}
        response = render(request, "health.html", context, status=status)
    if not healthy:
        response["Retry-After"] = str(degraded.RETRY_AFTER_SECONDS)
    return response


def _moment(unix_time: float) -> str:
    return dt.datetime.fromtimestamp(unix_time, tz=dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _api_error(request: HttpRequest, detail: str, status: int) -> JsonResponse | None:
    """The API's clients read JSON, also for a URL that matched nothing: ``{"detail": ...}``."""
    return JsonResponse({"detail": detail}, status=status) if request.path.startswith("/api/") else None


def bad_request(request: HttpRequest, exception=None) -> HttpResponse:
    """A request Django refuses before any view (a Host header it does not serve, a malformed body)."""
    if isinstance(exception, DisallowedHost):
        detail = "The Host header names a host this server does not answer for."
    else:
        detail = "Bad request: it could not be read."
    return _api_error(request, detail, 400) or defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception=None) -> HttpResponse:
    message = str(exception or "")
    return _api_error(request, message or "You do not have permission to do this.", 403) or render(
        request, "errors/403.html", {"message": message}, status=403
    )


def page_not_found(request: HttpRequest, exception=None) -> HttpResponse:
    return _api_error(request, "Not found.", 404) or render(request, "errors/404.html", status=404)


@login_not_required
def server_error(request: HttpRequest) -> HttpResponse:
    """500, unless what failed is a service that does not answer: then 503 with Retry-After.

    Django calls this while handling the exception, from any middleware or view, so it is the one
    place that sees a database outage wherever it surfaces (a session read, a token check, a view).
    """
    error = sys.exc_info()[1]
    if isinstance(error, degraded.ServiceUnavailable):  # noted where it was raised
        response = degraded.unavailable_response(request, error.service, error.reason)
    elif degraded.is_database_outage(error):
        degraded.noted("database", error)
        response = degraded.unavailable_response(request, "database", "the database does not answer")
    else:
        return _api_error(request, "Server error.", 500) or render(request, "errors/500.html", status=500)
    # The outage is logged when it begins and once a minute (degraded.noted), not with a traceback per request.
    response._has_been_logged = True
    return response


@login_not_required
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico before reading a page's icon link: send them to the static icon."""
    return redirect(static("steward/favicon.svg"), permanent=True)
