"""``manage.py verify_audit_chain``: check every link of the audit trail; exit 1 at the first broken one."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from audits.events import verify_chain


class Command(BaseCommand):
    help = "Recompute the audit trail's hash chain; name the first broken link and exit non-zero if any."

    def handle(self, *args, **options) -> None:
        report = verify_chain()
        if report.ok:
            self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {report.checked} events verified."))
            return
        self.stderr.write(f"Audit chain broken at event #{report.broken_seq}: {report.reason}.")
        self.stderr.write(f"{report.checked} events before it verified.")
        sys.exit(1)
