"""A small routed world for decision records: two models, one route, a published and signed policy."""

from __future__ import annotations

import pytest
from django.utils import timezone

from ..factories import routed_world


@pytest.fixture
def world(db, alice, carol, bob):
    return routed_world(alice, carol, bob)


def decision(n: int, **fields) -> dict:
    base = {
        "request_id": f"req-{n}",
        # Now: after the world it is judged in (decisions are judged as of the moment they were made).
        "occurred_at": timezone.now().isoformat(),
        "task": "ticket-triage",
        "classification": "internal",
        "model": "acme/small-a@1",
        "policy_version": 1,
        "fallback_used": False,
        "escalated": False,
        "latency_ms": 420,
        "input_tokens": 800,
        "output_tokens": 40,
        "cost_micro_usd": 144,
        "input": f"Ticket {n}: my invoice is wrong",
        "output": "billing",
    }
    return {**base, **fields}
