"""The demo traffic ``make run`` sends: decision records through the real client, into the explorer and violations."""

from __future__ import annotations

from audits.models import DecisionContent, DecisionRecord, Violation
from demo.traffic import ROUTER_NAME, seed_traffic


def test_demo_traffic_fills_the_explorer_with_a_handful_of_genuine_violations(gateway, live_server, client_for):
    assert seed_traffic(count=300, url=live_server.url) == 305
    records = DecisionRecord.objects.filter(router__name=ROUTER_NAME)
    assert records.values("task").distinct().count() >= 5
    assert records.filter(fallback_used=True).exists() and records.filter(escalated=True).exists()
    # Content of digest-only classifications never left the "router": only digests arrived.
    personal = records.filter(classification="pii")
    assert personal.exists() and not DecisionContent.objects.filter(decision__in=personal).exists()
    assert not personal.filter(input_sha256="").exists()
    flagged = records.filter(has_violation=True)
    assert sorted(flagged.values_list("request_id", flat=True)) == [f"demo-violation-{n}" for n in range(1, 6)]
    kinds = set(Violation.objects.filter(decision__in=flagged).values_list("kind", flat=True))
    assert kinds == {"model-not-allowed", "not-usable", "unknown-policy"}
    page = client_for(_dave()).get("/audit/violations/")
    assert page.status_code == 200 and "demo-violation" in page.content.decode()
    assert seed_traffic(count=300, url=live_server.url) == 0  # once only


def _dave():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username="dave")
