"""Factories for test data of every app: the registry (providers, models, versions, credentials),
compliance (certifications, holdings, classifications, matrix cells), portfolio (tiers, tasks,
policy sets, policies published through review, routers) and a small routed world for decisions."""

from __future__ import annotations

import datetime as dt
import itertools

from django.utils import timezone

from compliance.models import Certification, CertificationHolding, DataClassification, MatrixCell, StorageRule
from portfolio.feed import register_router
from portfolio.models import CostTier, PolicySet, PolicyVersion, Task
from portfolio.publishing import publish, start_change
from registry.models import (
    CredentialStatus,
    EndpointCredential,
    Model,
    ModelVersion,
    Provider,
    Status,
    VersionTransition,
)

_counter = itertools.count(1)


def make_provider(**fields) -> Provider:
    n = next(_counter)
    defaults = {"name": f"Provider {n}", "slug": f"provider-{n}", "regions": ["eu-west-1", "us-east-1"]}
    return Provider.objects.create(**{**defaults, **fields})


def make_model(provider: Provider | None = None, **fields) -> Model:
    n = next(_counter)
    defaults = {"name": f"Model {n}", "slug": f"model-{n}", "family": "test", "context_window": 128_000}
    return Model.objects.create(provider=provider or make_provider(), **{**defaults, **fields})


def version_fields(model: Model, **fields) -> dict:
    """Valid proposal fields for ``ModelVersion.propose``."""
    n = next(_counter)
    defaults = {
        "model": model,
        "version": f"v{n}",
        "region": "eu-west-1",
        "base_url": "https://api.example.com/v1",
        "provider_model_id": f"model-{n}",
        "api_key_env": "EXAMPLE_API_KEY",
        "input_price_micro_usd": 150_000,
        "output_price_micro_usd": 600_000,
        "cost_tier": "small",
    }
    return {**defaults, **fields}


def make_version(proposed_by, model: Model | None = None, status: str = Status.PROPOSED, **fields) -> ModelVersion:
    """A version in ``status``, saved directly (no lifecycle checks): for bulk data only."""
    version = ModelVersion(proposed_by=proposed_by, status=status, **version_fields(model or make_model(), **fields))
    version.save()
    VersionTransition.objects.create(
        version=version, action="propose", from_status="", to_status=Status.PROPOSED, actor=proposed_by
    )
    return version


