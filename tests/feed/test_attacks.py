"""Attacks on the policy feed and bad input, each end to end over real HTTP.

A router (``steward_client.PolicyClient``) talks to the live server, or to a tampering proxy on
127.0.0.1 that relays to it and serves altered bytes where a test says. Every refusal leaves the
last good policy in force and its bytes on disk untouched, and reaches Steward as a NACK naming
the reason whenever Steward can be reached.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portfolio import feed
from portfolio.models import KeyRole, KeyStatus, PolicyRelease, Router, RouterReport, SigningKey, TrustRoot
from portfolio.signing import current_root, finish_policy_rotation, private_key, resign, rfc3339, rotate
from steward_client.canonical import canonical_json
from steward_client.dsse import POLICY_PAYLOAD_TYPE, keyid_for, pae, raw_public_key, sign_envelope, verify_signature
from steward_client.verify import (
    DEFAULT_CLOCK_SLACK,
    MAX_ENVELOPE_BYTES,
    VerificationError,
    load_initial_root,
    verify_next_root,
)

from .conftest import Clock, bearer, http, state_files

# --- helpers ------------------------------------------------------------------------------------


def envelope_of(body: bytes) -> dict:
    return json.loads(body)


def payload_of(body: bytes) -> dict:
    return json.loads(base64.b64decode(envelope_of(body)["payload"]))


def signed_by(payload: dict, *keys: Ed25519PrivateKey, payload_type: str = POLICY_PAYLOAD_TYPE) -> bytes:
    """A correctly formed envelope over ``payload`` (canonicalised) signed by ``keys``."""
    return sign_envelope(canonical_json(payload), payload_type, list(keys))


def release_bytes(slug: str, number: int) -> bytes:
    release = PolicyRelease.objects.get(policy_version__policy_set__slug=slug, policy_version__number=number)
    return bytes(release.envelope)


def active_policy_key() -> SigningKey:
    return SigningKey.objects.get(role=KeyRole.POLICY, status=KeyStatus.ACTIVE)


def apply_first(client, version: int = 1) -> dict[str, bytes | None]:
    """Let ``client`` apply a good policy; return the bytes it persisted."""
    result = client.update()
    assert result.outcome == "applied", result.reason
    assert client.version == version
    return state_files(client.state.path)


def assert_refused(client, result, files_before, router: Router, reason: str, *, kept: int | None = 1) -> None:
    """Refused; the last good policy (v``kept``) still in force; nothing on disk changed; NACKed to Steward."""
    assert result.outcome == "failed"
    assert reason in result.reason
    if kept is None:
        assert client.policy is None and result.policy is None
    else:
        assert client.policy is not None and client.policy.version == kept
        assert result.policy is not None and result.policy.version == kept
    assert state_files(client.state.path) == files_before
    router.refresh_from_db()
    assert router.last_status == "nack"
    assert reason in router.last_error
    report = RouterReport.objects.filter(router=router).first()  # newest first
    assert report.status == "nack" and reason in report.error


# --- forged and altered bundles -----------------------------------------------------------------


def test_a_changed_payload_byte_is_refused(tamper, client_factory, production_router):
    client = client_factory(url=tamper.url)
    before = apply_first(client)

    def change_one_byte(body: bytes) -> bytes:
        envelope = envelope_of(body)
        payload = base64.b64decode(envelope["payload"])
        assert payload.count(b"gpt-4o-mini@2024-07-18") >= 1
        changed = payload.replace(b"gpt-4o-mini@2024-07-18", b"gpt-4o-mini@2024-07-19", 1)
        assert sum(a != b for a, b in zip(payload, changed, strict=True)) == 1
        envelope["payload"] = base64.b64encode(changed).decode()
        return canonical_json(envelope)

    tamper.bundle = change_one_byte
    result = client.update()
    assert_refused(client, result, before, production_router[0], "signature check failed: 0 of 1")
    assert client.policy.route("ticket-triage", "internal").model == "openai/gpt-4o-mini@2024-07-18"


def test_a_changed_signature_is_refused(tamper, client_factory, production_router):
    client = client_factory(url=tamper.url)
    before = apply_first(client)

    def flip_a_bit(body: bytes) -> bytes:
        envelope = envelope_of(body)
        signature = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
        signature[10] ^= 0x01
        envelope["signatures"][0]["sig"] = base64.b64encode(bytes(signature)).decode()
        return canonical_json(envelope)

    tamper.bundle = flip_a_bit
    result = client.update()
    assert_refused(client, result, before, production_router[0], "signature check failed: 0 of 1")


def test_a_signature_by_an_unknown_keyid_is_refused(tamper, client_factory, production_router):
    client = client_factory(url=tamper.url)
    before = apply_first(client)
    stranger = Ed25519PrivateKey.generate()

    def newer_policy_signed_by_a_stranger(body: bytes) -> bytes:
        payload = payload_of(body)
        payload["version"] += 1
        payload["routes"][0]["model"] = "google/gemini-2.0-flash@001"
        return signed_by(payload, stranger)

    tamper.bundle = newer_policy_signed_by_a_stranger
    result = client.update()
    assert_refused(client, result, before, production_router[0], "signature check failed: 0 of 1")
    served = envelope_of(newer_policy_signed_by_a_stranger(release_bytes("production", 1)))
    assert served["signatures"][0]["keyid"] == keyid_for(raw_public_key(stranger.public_key()))


def test_a_key_no_longer_in_the_trust_root_is_refused(tamper, client_factory, production, production_router):
    client = client_factory(url=tamper.url)
    apply_first(client)
    retired = active_policy_key()
    rotate(KeyRole.POLICY)
    finish_policy_rotation(force=True)  # root v3: the old policy key is gone
    resign(production)
    assert client.update().outcome == "applied"  # v2, signed by the new key; the client walks to root v3
    assert client.version == 2 and client.root.version == 3
    assert retired.keyid not in client.root.roles["policy"].keyids
    before = state_files(client.state.path)

    def signed_by_the_retired_key(body: bytes) -> bytes:
        payload = payload_of(body)
        payload["version"] += 1
        return signed_by(payload, private_key(retired))

    tamper.bundle = signed_by_the_retired_key
    result = client.update()
    assert_refused(client, result, before, production_router[0], "signature check failed: 0 of 1", kept=2)


def test_the_wrong_payload_type_is_refused_even_when_signed(tamper, client_factory, production_router):
    client = client_factory(url=tamper.url)
    before = apply_first(client)
    key = private_key(active_policy_key())

    def as_plain_json(body: bytes) -> bytes:
        payload = payload_of(body)
        payload["version"] += 1
        return signed_by(payload, key, payload_type="application/json")

    tamper.bundle = as_plain_json
    result = client.update()
    assert_refused(client, result, before, production_router[0], "unknown payloadType 'application/json'")


def test_a_bundle_for_another_policy_set_is_refused(tamper, client_factory, production_router, staging_token, live_url):
    client = client_factory(url=tamper.url)
    before = apply_first(client)
    staging_bundle = http("GET", f"{live_url}/api/v1/policy-sets/staging/bundle", bearer(staging_token)).body
    assert payload_of(staging_bundle)["policy_set"] == "staging"

    tamper.bundle = lambda body: staging_bundle
    result = client.update()
    assert_refused(client, result, before, production_router[0], "bundle is for policy set 'staging', not 'production'")


def test_an_older_version_is_refused_with_an_alarm(tamper, client_factory, production, production_router):
    client = client_factory(url=tamper.url)
    apply_first(client)
    resign(production)
    assert client.update().outcome == "applied" and client.version == 2
    before = state_files(client.state.path)
    router = production_router[0]
    router.refresh_from_db()
    assert (router.last_status, router.applied_version) == ("ack", 2)

    version_1 = release_bytes("production", 1)
    tamper.bundle = lambda body: version_1
    result = client.update()
    assert result.alarm is True
    assert result.reason.startswith("ALARM rollback refused: offered v1 is older than v2 in force")
    assert_refused(client, result, before, router, "rollback refused: offered v1 is older than v2", kept=2)
    assert router.applied_version == 2  # the NACK names the version still in force


def test_an_expired_policy_is_refused(client_factory, production_router):
    router = production_router[0]
    clock = Clock()
    client = client_factory(clock=clock)
    before = apply_first(client)
    expires = client._policy.expires

    clock.fixed = expires + DEFAULT_CLOCK_SLACK - dt.timedelta(seconds=1)  # inside the slack: still good
    assert client.update().outcome == "unchanged"
    assert client.policy.version == 1

    clock.fixed = expires + DEFAULT_CLOCK_SLACK + dt.timedelta(seconds=1)
    result = client.update()  # the server answers 304: nothing newer exists
    assert_refused(client, result, before, router, "has expired and none newer is offered", kept=None)

    fresh = client_factory("fresh", clock=clock)  # a router that never saw it is offered it with a 200
    result = fresh.update()
    assert result.outcome == "failed" and "policy version 1 expired at" in result.reason
    assert fresh.policy is None and state_files(fresh.state.path)["envelope.json"] is None
    router.refresh_from_db()
    assert router.last_status == "nack" and "expired at" in router.last_error


def _forged_root(version: int, key: Ed25519PrivateKey) -> bytes:
    """A well-formed trust root ``version`` whose only root and policy key is ``key``, signed by it alone."""
    public = raw_public_key(key.public_key())
    keyid = keyid_for(public)
    signed = {
        "_type": "steward.root",
        "spec_version": "1",
        "version": version,
        "expires": rfc3339(timezone.now() + dt.timedelta(days=365)),
        "keys": {keyid: {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": public.hex()}}},
        "roles": {"root": {"keyids": [keyid], "threshold": 1}, "policy": {"keyids": [keyid], "threshold": 1}},
    }
    signature = base64.b64encode(key.sign(canonical_json(signed))).decode()
    return canonical_json({"signed": signed, "signatures": [{"keyid": keyid, "sig": signature}]})


def test_a_trust_root_not_signed_by_the_previous_one_is_refused(tamper, client_factory, production_router):
    client = client_factory(url=tamper.url)
    before = apply_first(client)
    attacker = Ed25519PrivateKey.generate()
    forged_root = _forged_root(2, attacker)

    def serve_forged_root(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(forged_root)))
        handler.end_headers()
        handler.wfile.write(forged_root)

    def policy_under_the_forged_root(body: bytes) -> bytes:
        payload = payload_of(body)
        payload["version"] += 1
        payload["trust_version"] = 2
        return signed_by(payload, attacker)

    tamper.overrides["/api/v1/trust/2.root.json"] = serve_forged_root
    tamper.bundle = policy_under_the_forged_root
    result = client.update()
    assert ("GET", "/api/v1/trust/2.root.json") in tamper.requests
    assert_refused(client, result, before, production_router[0], "trust root 2 is not signed by root 1's keys")
    assert client.root.version == 1
    assert not (client.state.path / "roots" / "2.root.json").exists()


def test_a_response_over_the_size_cap_is_refused(tamper, client_factory, production_router):
    router = production_router[0]
    small = client_factory("small", max_bytes=1024)  # the real bundle is several kilobytes
    result = small.update()
    assert result.outcome == "failed" and "over the size cap of 1024 bytes" in result.reason
    assert small.policy is None and state_files(small.state.path)["envelope.json"] is None
    router.refresh_from_db()
    assert router.last_status == "nack" and "over the size cap" in router.last_error

    client = client_factory(url=tamper.url)
    before = apply_first(client)
    huge = b'{"payloadType": "' + b"A" * (MAX_ENVELOPE_BYTES + 1024) + b'"}'
    tamper.bundle = lambda body: huge
    result = client.update()
    assert_refused(client, result, before, router, f"over the size cap of {MAX_ENVELOPE_BYTES} bytes")


def test_a_truncated_body_is_refused(tamper, client_factory, production_router):
    client = client_factory(url=tamper.url)
    before = apply_first(client)
    body = release_bytes("production", 1)

    def truncated(handler) -> None:
        # Announce the whole body (and its true ETag), send half of it, hang up.
        handler.send_response(200)
        handler.send_header("Content-Type", "application/vnd.dsse.envelope+json")
        handler.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        handler.close_connection = True

    tamper.overrides["/api/v1/policy-sets/production/bundle"] = truncated
    result = client.update()
    assert_refused(client, result, before, production_router[0], "truncated response")


def test_the_server_down_keeps_the_last_good_policy(tamper, client_factory, production_router):
    client = client_factory(url=tamper.url, timeout=2.0)
    before = apply_first(client)
    tamper.stop()
    result = client.update()
    assert result.outcome == "failed"
    assert result.reason.startswith(f"cannot reach {tamper.url}")
    assert client.policy.version == 1 and result.policy.version == 1
    assert client.policy.route("ticket-triage", "internal").model == "openai/gpt-4o-mini@2024-07-18"
    assert state_files(client.state.path) == before
    router = production_router[0]
    router.refresh_from_db()
    assert router.last_status == "ack" and router.applied_version == 1  # no NACK could be sent

    restarted = client_factory(url=tamper.url, timeout=2.0)  # a restart reads the last good policy from disk
    assert restarted.policy.version == 1


def test_clock_skew_within_the_slack_is_accepted_and_beyond_it_refused(client_factory, production, production_router):
    client = client_factory()
    apply_first(client)
    ahead = timezone.now() + DEFAULT_CLOCK_SLACK - dt.timedelta(minutes=2)
    resign(production, now=ahead)  # v2 issued three minutes ahead of this router's clock
    result = client.update()
    assert result.outcome == "applied" and client.version == 2
    before = state_files(client.state.path)

    resign(production, now=timezone.now() + DEFAULT_CLOCK_SLACK + dt.timedelta(minutes=5))
    result = client.update()
    assert_refused(client, result, before, production_router[0], "policy issued in the future", kept=2)


# --- authentication -----------------------------------------------------------------------------


def test_a_bad_token_gets_the_same_401_whether_or_not_the_router_exists(live_url, production_router):
    router, token = production_router
    url = f"{live_url}/api/v1/policy-sets/production/bundle"
    assert http("GET", url, bearer(token)).status == 200  # known, and now cached
    feed.revoke_router(router, by=None)

    revoked = http("GET", url, bearer(token))
    unknown = http("GET", url, bearer(feed.new_router_token()))
    missing = http("GET", url)
    for response in (revoked, unknown, missing):
        assert response.status == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="steward-feed"'
    assert revoked.body == unknown.body == missing.body == b'{"detail": "Invalid or missing router token."}'

    status_url = f"{live_url}/api/v1/policy-sets/production/status"
    ack = json.dumps({"status": "ack", "version": 1}).encode()
    statuses = [
        http("POST", status_url, {**bearer(t), "Content-Type": "application/json"}, ack)
        for t in (token, feed.new_router_token())
    ]
    assert [r.status for r in statuses] == [401, 401] and statuses[0].body == statuses[1].body == unknown.body
    assert not RouterReport.objects.exists()


def test_a_staging_token_on_production_gets_403(live_url, staging_router):
    router, token = staging_router
    bundle = http("GET", f"{live_url}/api/v1/policy-sets/production/bundle", bearer(token))
    assert bundle.status == 403 and b"production" in bundle.body and b"payload" not in bundle.body
    status = http(
        "POST",
        f"{live_url}/api/v1/policy-sets/production/status",
        {**bearer(token), "Content-Type": "application/json"},
        json.dumps({"status": "nack", "error": "forged"}).encode(),
    )
    assert status.status == 403
    assert not RouterReport.objects.exists()
    assert http("GET", f"{live_url}/api/v1/policy-sets/staging/bundle", bearer(token)).status == 200


# --- the cheap poll path ------------------------------------------------------------------------


def test_a_matching_etag_answers_304_without_an_orm_query(live_url, production_token):
    url = f"{live_url}/api/v1/policy-sets/production/bundle"
    first = http("GET", url, bearer(production_token))
    assert first.status == 200
    etag = first.headers["etag"]
    assert etag == f'"{hashlib.sha256(first.body).hexdigest()}"'
    assert first.headers["x-policy-version"] == "1" and first.headers["cache-control"] == "no-cache"
    assert first.headers["content-type"] == "application/vnd.dsse.envelope+json"

    over_http = http("GET", url, {**bearer(production_token), "If-None-Match": etag})
    assert (over_http.status, over_http.body, over_http.headers["etag"]) == (304, b"", etag)

    client = Client()
    with CaptureQueriesContext(connection) as queries:
        response = client.get(
            "/api/v1/policy-sets/production/bundle",
            HTTP_AUTHORIZATION=f"Bearer {production_token}",
            HTTP_IF_NONE_MATCH=etag,
        )
    assert response.status_code == 304 and response["ETag"] == etag and response.content == b""
    assert response["X-Policy-Version"] == "1"
    assert len(queries) == 0, [q["sql"] for q in queries]

    stale = client.get(
        "/api/v1/policy-sets/production/bundle",
        HTTP_AUTHORIZATION=f"Bearer {production_token}",
        HTTP_IF_NONE_MATCH='"0000"',
    )
    assert stale.status_code == 200 and stale.content == first.body


def test_polls_do_not_write_last_seen_until_the_flush(production_router):
    router, token = production_router
    client = Client()
    with CaptureQueriesContext(connection) as queries:
        for _ in range(10):
            response = client.get("/api/v1/policy-sets/production/bundle", HTTP_AUTHORIZATION=f"Bearer {token}")
            assert response.status_code == 200
    writes = [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith("SELECT")]
    assert writes == []
    router.refresh_from_db()
    assert router.last_seen_at is None

    with CaptureQueriesContext(connection) as queries:
        assert feed.flush_last_seen() == 1
    updates = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "portfolio_router"')]
    assert len(updates) == 1
    router.refresh_from_db()
    assert timezone.now() - router.last_seen_at < dt.timedelta(seconds=30)
    assert feed.flush_last_seen() == 0  # nothing new seen since


# --- keys and trust roots -----------------------------------------------------------------------


def test_policy_key_rotation_signs_with_both_then_only_the_new_key(
    client_factory, production, staging, production_router, staging_token
):
    old = active_policy_key()
    new, root_2 = rotate(KeyRole.POLICY)
    assert root_2.version == 2
    resign(production)
    release = PolicyRelease.objects.get(policy_version__policy_set=production, policy_version__number=2)
    assert sorted(release.keyids) == sorted([old.keyid, new.keyid])
    envelope = envelope_of(bytes(release.envelope))
    message = pae(envelope["payloadType"], base64.b64decode(envelope["payload"]))
    publics = {key.keyid: bytes.fromhex(key.public_key) for key in (old, new)}
    assert {s["keyid"] for s in envelope["signatures"]} == set(publics)
    for signature in envelope["signatures"]:
        assert verify_signature(publics[signature["keyid"]], base64.b64decode(signature["sig"]), message)

    client = client_factory()  # ships root v1
    assert client.root.version == 1
    assert client.update().outcome == "applied"
    assert client.version == 2 and client.root.version == 2
    assert (client.state.path / "roots" / "2.root.json").read_bytes() == bytes(root_2.document)
    router = production_router[0]
    router.refresh_from_db()
    assert router.trust_version == 2

    # The staging router still reports root v1: the old key keeps signing.
    assert finish_policy_rotation() is None
    assert SigningKey.objects.get(pk=old.pk).status == KeyStatus.RETIRING
    resign(staging)
    staging_client = client_factory("staging", policy_set="staging", token=staging_token)
    assert staging_client.update().outcome == "applied" and staging_client.root.version == 2

    root_3 = finish_policy_rotation()
    assert root_3 is not None and root_3.version == 3
    assert SigningKey.objects.get(pk=old.pk).status == KeyStatus.RETIRED
    resign(production)
    release = PolicyRelease.objects.get(policy_version__policy_set=production, policy_version__number=3)
    assert release.keyids == [new.keyid]
    assert [s["keyid"] for s in envelope_of(bytes(release.envelope))["signatures"]] == [new.keyid]
    assert client.update().outcome == "applied"
    assert client.version == 3 and client.root.version == 3
    assert old.keyid not in client.root.roles["policy"].keyids

    restarted = client_factory()  # shipped root v1, walked forward again from the saved roots
    assert restarted.root.version == 3 and restarted.version == 3


def test_root_rotation_is_signed_by_the_old_and_the_new_root_keys(client_factory, production, live_url):
    root_1 = current_root()
    old_key = SigningKey.objects.get(role=KeyRole.ROOT, status=KeyStatus.ACTIVE)
    new_key, root_2 = rotate(KeyRole.ROOT)
    document = json.loads(bytes(root_2.document))
    assert {s["keyid"] for s in document["signatures"]} == {old_key.keyid, new_key.keyid}
    assert document["signed"]["roles"]["root"]["keyids"] == [new_key.keyid]

    trusted = load_initial_root(bytes(root_1.document))
    assert verify_next_root(trusted, bytes(root_2.document)).version == 2
    for missing, message in ((old_key, "not signed by root 1's keys"), (new_key, "not signed by its own root keys")):
        partial = {**document, "signatures": [s for s in document["signatures"] if s["keyid"] != missing.keyid]}
        with pytest.raises(VerificationError, match=message):
            verify_next_root(trusted, canonical_json(partial))
    with pytest.raises(VerificationError, match="expected trust root 2, got 1"):
        verify_next_root(trusted, bytes(root_1.document))

    # Served as every version stays published; a router walks 1 → 2 → 3 over HTTP.
    third_key, root_3 = rotate(KeyRole.ROOT)
    signers = {s["keyid"] for s in json.loads(bytes(root_3.document))["signatures"]}
    assert signers == {new_key.keyid, third_key.keyid}
    for root in (root_1, root_2, root_3):
        response = http("GET", f"{live_url}/api/v1/trust/{root.version}.root.json")
        assert response.status == 200 and response.body == bytes(root.document)
        assert response.headers["x-trust-version"] == str(root.version)
    assert http("GET", f"{live_url}/api/v1/trust/root.json").body == bytes(root_3.document)
    assert http("GET", f"{live_url}/api/v1/trust/4.root.json").status == 404
    resign(production)
    client = client_factory()
    assert client.update().outcome == "applied"
    assert client.root.version == 3 and client.version == 2
    assert TrustRoot.objects.count() == 3
