"""``manage.py signing_keys create|rotate|finish-rotation|list``: the feed's Ed25519 keys and trust root."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from portfolio.models import KeyRole, SigningKey
from portfolio.signing import current_root, ensure_keys, finish_policy_rotation, rotate


class Command(BaseCommand):
    help = (
        "Manage signing keys. create: the first root and policy keys and trust root v1 (no-op when they exist). "
        "rotate --role root|policy: a new key and the next trust root. finish-rotation: retire the old policy "
        "key once every router reports the new trust version (--force to retire it anyway). list: keys and roots."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["create", "rotate", "finish-rotation", "list"])
        parser.add_argument("--role", choices=KeyRole.values, help="with rotate: which key to rotate")
        parser.add_argument("--force", action="store_true", help="with finish-rotation: do not wait for routers")

    def handle(self, *args, action: str, role: str | None, force: bool, **options) -> None:
        try:
            if action == "create":
                existed = current_root() is not None
                root = ensure_keys()
                self.stdout.write(f"Trust root v{root.version} {'already existed' if existed else 'published'}.")
            elif action == "rotate":
                if role is None:
                    raise CommandError("rotate needs --role root or --role policy.", returncode=2)
                key, root = rotate(role)
                self.stdout.write(f"New {role} key {key.keyid}; trust root v{root.version} published.")
                if role == KeyRole.POLICY:
                    self.stdout.write(
                        "The old policy key keeps signing until every router reports trust version "
                        f"{root.version}; then run finish-rotation (the beat task does it too)."
                    )
            elif action == "finish-rotation":
                root = finish_policy_rotation(force=force)
                if root is None:
                    self.stdout.write("Nothing to retire (no rotation under way, or routers still behind).")
                else:
                    self.stdout.write(f"Old policy keys retired; trust root v{root.version} published.")
            else:
                self._list()
        except ValidationError as error:
            raise CommandError(" ".join(error.messages), returncode=2) from error

    def _list(self) -> None:
        root = current_root()
        self.stdout.write(
            f"Trust root: {'v' + str(root.version) + ' expires ' + str(root.expires) if root else 'none'}"
        )
        for key in SigningKey.objects.all():
            self.stdout.write(f"  {key.role:6} {key.keyid}  {key.status:8} created {key.created_at:%Y-%m-%d %H:%M}")
