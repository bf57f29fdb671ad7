"""``Authorization: Bearer <token>`` for the REST API, with personal API tokens."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from .models import TOKEN_PREFIX, ApiToken


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        try:
            raw = header[1].decode()
        except UnicodeError as error:
            raise exceptions.AuthenticationFailed("Token contains invalid characters.") from error
        user = ApiToken.user_for(raw)
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired token.")
        return (user, raw)

    def authenticate_header(self, request) -> str:
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema names personal API tokens (drf-spectacular finds it by its target class)."""

    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                f"A personal API token (`{TOKEN_PREFIX}…`), made on your profile page and shown once: "
                "`Authorization: Bearer <token>`. It acts with your role."
            ),
        }
