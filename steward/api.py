"""Shared REST API pieces: the exception handler that keeps every error a clear JSON answer."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework import exceptions, status
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from . import degraded


def validation_error_body(error: DjangoValidationError) -> dict:
    """``{"field": ["message"]}`` from a model ValidationError (``non_field_errors`` when unkeyed)."""
    if hasattr(error, "error_dict"):
        return {
            ("non_field_errors" if field == "__all__" else field): messages
            for field, messages in error.message_dict.items()
        }
    return {"non_field_errors": error.messages}


def exception_handler(exc, context):
    if isinstance(exc, degraded.ServiceUnavailable):  # noted where it was raised
        body = degraded.unavailable_body(exc.service, exc.reason)
        return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers=degraded.unavailable_headers())
    if isinstance(exc, DjangoValidationError):
        return Response(validation_error_body(exc), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoPermissionDenied):
        # Keep the domain's own message ("the proposer cannot approve ...") instead of DRF's generic one.
        exc = exceptions.PermissionDenied(str(exc) or None)
    return drf_exception_handler(exc, context)


def requires(perm: str, message: str) -> type[BasePermission]:
    """An API permission class: signed in (session or token) and holding ``perm``; ``message`` says who may."""

    class Requires(BasePermission):
        def has_permission(self, request, view) -> bool:
            return bool(request.user and request.user.is_authenticated and request.user.has_perm(perm))

    Requires.message = message
    Requires.__name__ = Requires.__qualname__ = f"Requires[{perm}]"
    return Requires


class ApiDocsView(SpectacularSwaggerView):
    """Swagger UI on /api/docs/, started by a static script (static/steward/api-docs.js) instead of
    drf-spectacular's inline one, which the site's Content-Security-Policy refuses to run."""

    template_name = "api_docs.html"
