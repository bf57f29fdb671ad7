"""A small, realistic routing world for the portfolio tests.

Three cost tiers, two data classifications (internal and pii) with the certifications they
require, four providers holding them (google has no GDPR DPA, so its versions may not process
pii), approved versions from at least three providers in every tier with approved matrix cells,
a few versions out of service (retired, deprecated, restricted, proposed), four tasks, the
production (two approvals, provider diversity) and staging (one approval) policy sets, and a
first published version of each.

The world is declared in the constants below, so that hypothesis strategies can draw from it
before the database exists, and written once per test module (``seed_demo`` would cost seconds
per test; this world costs about half a second, which a hundred validation tests would pay a
hundred times): see ``_world_rows``. Transactional tests build their own with ``build_world``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Group, User
from django.db import transaction

from compliance.models import DataClassification
from portfolio.models import CostTier, PolicySet, Task
from registry.models import ModelVersion, Status
from steward.roles import AUDITORS, ENGINEERS, OFFICERS

from ..factories import (
    approve_cell,
    make_classification,
    make_holding,
    make_model,
    make_policy_set,
    make_provider,
    make_task,
    make_tier,
    make_version,
    publish_through_review,
)

# slug, rank, ceiling (micro-USD per million input tokens)
TIERS = [("small", 1, 500_000), ("medium", 2, 5_000_000), ("large", 3, 20_000_000)]

# slug, name, level, required certifications
CLASSIFICATIONS = [
    ("internal", "Internal", 1, ["soc2-type2"]),
    ("pii", "Personal data", 3, ["soc2-type2", "gdpr-dpa"]),
]

# provider slug → (name, certifications held)
PROVIDERS = {
    "openai": ("OpenAI", ["soc2-type2", "gdpr-dpa", "iso27001"]),
    "anthropic": ("Anthropic", ["soc2-type2", "gdpr-dpa"]),
    "mistral": ("Mistral AI", ["soc2-type2", "gdpr-dpa"]),
    "google": ("Google", ["soc2-type2"]),
}


@dataclass(frozen=True)
class VersionSpec:
    """A model version of the world, as ``make_version`` will write it."""

    provider: str
    model: str
    version: str
    tier: str
    price: int  # micro-USD per million input tokens
    status: str = Status.APPROVED
    region: str = "eu-west-1"

    @property
    def ref(self) -> str:
        return f"{self.provider}/{self.model}@{self.version}"


VERSIONS = [
    # small (ceiling 500 000)
    VersionSpec("openai", "gpt-4o-mini", "2024-07-18", "small", 150_000),
    VersionSpec("mistral", "mistral-small", "2501", "small", 100_000),
    VersionSpec("google", "gemini-2.0-flash", "001", "small", 100_000),
    VersionSpec("anthropic", "claude-3-haiku", "20240307", "small", 250_000),
    VersionSpec("openai", "gpt-4.1-nano", "2025-04-14", "small", 100_000),
    # Tagged small but priced above the small ceiling.
    VersionSpec("anthropic", "claude-3-5-haiku", "20241022", "small", 800_000),
    # medium (ceiling 5 000 000)
    VersionSpec("openai", "gpt-4o", "2024-08-06", "medium", 2_500_000),
    VersionSpec("anthropic", "claude-3-5-sonnet", "20241022", "medium", 3_000_000),
    VersionSpec("mistral", "mistral-large", "2411", "medium", 2_000_000),
    VersionSpec("google", "gemini-1.5-pro", "002", "medium", 1_250_000),
    # large (ceiling 20 000 000)
    VersionSpec("anthropic", "claude-opus-4", "20250514", "large", 15_000_000),
    VersionSpec("openai", "o1", "2024-12-17", "large", 15_000_000),
    VersionSpec("google", "gemini-2.5-pro", "preview", "large", 10_000_000),
    # out of service
    VersionSpec("openai", "gpt-4-turbo", "2024-04-09", "large", 10_000_000, Status.RETIRED),
    VersionSpec("openai", "gpt-4o", "2024-05-13", "medium", 5_000_000, Status.DEPRECATED),
    VersionSpec("anthropic", "claude-3-opus", "20240229", "large", 15_000_000, Status.RESTRICTED),
    VersionSpec("mistral", "mistral-medium", "2505", "medium", 400_000, Status.PROPOSED),
]

# Eligible pairs left without an approved cell: mistral-small was never requested for pii.
NOT_APPROVED_CELLS = {("mistral/mistral-small@2501", "pii")}

# slug, classification, tier
TASKS = [
    ("ticket-triage", "internal", "small"),
    ("support-reply", "pii", "medium"),
    ("code-review", "internal", "medium"),
    ("contract-drafting", "internal", "large"),
]

REFS = [v.ref for v in VERSIONS]
APPROVED_REFS = [v.ref for v in VERSIONS if v.status == Status.APPROVED]
BY_REF = {v.ref: v for v in VERSIONS}
TIER_RANK = {slug: rank for slug, rank, _ in TIERS}
TIER_CEILING = {slug: ceiling for slug, _, ceiling in TIERS}
TASK_TIER = {slug: tier for slug, _, tier in TASKS}
TASK_CLASSIFICATION = {slug: classification for slug, classification, _ in TASKS}

PRODUCTION_V1 = """\
# Production routing: every route keeps a fallback at another provider.
default: deny
routes:
  - task: ticket-triage
    classification: internal
    model: openai/gpt-4o-mini@2024-07-18
    fallbacks:
      - mistral/mistral-small@2501
      - google/gemini-2.0-flash@001
    escalation:
      to: openai/gpt-4o@2024-08-06
      when: [low_confidence, context_overflow]
      confidence_threshold_bp: 7000
      max_rate_bp: 500
  - task: support-reply
    classification: pii
    model: anthropic/claude-3-5-sonnet@20241022
    fallbacks:
      - openai/gpt-4o@2024-08-06
    escalation:
      to: anthropic/claude-opus-4@20250514
      when: [error, low_confidence]
      confidence_threshold_bp: 6000
      max_rate_bp: 300
    constraints:
      max_latency_ms: 8000
