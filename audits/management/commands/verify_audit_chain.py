"""``manage.py verify_audit_chain``: walk the whole audit trail and hold it against every signed
checkpoint (from the database and from the log outside it); exit 1 at the first thing that does not
hold, naming the checkpoint that proves it."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from audits.checkpoints import CheckpointLogError
from audits.verification import verify_full


class Command(BaseCommand):
    help = (
        "Recompute the audit trail's hash chain and check it against every signed checkpoint, in the "
        "database and in STEWARD_AUDIT_CHECKPOINT_DIR; name the first broken link and exit non-zero if any."
    )

    def handle(self, *args, **options) -> None:
        try:
            report, _ = verify_full()
        except CheckpointLogError as error:
            self.stderr.write(f"Audit chain not verified: {error}.")
            sys.exit(1)
        for note in report.notes:
            self.stdout.write(f"Note: {note}.")
        if report.ok:
            self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {report.checked} events verified."))
            newest = report.newest_checkpoint
            if newest is None:
                self.stdout.write("No signed checkpoint to hold it against yet.")
            else:
                self.stdout.write(
                    f"It matches all {report.checkpoints_checked} signed checkpoint(s); the newest is {newest.name()}."
                )
            return
        if report.broken_seq is None:
            self.stderr.write(f"Audit chain not verified: {report.reason}.")
        else:
            self.stderr.write(f"Audit chain broken at event #{report.broken_seq}: {report.reason}.")
        if report.proof:
            self.stderr.write(f"Proved by {report.proof}.")
        self.stderr.write(f"{report.checked} events before it verified.")
        for finding in report.findings[1:]:
            self.stderr.write(f"Also: {finding}.")
        sys.exit(1)
