"""Without a policy in force the proxy refuses everything (503), and it never routes on an expired one.

Two proxies of their own: one that has never received a policy and cannot reach Steward, and one
whose saved policy has expired while the only newer one Steward offers has expired too (it NACKs
it). Neither lets a request reach a model.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator

import pytest
from django.utils import timezone

from portfolio.models import PolicySet, PolicyVersion, RouterReport, SigningKey, TrustRoot
from portfolio.signing import compile_payload, private_key, resign
from steward_client.dsse import POLICY_PAYLOAD_TYPE, sign_envelope
from steward_client.state import StateDir

from .conftest import POLICY_SET, Gateway, Proxy, free_port, refusal, start_proxy, stop_proxy, wait_for, wait_ready


def expired_envelope(number: int) -> bytes:
    """Version ``number`` of the gateway set signed with Steward's policy keys, as it was two days ago."""
    root = TrustRoot.objects.order_by("-version").first()
    issued = timezone.now() - dt.timedelta(days=2)
    payload = compile_payload(
        PolicyVersion.objects.get(policy_set__slug=POLICY_SET, number=number),
        issued,
        issued + dt.timedelta(days=1),
        root.version,
    )
    keys = SigningKey.objects.filter(keyid__in=root.role_keyids["policy"]).order_by("keyid")
    return sign_envelope(payload, POLICY_PAYLOAD_TYPE, [private_key(key) for key in keys])


@pytest.fixture(scope="module")
def proxies(gateway: Gateway, tmp_path_factory, django_db_blocker) -> Iterator[dict[str, Proxy]]:
    with django_db_blocker.unblock():
        # What Steward offers now expired an hour ago: a re-signing that ran long ago and nothing since.
        policy_set = PolicySet.objects.get(slug=POLICY_SET)
        resign(policy_set, now=timezone.now() - dt.timedelta(days=policy_set.policy_lifetime_days, hours=1))
        stale = expired_envelope(1)
    expired_dir = tmp_path_factory.mktemp("expired")
    state = StateDir(expired_dir / "state" / "policy")
    etag = f'"{hashlib.sha256(stale).hexdigest()}"'
    state.save_policy(stale, etag, {"policy_set": POLICY_SET, "version": 1})
    unreachable = f"http://127.0.0.1:{free_port()}"
    started = {
        "expired": start_proxy(expired_dir, url=gateway.url, token=gateway.token, root=gateway.root, wait=False),
        "missing": start_proxy(
            tmp_path_factory.mktemp("missing"), url=unreachable, token=gateway.token, root=gateway.root, wait=False
        ),
    }
    try:
        for proxy in started.values():
            wait_ready(proxy)
        yield started
    finally:
        for proxy in started.values():
            stop_proxy(proxy)


@pytest.fixture(autouse=True)
def _healthy_upstream(upstream) -> None:
    upstream.reset()


def test_without_a_policy_every_request_is_a_503_and_reaches_no_model(proxies, upstream):
    before = len(upstream.calls)
    for body in ({"classification": "public"}, {"tags": ["internal"]}, {}):
        response = proxies["missing"].chat("ticket-triage", **body)
        got = refusal(response)
        assert (got["status"], got["rule"]) == (503, "policy-missing"), got
    assert len(upstream.calls) == before


def test_an_expired_policy_routes_nothing_and_an_expired_bundle_is_nacked(proxies, gateway, upstream):
    before = len(upstream.calls)
    response = proxies["expired"].chat("ticket-triage", classification="public")
    got = refusal(response)
    assert (got["status"], got["rule"]) == (503, "policy-expired"), got
    assert "gateway v1" in got["message"]
    assert len(upstream.calls) == before
    # Steward's v2 has expired too: the proxy refuses it and says why; the fleet sees the NACK.
    report = wait_for(
        lambda: RouterReport.objects.filter(router_id=gateway.router_id, status="nack").first(), 20, "the NACK"
    )
    assert "expired" in report.error and "2" in report.error
    assert gateway.router().last_status == "nack"
    assert json.loads(proxies["expired"].chat("ticket-triage", classification="public").body)["error"]["param"] == (
        "policy-expired"
    )
