"""docs/policy-feed.md's worked example, re-verified from the document's own text with steward_client.

The example's blocks are marked ``<!-- example:NAME -->`` before their code fence. If the doc, the
protocol or the client drift apart, this fails.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from steward_client import PolicyClient
from steward_client.canonical import canonical_json
from steward_client.client import FetchError
from steward_client.dsse import POLICY_PAYLOAD_TYPE, keyid_for, pae, raw_public_key, sign_envelope
from steward_client.policy import Policy
from steward_client.verify import VerificationError, load_initial_root, open_envelope, verify_next_root

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy-feed.md"
BLOCK = re.compile(r"<!-- example:([a-z0-9-]+) -->\n```[a-z]*\n(.*?)\n```", re.DOTALL)
NOW = dt.datetime(2025, 6, 2, 10, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    blocks = dict(BLOCK.findall(DOC.read_text(encoding="utf-8")))
    expected = {
        "keys",
        "root",
        "payload-pretty",
        "payload",
        "pae-prefix",
        "pae-sha256",
        "signature",
        "envelope",
        "etag",
    }
    assert set(blocks) == expected
    return blocks


def test_the_keys_come_from_the_stated_seeds(example):
    keys = json.loads(example["keys"])
    for role, seed in (("root", bytes(range(32))), ("policy", bytes(range(32, 64)))):
        assert keys[role]["seed_hex"] == seed.hex()
        public = raw_public_key(Ed25519PrivateKey.from_private_bytes(seed).public_key())
        assert keys[role]["public_hex"] == public.hex()
        assert keys[role]["keyid"] == keyid_for(public) == hashlib.sha256(public).hexdigest()


def test_the_trust_root_verifies_and_lists_the_keys(example):
    keys = json.loads(example["keys"])
    raw = example["root"].encode()
    root = load_initial_root(raw)
    assert root.version == 1
    assert root.roles["root"].keyids == {keys["root"]["keyid"]}
    assert root.roles["policy"].keyids == {keys["policy"]["keyid"]}
    assert canonical_json(json.loads(raw)) == raw  # served as canonical JSON
    signed = json.loads(raw)["signed"]
    seed = bytes.fromhex(keys["root"]["seed_hex"])
    signature = Ed25519PrivateKey.from_private_bytes(seed).sign(canonical_json(signed))
    assert json.loads(raw)["signatures"] == [
        {"keyid": keys["root"]["keyid"], "sig": base64.b64encode(signature).decode()}
    ]


def test_payload_pae_signature_and_envelope_agree(example):
    keys = json.loads(example["keys"])
    payload = example["payload"].encode()
    assert json.loads(example["payload-pretty"]) == json.loads(payload)
    assert canonical_json(json.loads(payload)) == payload

    prefix = json.loads(example["pae-prefix"])
    message = pae(POLICY_PAYLOAD_TYPE, payload)
    assert prefix == f"DSSEv1 {len(POLICY_PAYLOAD_TYPE)} {POLICY_PAYLOAD_TYPE} {len(payload)} "
    assert message == prefix.encode() + payload
    assert hashlib.sha256(message).hexdigest() == example["pae-sha256"]
    text = DOC.read_text(encoding="utf-8")
    assert f"{len(payload):,} bytes, one line" in text and f"{len(payload):,} payload bytes" in text

    policy_key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(keys["policy"]["seed_hex"]))
    signature = json.loads(example["signature"])
    assert signature == {"keyid": keys["policy"]["keyid"], "sig": base64.b64encode(policy_key.sign(message)).decode()}

    envelope = example["envelope"].encode()
    assert envelope == sign_envelope(payload, POLICY_PAYLOAD_TYPE, [policy_key])
    document = json.loads(envelope)
    assert base64.b64decode(document["payload"]) == payload
    assert document["signatures"] == [signature]
    assert example["etag"] == f'"{hashlib.sha256(envelope).hexdigest()}"'


def test_the_example_is_accepted_as_the_doc_says(example):
    root = load_initial_root(example["root"].encode())
    verified = open_envelope(example["envelope"].encode(), root, "production", NOW)
    assert verified.version == 7 and verified.payload_bytes == example["payload"].encode()
    assert Policy(verified.payload).route("ticket-triage", "internal").model == "openai/gpt-4o-mini@2024-07-18"


def test_and_refused_as_the_doc_says(example):
    root = load_initial_root(example["root"].encode())
    envelope = example["envelope"].encode()
    document = json.loads(envelope)

    payload = bytearray(base64.b64decode(document["payload"]))
    assert payload.endswith(b'"version":7}')
    payload[-2] ^= 0x01  # "version":7 → "version":6
    changed = canonical_json({**document, "payload": base64.b64encode(bytes(payload)).decode()})
    with pytest.raises(VerificationError, match="signature check failed"):
        open_envelope(changed, root, "production", NOW)

    signature = bytearray(base64.b64decode(document["signatures"][0]["sig"]))
    signature[0] ^= 0x80
    sigs = [{**document["signatures"][0], "sig": base64.b64encode(bytes(signature)).decode()}]
    with pytest.raises(VerificationError, match="signature check failed"):
        open_envelope(canonical_json({**document, "signatures": sigs}), root, "production", NOW)

    with pytest.raises(VerificationError, match="expired at 2025-06-09T09:00:00Z"):
        open_envelope(envelope, root, "production", dt.datetime(2025, 6, 9, 9, 5, 1, tzinfo=dt.UTC))
    assert open_envelope(envelope, root, "production", dt.datetime(2025, 6, 9, 9, 5, 0, tzinfo=dt.UTC))
    with pytest.raises(VerificationError, match="bundle is for policy set 'production', not 'staging'"):
        open_envelope(envelope, root, "staging", NOW)
    with pytest.raises(VerificationError, match="trust root 2 is not signed"):
        verify_next_root(root, _root_two_signed_only_by_a_stranger())


def test_a_router_holding_a_newer_version_refuses_the_example(example, tmp_path):
    root = example["root"].encode()
    keys = json.loads(example["keys"])
    policy_key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(keys["policy"]["seed_hex"]))
    newer = {**json.loads(example["payload"]), "version": 8}
    client = PolicyClient("http://127.0.0.1:9", "production", "swr_x", root, tmp_path, clock=lambda: NOW, report=False)
    served = iter(
        [sign_envelope(canonical_json(newer), POLICY_PAYLOAD_TYPE, [policy_key]), example["envelope"].encode()]
    )

    def serve(path, **kwargs):
        if path.endswith("/bundle"):
            return 200, {}, next(served)
        raise FetchError("only the bundle is served here")

    client._request = serve
    assert client.update().outcome == "applied" and client.version == 8
    result = client.update()
    assert result.outcome == "failed" and result.alarm
    assert "offered v7 is older than v8 in force" in result.reason


def _root_two_signed_only_by_a_stranger() -> bytes:
    stranger = Ed25519PrivateKey.generate()
    public = raw_public_key(stranger.public_key())
    keyid = keyid_for(public)
    signed = {
        "_type": "steward.root",
        "spec_version": "1",
        "version": 2,
        "expires": "2026-06-02T09:00:00Z",
        "keys": {keyid: {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": public.hex()}}},
        "roles": {"root": {"keyids": [keyid], "threshold": 1}, "policy": {"keyids": [keyid], "threshold": 1}},
    }
    sig = base64.b64encode(stranger.sign(canonical_json(signed))).decode()
    return canonical_json({"signed": signed, "signatures": [{"keyid": keyid, "sig": sig}]})
