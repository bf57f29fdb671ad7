"""steward_client's pieces on their own, with no server: canonical JSON, DSSE's PAE, strict parsing,
envelope verification against a local trust root, atomic state writes and the polling back-off.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from steward_client import PolicyClient, UpdateResult
from steward_client.canonical import CanonicalError, canonical_json
from steward_client.dsse import POLICY_PAYLOAD_TYPE, keyid_for, pae, raw_public_key, sign_envelope
from steward_client.state import StateDir, write_atomically
from steward_client.verify import VerificationError, load_initial_root, open_envelope, strict_json

# --- RFC 8785 canonical JSON --------------------------------------------------------------------


def test_members_are_sorted_by_utf16_code_units():
    # RFC 8785 section 3.2.3: U+1F600 is the surrogate pair D83D DE00, so it sorts before U+FB33
    # even though its code point is larger.
    source = (
        '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh", '
        '"1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control", '
        '"\\u00f6": "Latin Small Letter O With Diaeresis"}'
    )
    keys = list(json.loads(canonical_json(json.loads(source))))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert sorted(keys) != keys  # code-point order would differ: this is what the test is about


def test_strings_and_literals_are_written_as_rfc8785_says():
    # RFC 8785 section 3.2.4's example, without its numbers (floats are refused here).
    value = json.loads(
        r'{"string": "\u20ac$\u000F\u000aA' + "'" + r'\u0042\u0022\u005c\\\"\/", "literals": [null, true, false]}'
    )
    expected = r'{"literals":[null,true,false],"string":"€$\u000f\nA' + "'" + r'B\"\\\\\"/"}'
    assert canonical_json(value) == expected.encode("utf-8")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [True, None, -7, 0]}, b'{"a":[true,null,-7,0],"b":1}'),
        ("\b\t\n\f\r\x00\x1f\x7f", b'"\\b\\t\\n\\f\\r\\u0000\\u001f\x7f"'),
        ("\u2028 é 😀", '"\u2028 é 😀"'.encode()),  # no \\u escapes beyond the control characters
        ({"nested": {"z": {}, "y": []}}, b'{"nested":{"y":[],"z":{}}}'),
        (2**53 - 1, b"9007199254740991"),
        (-(2**53 - 1), b"-9007199254740991"),
    ],
)
def test_canonical_examples(value, expected):
    assert canonical_json(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1.0, r"\$: floats are not allowed"),
        ({"prices": [1, 2.5]}, r"\$.prices\[1\]: floats are not allowed"),
        (2**53, "outside the I-JSON range"),
        ({1: "a"}, "object keys must be strings"),
        ("\ud800", "lone surrogates"),
        ({"\udfff": 1}, "lone surrogates"),
        ({"a": b"bytes"}, "bytes cannot be canonicalised"),
    ],
)
def test_canonical_json_refuses_what_it_cannot_represent_exactly(value, message):
    with pytest.raises(CanonicalError, match=message):
        canonical_json(value)


# --- DSSE ---------------------------------------------------------------------------------------


def test_pae_is_the_dsse_pre_authentication_encoding():
    # The example of DSSE's protocol.md.
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    # Lengths are in bytes of UTF-8, in ASCII decimal; the payload goes in as it is.
    assert pae("é", b"") == "DSSEv1 2 é 0 ".encode()
    assert pae("", b"a b\n") == b"DSSEv1 0  4 a b\n"
    assert pae(POLICY_PAYLOAD_TYPE, b"{}") == b"DSSEv1 43 application/vnd.steward.routing-policy+json 2 {}"


def test_keyid_is_the_sha256_of_the_raw_public_key():
    # RFC 8032 section 7.1, test 1.
    secret = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public = raw_public_key(Ed25519PrivateKey.from_private_bytes(secret).public_key())
    assert public.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert keyid_for(public) == "21fe31dfa154a261626bf854046fd2271b7bed4b6abe45aa58877ef47f9721b9"


# --- strict parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"version": 1, "version": 2}', "duplicate JSON key 'version'"),
        (b'{"a": {"b": 1, "b": 1}}', "duplicate JSON key 'b'"),
        (b'{"price": NaN}', "non-standard JSON value NaN"),
        (b"[Infinity]", "non-standard JSON value Infinity"),
        (b"[-Infinity]", "non-standard JSON value -Infinity"),
        (b'{"a": "\xff"}', "bundle is not valid JSON"),
        (b'{"a": 1', "bundle is not valid JSON"),
    ],
)
def test_strict_json_rejects_duplicates_non_standard_numbers_and_bad_utf8(data, message):
    with pytest.raises(VerificationError, match=message):
        strict_json(data, "bundle")


def test_strict_json_accepts_plain_json():
    assert strict_json('{"a": [1, "é", null]}'.encode(), "bundle") == {"a": [1, "é", None]}


# --- envelopes against a local trust root -------------------------------------------------------

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def make_root(root_keys: list[Ed25519PrivateKey], policy_keys: list[Ed25519PrivateKey], threshold: int = 1) -> bytes:
    keys = {}
    for key in [*root_keys, *policy_keys]:
        public = raw_public_key(key.public_key())
        keys[keyid_for(public)] = {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": public.hex()}}

    def ids(group):
        return sorted(keyid_for(raw_public_key(k.public_key())) for k in group)

    signed = {
        "_type": "steward.root",
        "spec_version": "1",
        "version": 1,
        "expires": "2030-01-01T00:00:00Z",
        "keys": keys,
        "roles": {
            "root": {"keyids": ids(root_keys), "threshold": 1},
            "policy": {"keyids": ids(policy_keys), "threshold": threshold},
        },
    }
    message = canonical_json(signed)
    signatures = [
        {"keyid": keyid_for(raw_public_key(k.public_key())), "sig": base64.b64encode(k.sign(message)).decode()}
        for k in root_keys
    ]
    return canonical_json({"signed": signed, "signatures": signatures})


def make_payload(**changes) -> bytes:
    payload = {
        "_type": "steward.routing-policy",
        "spec_version": "1",
        "policy_set": "production",
        "version": 1,
        "issued_at": "2025-06-01T11:00:00Z",
        "expires": "2025-06-08T11:00:00Z",
        "trust_version": 1,
        "models": {},
        "tiers": {},
        "classifications": {},
        "routes": [],
        "default": "deny",
        **changes,
    }
    return canonical_json(payload)


def test_a_threshold_counts_distinct_trusted_keys():
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    root = load_initial_root(make_root([Ed25519PrivateKey.generate()], [first, second], threshold=2))
    payload = make_payload()
    both = sign_envelope(payload, POLICY_PAYLOAD_TYPE, [first, second])
    assert open_envelope(both, root, "production", NOW).version == 1
    twice = sign_envelope(payload, POLICY_PAYLOAD_TYPE, [first, first])
    with pytest.raises(VerificationError, match="1 of 2 required"):
        open_envelope(twice, root, "production", NOW)


def test_an_envelope_must_have_exactly_the_dsse_fields():
    key = Ed25519PrivateKey.generate()
    root = load_initial_root(make_root([key], [key]))
    envelope = json.loads(sign_envelope(make_payload(), POLICY_PAYLOAD_TYPE, [key]))
    extra = canonical_json({**envelope, "note": "trust me"})
    with pytest.raises(VerificationError, match="not a DSSE envelope"):
        open_envelope(extra, root, "production", NOW)
    duplicated = sign_envelope(make_payload(), POLICY_PAYLOAD_TYPE, [key]).replace(
        b'{"payload"', b'{"payload":"e30=","payload"', 1
    )
    with pytest.raises(VerificationError, match="duplicate JSON key 'payload'"):
        open_envelope(duplicated, root, "production", NOW)
    with pytest.raises(VerificationError, match="bundle larger than 100 bytes"):
        open_envelope(canonical_json(envelope), root, "production", NOW, max_bytes=100)


def test_a_signed_payload_is_still_parsed_strictly():
    key = Ed25519PrivateKey.generate()
    root = load_initial_root(make_root([key], [key]))
    duplicate = make_payload().replace(b'"version":1', b'"version":1,"version":9')
    with pytest.raises(VerificationError, match="duplicate JSON key 'version'"):
        open_envelope(sign_envelope(duplicate, POLICY_PAYLOAD_TYPE, [key]), root, "production", NOW)
    offset = make_payload(issued_at="2025-06-01T11:00:00+00:00")
    with pytest.raises(VerificationError, match="issued_at must be an RFC 3339 time ending in Z"):
        open_envelope(sign_envelope(offset, POLICY_PAYLOAD_TYPE, [key]), root, "production", NOW)
    string_version = make_payload(version="2")
    with pytest.raises(VerificationError, match="version must be an integer"):
        open_envelope(sign_envelope(string_version, POLICY_PAYLOAD_TYPE, [key]), root, "production", NOW)


# --- state on disk ------------------------------------------------------------------------------


def test_write_atomically_replaces_the_content_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "state" / "envelope.json"
    write_atomically(target, b"first")
    write_atomically(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["envelope.json"]


def test_a_failed_write_keeps_the_old_content(tmp_path, monkeypatch):
    target = tmp_path / "envelope.json"
    write_atomically(target, b"good")

    def refuse(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, b"half-written")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["envelope.json"]


def test_the_state_dir_holds_the_exact_bytes_and_etag(tmp_path):
    state = StateDir(tmp_path / "state")
    assert state.envelope is None and state.etag is None and state.info() == {}
    state.save_policy(b'{"exact": "bytes"} ', '"abc"', {"version": 3})
    assert state.envelope == b'{"exact": "bytes"} '
    assert state.etag == '"abc"'
    assert state.info() == {"version": 3}
    state.save_root(2, b"root two")
    assert state.root_version(2) == b"root two" and state.root_version(3) is None


# --- polling ------------------------------------------------------------------------------------


@pytest.fixture
def offline_client(tmp_path) -> PolicyClient:
    """A client pointed at a closed port (9, discard): every update fails at once."""
    key = Ed25519PrivateKey.generate()
    return PolicyClient("http://127.0.0.1:9", "production", "swr_x", make_root([key], [key]), tmp_path, timeout=2)


def test_run_backs_off_exponentially_with_jitter_while_failing(offline_client):
    delays: list[float] = []
    results: list[UpdateResult] = []
    offline_client.run(30, max_backoff=600, iterations=9, sleep=delays.append, on_result=results.append)
    assert len(results) == 9 and all(r.outcome == "failed" for r in results)
    assert results[0].reason.startswith("cannot reach http://127.0.0.1:9")
    assert len(delays) == 8  # no sleep after the last iteration
    bases = [60, 120, 240, 480, 600, 600, 600, 600]
    for delay, base in zip(delays, bases, strict=True):
        assert 0.8 * base <= delay <= 1.2 * base
    ratios = {round(delay / base, 6) for delay, base in zip(delays, bases, strict=True)}
    assert len(ratios) > 1  # jittered, not a fixed multiple


def test_run_returns_to_the_interval_after_a_success(offline_client, monkeypatch):
    outcomes = iter(["failed", "failed", "applied", "unchanged", "failed"])
    monkeypatch.setattr(offline_client, "update", lambda: UpdateResult(next(outcomes), None))
    delays: list[float] = []
    offline_client.run(10, iterations=5, sleep=delays.append)
    for delay, base in zip(delays, [20, 40, 10, 10], strict=True):
        assert 0.8 * base <= delay <= 1.2 * base
