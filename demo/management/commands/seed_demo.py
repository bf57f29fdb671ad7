"""``manage.py seed_demo``: fill Steward with the demo portfolio and the demo users (``demo.seed``).

Safe to run again: what exists is left alone.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from demo.evaluations import run_demo_evaluations, seed_demo_models, seed_evaluations
from demo.seed import PASSWORD_ENV, SeedResult, ensure_demo_users, seed_compliance, seed_registry, seed_routing
from registry.models import Status


class Command(BaseCommand):
    help = (
        "Fill the registry with a realistic demo portfolio (providers, models, versions in every lifecycle "
        f"status) and the demo users alice, carol, bob and dave. Safe to run again. Passwords come from "
        f"{PASSWORD_ENV} if set, else steward-demo-<username>."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--no-evaluations", action="store_true", help="create the demo suites but do not run them now"
        )

    def handle(self, *args, **options) -> None:
        result = SeedResult()
        with transaction.atomic():
            users = ensure_demo_users(result)
            seed_registry(users, result)
            demo_models = seed_demo_models(users)
            compliance = seed_compliance(users)
            routing = seed_routing(users)
            new_suites = seed_evaluations(users)
        run_evaluations = settings.STEWARD_SEED_EVALUATION_RUNS and not options["no_evaluations"]
        demo_runs = run_demo_evaluations(users) if run_evaluations else 0
        self.stdout.write(self.style.SUCCESS(self.summary(result)))
        self.stdout.write(
            f"Compliance: {compliance.classifications} new classifications, {compliance.holdings} new "
            f"certification holdings, {compliance.cells} new matrix cells."
        )
        self.stdout.write(
            f"Routing: {routing['tiers']} new cost tiers, {routing['tasks']} new tasks, {routing['policy_sets']} new "
            f"policy sets, {routing['versions']} new published policy versions."
        )
        self.stdout.write(
            f"Evaluations: {demo_models} new demo model versions, {new_suites} new suites, {demo_runs} demo runs."
        )
        for note in routing["notes"]:
            self.stderr.write(f"Note: {note}")
        self.stdout.write(self.logins(result))

    @staticmethod
    def summary(result: SeedResult) -> str:
        statuses = ", ".join(f"{result.statuses[status]} {status}" for status in Status if result.statuses[status])
        return (
            f"Demo portfolio: {result.providers} providers ({result.new_providers} new), "
            f"{result.models} models ({result.new_models} new), "
            f"{result.versions} model versions ({result.new_versions} new): {statuses}."
        )

    @staticmethod
    def logins(result: SeedResult) -> str:
        source = f"from {PASSWORD_ENV}" if os.environ.get(PASSWORD_ENV) else "fixed demo passwords"
        rows = [("username", "password", "name", "role"), *result.logins]
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        lines = [f"Demo logins ({source}):"]
        for row in rows:
            lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        return "\n".join(lines)
