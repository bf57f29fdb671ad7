"""Factories for bulk test data: providers, models and model versions."""

from __future__ import annotations

import itertools

from django.utils import timezone

from compliance.models import DataClassification, MatrixCell, StorageRule
from portfolio.feed import register_router
from portfolio.models import CostTier, PolicySet, Task
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


def routed_world(alice, carol, bob) -> dict:
    """A small routed world: four approved versions, one route with a fallback and an escalation,
    production published and signed (v1), a router for it and one for staging."""
    small = CostTier.objects.create(slug="small", name="Small", rank=1, price_ceiling_micro_usd=500_000)
    CostTier.objects.create(slug="large", name="Large", rank=3, price_ceiling_micro_usd=20_000_000)
    internal = DataClassification.objects.create(slug="internal", name="Internal", level=1)
    DataClassification.objects.create(
        slug="secret", name="Secret", level=5, storage=StorageRule.DIGEST, retention_days=30
    )
    Task.objects.create(slug="ticket-triage", name="Ticket triage", default_classification=internal, tier=small)
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
        MatrixCell.for_pair(version, internal).approve(alice, "internal data is fine")
    policy_set = PolicySet.objects.create(slug="production", name="Production", required_approvals=1)
    change = start_change(policy_set, bob, "first", "", ROUTED_POLICY)
    assert not change.latest_revision().errors, change.latest_revision().errors
    change.submit(bob)
    change.review(carol, "approve", "ok")
    version = publish(change, alice)
    router, token = register_router(policy_set, "edge-1", by=alice)
    staging = PolicySet.objects.create(slug="staging", name="Staging")
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
