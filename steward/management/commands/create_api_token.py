"""``manage.py create_api_token USERNAME [--name NAME]``: issue a personal API token, printed once."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from steward.models import ApiToken


class Command(BaseCommand):
    help = "Create a personal API token for USERNAME and print it once (only its hash is stored)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="command line", help="What the token is for.")
        parser.add_argument(
            "--expires-days",
            type=int,
            default=None,
            dest="expires_days",
            help="Valid for this many days (default: until revoked).",
        )

    def handle(self, *args, username: str, name: str, expires_days: int | None, **options) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist as error:
            raise CommandError(f"username: no user named {username!r}.", returncode=2) from error
        if not user.is_active:
            raise CommandError(f"username: {username!r} is inactive.", returncode=2)
        if expires_days is not None and expires_days < 1:
            raise CommandError("--expires-days: give a whole number of days, 1 or more.", returncode=2)
        _, raw = ApiToken.issue(user, name, expires_days)
        self.stderr.write(f"Token {name!r} for {username}; copy it now, it will not be shown again:")
        self.stdout.write(raw)
