"""Project-wide middleware: the Content-Security-Policy header and login everywhere."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequiredMiddleware
from django.http import HttpRequest, HttpResponse, JsonResponse

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


# Endpoints that accept more than DATA_UPLOAD_MAX_MEMORY_SIZE and enforce their own limit.
LARGE_BODY_PATHS = {"/api/v1/decisions": 32 * 1024 * 1024}


class BodySizeMiddleware:
    """Answer 413 for a body larger than allowed before anything reads it (JSON for the API).

    File uploads (multipart) are streamed to disk by Django and limited by their own validators.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = LARGE_BODY_PATHS.get(request.path.rstrip("/"), settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        multipart = request.META.get("CONTENT_TYPE", "").startswith("multipart/form-data")
        if limit is not None and length > limit and not multipart:
            message = f"The request body is {length} bytes; at most {limit} bytes are accepted here."
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": message}, status=413)
            return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
