"""Factories for bulk test data: providers, models and model versions."""

from __future__ import annotations

import itertools

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
