"""Project-wide middleware: the Content-Security-Policy header, login everywhere, request ids, body
limits, and the ``Vary`` of pages that answer htmx with partials."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequiredMiddleware
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import patch_vary_headers

from audits.events import current_request_id

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


class ContentSecurityPolicyMiddleware:
    """Adds ``settings.CONTENT_SECURITY_POLICY`` to every response that lacks one."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response


# The REST API authenticates on its own (session or bearer token) and answers 401 rather than
# redirecting to the login page, so it is not covered by the page login requirement.
API_PREFIXES = ("/api/v1/", "/api/schema/")


class HtmxVaryMiddleware:
    """Pages answer htmx with a partial of themselves at the same URL (filters, pagers), and push that
    URL into the history; ``Vary`` keeps the browser's cache from serving the partial as the page
    when a person comes back to it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.method in ("GET", "HEAD"):
            patch_vary_headers(response, ("HX-Request", "HX-Target"))
        return response


class LoginRequiredMiddleware(DjangoLoginRequiredMiddleware):
    """Every page requires login, except the views marked ``@login_not_required`` and the API."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path.startswith(API_PREFIXES):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class RequestIdMiddleware:
    """Give every request an id (or keep a valid ``X-Request-ID`` from the proxy), for audit events and logs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response


class NulCharacterMiddleware:
    """Answer 400 when the path, a query parameter or a page's form field holds a NUL character
    (``?status=%00``).

    No column can store one (PostgreSQL text refuses it), so no slug or filter could match it; refusing
    it here keeps every lookup and filter of every page and API from sending it to the database.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in query or "\x00" in query:
            refused = self._refuse(request)
            if refused is not None:
                return refused
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        """A page's form fields too (the API's parsers check their own bodies). This runs after
        BodySizeMiddleware has refused bodies too large, as Django's CSRF check reads the form then too."""
        if request.method != "POST" or request.path.startswith("/api/"):
            return None
        if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return None
        return self._refuse(request, request.POST)

    @staticmethod
    def _refuse(request: HttpRequest, form=None) -> HttpResponse | None:
        message = "Null characters are not allowed."
        errors: dict[str, list[str]] = {}
        if "\x00" in request.path:
            errors["path"] = [f"The URL's path holds a NUL character (%00). {message}"]
        for key, values in (form if form is not None else request.GET).lists():
            if "\x00" in key or any("\x00" in value for value in values):
                errors[key.replace("\x00", "\\u0000")] = [message]
        if not errors:
            return None
        if request.path.startswith("/api/"):
            return JsonResponse(errors, status=400)
        text = "\n".join(f"{name}: {' '.join(messages)}" for name, messages in errors.items())
        return HttpResponse(text, status=400, content_type="text/plain; charset=utf-8")


# Endpoints that accept more than the default and enforce their own limit on what they read.
LARGE_BODY_PATHS = {"/api/v1/decisions": 32 * 1024 * 1024}


def _too_large(request: HttpRequest, length: int, limit: int) -> HttpResponse:
    message = f"The request body is {length} bytes; at most {limit} bytes are accepted here."
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=413)
    return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")


class BodySizeMiddleware:
    """Answer 413 for a body larger than allowed, of any content type, before anything reads it.

    Runs after authentication (which reads no body): a request that is neither signed in nor
    carries a token gets the smallest limit (a sign-in form is a few hundred bytes); signed-in
    uploads (evidence files, suites) get ``STEWARD_MAX_UPLOAD_BYTES``; everything else
    ``DATA_UPLOAD_MAX_MEMORY_SIZE``. Nothing of a refused body is read, so nothing is spooled to disk.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            message = "The Content-Length header must be a whole number of bytes."
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": message}, status=400)
            return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
        if length and length > self.limit_for(request):
            return _too_large(request, length, self.limit_for(request))
        return self.get_response(request)

    @staticmethod
    def limit_for(request: HttpRequest) -> int:
        path_limit = LARGE_BODY_PATHS.get(request.path.rstrip("/"))
        if path_limit is not None:
            return path_limit
        user = getattr(request, "user", None)
        signed_in = user is not None and user.is_authenticated
        if not signed_in and "HTTP_AUTHORIZATION" not in request.META:
            return settings.STEWARD_ANONYMOUS_MAX_BODY_BYTES
        if request.META.get("CONTENT_TYPE", "").startswith("multipart/form-data"):
            return settings.STEWARD_MAX_UPLOAD_BYTES
        return settings.DATA_UPLOAD_MAX_MEMORY_SIZE
