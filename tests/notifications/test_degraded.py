"""Without the Celery broker a person's action still goes through at once (no 500, no wait); what it
should have told is told by the next sweep once the broker answers (docs/notifications.md)."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request

import pytest
from django.conf import settings
from django.utils import timezone

from notifications.models import Channel, Delivery, Kind, Notification
from notifications.sweep import sweep
from registry.models import ModelVersion
from steward.models import ApiToken
from steward.roles import sync_role_permissions
from tests.factories import make_model, make_provider
from tests.outage import closed_port, steward_server

pytestmark = pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis"), reason="takes the Redis broker away from one Steward process"
)


@pytest.fixture
def people(transactional_db, request) -> dict:
    sync_role_permissions()  # a transactional test's flush removed the role groups
    return {name: request.getfixturevalue(name) for name in ("alice", "carol", "bob")}


def test_a_proposal_without_the_broker_succeeds_and_the_sweep_tells_the_officers(people, tmp_path) -> None:
    make_model(provider=make_provider(name="Mistral AI", slug="mistral"), slug="mistral-large")
    sweep()  # the first sweep marks where the catching up starts
    _, token = ApiToken.issue(people["bob"], "ci")
    body = {
        "model": "mistral/mistral-large",
        "version": "2411",
        "region": "eu-west-1",
        "base_url": "https://api.mistral.ai/v1",
        "provider_model_id": "mistral-large-2411",
        "api_key_env": "MISTRAL_API_KEY",
        "input_price_micro_usd": 2_000_000,
        "output_price_micro_usd": 6_000_000,
        "cost_tier": "large",
    }
    with (
        closed_port() as port,
        steward_server(
            tmp_path,
            CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/9",
            STEWARD_REDIS_URL=settings.CELERY_BROKER_URL,  # only the broker is away
        ) as server,
    ):
        request = urllib.request.Request(
            f"{server.url}/api/v1/model-versions",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        began = time.monotonic()
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - 127.0.0.1
            assert answer.status == 201
        assert time.monotonic() - began < 3.0
        assert "not queued, the sweep will catch up" in server.log_text()
    assert ModelVersion.objects.filter(ref="mistral/mistral-large@2411").exists()
    assert not Notification.objects.exists()

    assert sweep()["missed"] == 0  # too recent: its task may still be on its way
    assert sweep(timezone.now() + dt.timedelta(minutes=3))["missed"] == 2
    told = Notification.objects.filter(kind=Kind.AWAITING_DECISION, subject__contains="mistral/mistral-large@2411")
    assert sorted(told.values_list("user__username", flat=True)) == ["alice", "carol"]
    assert Delivery.objects.filter(channel=Channel.EMAIL).count() == 2
    assert sweep(timezone.now() + dt.timedelta(minutes=3))["missed"] == 0  # told once