"""

STAGING_V1 = """\
default: deny
routes:
  - task: ticket-triage
    classification: internal
    model: mistral/mistral-small@2501
  - task: code-review
    classification: internal
    model: openai/gpt-4o@2024-08-06
"""


@dataclass
class World:
    tiers: dict[str, CostTier]
    classifications: dict[str, DataClassification]
    versions: dict[str, ModelVersion]
    tasks: dict[str, Task]
    production: PolicySet
    staging: PolicySet


PEOPLE = {"alice": OFFICERS, "carol": OFFICERS, "bob": ENGINEERS, "dave": AUDITORS}


def make_people() -> dict[str, User]:
    """alice and carol the officers, bob the engineer, dave the auditor (no passwords: tests force_login)."""
    people = {}
    for username, role in PEOPLE.items():
        people[username] = User.objects.create_user(username, f"{username}@example.org")
        people[username].groups.add(Group.objects.get(name=role))
    return people


def build_world(people: dict[str, User]) -> None:
    """Write the world's rows: tiers, classifications, providers and holdings, versions, matrix
    cells (approved by carol through ``MatrixCell.approve``), tasks and the two policy sets."""
    alice, carol, bob = people["alice"], people["carol"], people["bob"]
    tiers = {slug: make_tier(slug, rank, ceiling) for slug, rank, ceiling in TIERS}
    classifications = {
        slug: make_classification(slug, level, name=name, requires=tuple(required))
        for slug, name, level, required in CLASSIFICATIONS
    }
    providers = {}
    for slug, (name, held) in PROVIDERS.items():
        providers[slug] = make_provider(name=name, slug=slug, regions=["eu-west-1", "us-east-1"])
        for held_slug in held:
            make_holding(
                providers[slug], held_slug, alice, evidence_url=f"https://trust.{slug}.example.com/{held_slug}.pdf"
            )
    models = {}
    required = {slug: set(certifications) for slug, _, _, certifications in CLASSIFICATIONS}
    for spec in VERSIONS:
        key = (spec.provider, spec.model)
        if key not in models:
            models[key] = make_model(provider=providers[spec.provider], name=spec.model, slug=spec.model)
        version = make_version(
            bob,
            model=models[key],
            status=spec.status,
            version=spec.version,
            cost_tier=spec.tier,
            input_price_micro_usd=spec.price,
            output_price_micro_usd=spec.price * 4,
            region=spec.region,
        )
        for slug, classification in classifications.items():
            eligible = required[slug] <= set(PROVIDERS[spec.provider][1])
            if eligible and (spec.ref, slug) not in NOT_APPROVED_CELLS:
                approve_cell(version, classification, carol, "Checked the provider's certificates.")
    for slug, classification, tier in TASKS:
        make_task(slug, classifications[classification], tiers[tier])
    make_policy_set("production", name="Production", required_approvals=2, require_provider_diversity=True)
    make_policy_set("staging", name="Staging", required_approvals=1)


def load_world() -> World:
    """Fresh instances of the world's rows (tests may change them; the next test must not see that)."""
    return World(
        tiers={t.slug: t for t in CostTier.objects.all()},
        classifications={c.slug: c for c in DataClassification.objects.all()},
        versions={v.ref: v for v in ModelVersion.objects.with_related()},
        tasks={t.slug: t for t in Task.objects.select_related("tier", "default_classification")},
        production=PolicySet.objects.get(slug="production"),
        staging=PolicySet.objects.get(slug="staging"),
    )


@pytest.fixture(scope="module")
def _world_rows(django_db_setup, django_db_blocker):
    """The people and the world, with production v1 and staging v1 published through the real
    workflow: written once per module in a transaction rolled back at its end. Each test runs in a
    savepoint inside it (pytest-django's ``db``), so what a test writes is gone for the next one."""
    with django_db_blocker.unblock(), transaction.atomic():
        people = make_people()
        build_world(people)
        production, staging = PolicySet.objects.get(slug="production"), PolicySet.objects.get(slug="staging")
        publish_through_review(production, PRODUCTION_V1, people["bob"], [people["alice"], people["carol"]])
        publish_through_review(staging, STAGING_V1, people["bob"], [people["alice"], people["carol"]])
        yield
        transaction.set_rollback(True)


@pytest.fixture
def world(_world_rows, db) -> World:
    return load_world()


# The named users of tests/conftest.py, here read from the world instead of created per test.
@pytest.fixture
def alice(_world_rows, db) -> User:
    return User.objects.get(username="alice")


@pytest.fixture
def carol(_world_rows, db) -> User:
    return User.objects.get(username="carol")


@pytest.fixture
def bob(_world_rows, db) -> User:
    return User.objects.get(username="bob")


@pytest.fixture
def dave(_world_rows, db) -> User:
    return User.objects.get(username="dave")
