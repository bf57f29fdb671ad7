"""Project-wide middleware: the Content-Security-Policy header and login everywhere."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequiredMiddleware
from django.http import HttpRequest, HttpResponse


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
