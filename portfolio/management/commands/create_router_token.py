"""``manage.py create_router_token --policy-set SET --name NAME``: register a router, print its token once."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from portfolio.feed import register_router
from portfolio.models import PolicySet


class Command(BaseCommand):
    help = "Register a router for one policy set and print its token once (only its hash is stored)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--policy-set", required=True, dest="policy_set")
        parser.add_argument("--name", required=True)
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--expires-days",
            type=int,
            default=None,
            dest="expires_days",
            help="Valid for this many days (default: until revoked).",
        )

    def handle(self, *args, policy_set: str, name: str, description: str, expires_days: int | None, **options) -> None:
        if expires_days is not None and expires_days < 1:
            raise CommandError("--expires-days: give a whole number of days, 1 or more.", returncode=2)
        found = PolicySet.objects.filter(slug=policy_set).first()
        if found is None:
            known = ", ".join(PolicySet.objects.values_list("slug", flat=True)) or "none yet"
            raise CommandError(f"--policy-set: no policy set {policy_set!r} (known: {known}).", returncode=2)
        try:
            router, raw = register_router(found, name, by=None, description=description, expires_in_days=expires_days)
        except ValidationError as error:
            details = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items())
            raise CommandError(details.replace("name:", "--name:"), returncode=2) from error
        self.stderr.write(
            f"Router {router.name} registered for {found.slug}; copy its token now, it is not shown again:"
        )
        self.stdout.write(raw)