def make_versions(count: int, proposed_by, **fields) -> list[ModelVersion]:
    """``count`` versions spread over a few providers, models, tiers, regions and statuses."""
    providers = [make_provider() for _ in range(4)]
    models = [make_model(provider=providers[i % 4]) for i in range(8)]
    tiers = ["small", "medium", "large"]
    regions = ["eu-west-1", "us-east-1", "eu-central-1"]
    statuses = [Status.PROPOSED, Status.APPROVED, Status.APPROVED, Status.DEPRECATED]
    return [
        make_version(
            proposed_by,
            model=models[i % 8],
            status=statuses[(i // 3) % 4],
            cost_tier=tiers[i % 3],
            region=regions[i % 3],
            **fields,
        )
        for i in range(count)
    ]


def approved_credential(
    env_var: str = "DEMO_ENDPOINT_API_KEY", hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> EndpointCredential:
    """An approved binding of ``env_var`` to ``hosts``, saved directly (no review): for test data only."""
    credential, _ = EndpointCredential.objects.update_or_create(
        env_var=env_var, defaults={"hosts": list(hosts), "status": CredentialStatus.APPROVED}
    )
    return credential


ROUTED_POLICY = """\
default: deny
routes:
  - task: ticket-triage
    classification: internal
    model: acme/small-a@1
    fallbacks: [beta/small-b@1]
    escalation:
      to: acme/large-a@1
      when: [low_confidence]
      confidence_threshold_bp: 7000
      max_rate_bp: 1000
"""


# --- compliance -----------------------------------------------------------------------------------

CERTIFICATION_NAMES = {"soc2-type2": "SOC 2 Type II", "gdpr-dpa": "GDPR DPA", "iso27001": "ISO/IEC 27001"}


def certification(slug: str) -> Certification:
    """A certification of the catalogue (a transactional test's flush may have removed it: brought back)."""
    name = CERTIFICATION_NAMES.get(slug, slug.upper())
    return Certification.objects.get_or_create(slug=slug, defaults={"name": name})[0]


def make_classification(slug: str, level: int = 1, *, requires: tuple[str, ...] = (), **fields) -> DataClassification:
    defaults = {"name": slug.replace("-", " ").capitalize()}
    classification = DataClassification.objects.create(slug=slug, level=level, **{**defaults, **fields})
    if requires:
        classification.required_certifications.set([certification(c) for c in requires])
    return classification


def make_holding(holder, slug: str, recorded_by, *, days_left: int = 300, **fields) -> CertificationHolding:
    """``holder`` (a provider or a model version) holds certification ``slug``, valid for ``days_left`` more days."""
    today = timezone.now().date()
    owner = {"provider": holder} if isinstance(holder, Provider) else {"model_version": holder}
    defaults = {
        "valid_from": today - dt.timedelta(days=300),
        "valid_until": today + dt.timedelta(days=days_left),
        "evidence_url": f"https://trust.example.com/{slug}.pdf",
    }
    return CertificationHolding.objects.create(
        certification=certification(slug), recorded_by=recorded_by, **owner, **{**defaults, **fields}
    )


def approve_cell(version: ModelVersion, classification: DataClassification, officer, why: str = "Checked.") -> None:
    """The matrix cell approved through ``MatrixCell.approve``, as an officer does it."""
    MatrixCell.for_pair(version, classification).approve(officer, why)


# --- portfolio ------------------------------------------------------------------------------------


def make_tier(slug: str, rank: int, ceiling_micro_usd: int) -> CostTier:
    return CostTier.objects.create(slug=slug, name=slug.title(), rank=rank, price_ceiling_micro_usd=ceiling_micro_usd)


def make_task(slug: str, classification: DataClassification, tier: CostTier, **fields) -> Task:
    defaults = {"name": slug.replace("-", " ").capitalize()}
    return Task.objects.create(slug=slug, default_classification=classification, tier=tier, **{**defaults, **fields})


def make_policy_set(slug: str, **fields) -> PolicySet:
    return PolicySet.objects.create(slug=slug, **{"name": slug.replace("-", " ").capitalize(), **fields})


def publish_through_review(
    policy_set: PolicySet,
    document: str,
    author,
    officers: list,
    *,
    title: str = "",
    rationale: str = "Tests.",
    comment: str = "Looks right.",
    publisher=None,
) -> PolicyVersion:
    """Write, submit, approve (by as many ``officers`` as the set needs) and publish ``document``
    (by ``publisher``, else the first officer)."""
    change = start_change(policy_set, author, title or f"Change {policy_set.slug}", rationale, document)
    assert not change.latest_revision().errors, change.latest_revision().errors
    change.submit(author)
    for officer in officers[: policy_set.required_approvals]:
        change.review(officer, "approve", comment)
    return publish(change, publisher or officers[0])


# --- a routed world, for decision records -----------------------------------------------------------


def routed_world(alice, carol, bob) -> dict:
    """A small routed world: four approved versions, one route with a fallback and an escalation,
    production published and signed (v1), a router for it and one for staging."""
    small = make_tier("small", 1, 500_000)
    make_tier("large", 3, 20_000_000)
    internal = make_classification("internal", 1)
    make_classification("secret", 5, storage=StorageRule.DIGEST, retention_days=30)
    make_task("ticket-triage", internal, small)
    acme, beta = make_provider(name="Acme", slug="acme"), make_provider(name="Beta", slug="beta")
    versions = {
        "a": make_version(bob, model=make_model(provider=acme, slug="small-a"), version="1", status=Status.APPROVED),
        "b": make_version(bob, model=make_model(provider=beta, slug="small-b"), version="1", status=Status.APPROVED),
        "large": make_version(
            bob,
            model=make_model(provider=acme, slug="large-a"),
            version="1",
            status=Status.APPROVED,
            cost_tier="large",
            input_price_micro_usd=3_000_000,
        ),
        "other": make_version(bob, model=make_model(provider=beta, slug="other"), version="1", status=Status.APPROVED),
    }
    for version in versions.values():
        approve_cell(version, internal, alice, "internal data is fine")
    policy_set = make_policy_set("production", required_approvals=1)
    version = publish_through_review(
        policy_set, ROUTED_POLICY, bob, [carol], title="first", rationale="", comment="ok", publisher=alice
    )
    router, token = register_router(policy_set, "edge-1", by=alice)
    staging = make_policy_set("staging")
    other_router, other_token = register_router(staging, "edge-staging", by=alice)
    return {
        "versions": versions,
        "policy_version": version,
        "router": router,
        "token": token,
        "other_token": other_token,
        "now": timezone.now(),
        "policy_set": policy_set,
    }


def decision_rows(
    count,
    task,
    classification,
    model,
    provider,
    tokens_in,
    tokens_out,
    latency_ms,
    hour,
    cost=0,
    policy_set="production",
):
    """``count`` decision records of one kind within ``hour``, as ingest hands them to the rollups."""
    return [
        {
            "occurred_at": hour + dt.timedelta(minutes=n % 60),
            "policy_set": policy_set,
            "task": task,
            "classification": classification,
            "model": model,
            "provider": provider,
            "tier": "",
            "cost_micro_usd": cost,
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "fallback_used": False,
            "escalated": False,
            "has_violation": False,
            "latency_ms": latency_ms,
        }
        for n in range(count)
    ]
