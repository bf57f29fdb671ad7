"""``Authorization: Bearer <token>`` for the REST API, with personal API tokens."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from .models import ApiToken


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
