"""The feed's conditional requests follow RFC 9110 (section 13.1.2): ``If-None-Match`` uses weak
comparison, ``*`` matches, a list matches when any of its tags does, and a malformed header or a tag
that merely contains the ETag matches nothing; ``HEAD`` answers like ``GET`` without a body. The same
rules hold for the bundle and for the trust roots."""

from __future__ import annotations

import hashlib

import pytest

from portfolio import feed
from portfolio.models import TrustRoot
from tests.factories import routed_world

TAG = '"' + "ab" * 32 + '"'


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (TAG, True),
        (f"W/{TAG}", True),
        ("*", True),
        (" * ", True),
        (f'"other", {TAG}', True),
        (f'W/"other",W/{TAG}', True),
        (f'  "other" ,   {TAG}  ', True),
        ('"other"', False),
        ("", False),
        (TAG.strip('"'), False),  # unquoted
        (TAG[:-1], False),  # unterminated
        (f'"x{TAG[1:-1]}y"', False),  # contains the tag: not the same tag
        (f'"{TAG[1:20]}"', False),  # a prefix of it
        (f"w/{TAG}", False),  # the weak prefix is case-sensitive
        (f"{TAG} junk", False),  # malformed: matches nothing
        (f"*, {TAG}", False),  # "*" stands alone
    ],
)
def test_if_none_match_follows_rfc_9110(header: str, matches: bool) -> None:
    assert feed.none_match(header, TAG) is matches


@pytest.fixture
def world(db, alice, carol, bob):
    feed._tokens.clear()
    feed._releases.clear()
    return routed_world(alice, carol, bob)


def _conditional_cases(etag: str) -> list[tuple[str, int]]:
    return [
        (etag, 304),
        (f"W/{etag}", 304),
        ("*", 304),
        (f'"stale", {etag}', 304),
        ('"stale"', 200),
        (f'"x{etag[1:-1]}"', 200),
        (etag.strip('"'), 200),
    ]


def test_the_bundle_answers_each_if_none_match_case_and_head(world, client) -> None:
    auth = {"HTTP_AUTHORIZATION": f"Bearer {world['token']}"}
    url = "/api/v1/policy-sets/production/bundle"
    first = client.get(url, **auth)
    assert first.status_code == 200
    etag = first["ETag"]
    assert etag == f'"{hashlib.sha256(first.content).hexdigest()}"'
    for header, expected in _conditional_cases(etag):
        response = client.get(url, HTTP_IF_NONE_MATCH=header, **auth)
        assert response.status_code == expected, header
        assert response["ETag"] == etag and response["X-Policy-Version"] == "1"
        assert (response.content == b"") is (expected == 304)

    head = client.head(url, **auth)
    assert head.status_code == 200 and head.content == b""
    assert head["Content-Length"] == str(len(first.content))
    for name in ("ETag", "X-Policy-Version", "Cache-Control", "Content-Type"):
        assert head[name] == first[name]
    assert client.head(url, HTTP_IF_NONE_MATCH=etag, **auth).status_code == 304
    assert client.head(url).status_code == 401
    assert client.post(url, **auth).status_code == 405


@pytest.mark.parametrize("url", ["/api/v1/trust/root.json", "/api/v1/trust/1.root.json"])
def test_the_trust_root_answers_each_if_none_match_case_and_head(world, client, url) -> None:
    first = client.get(url)
    assert first.status_code == 200 and first["X-Trust-Version"] == str(TrustRoot.objects.get().version)
    etag = first["ETag"]
    for header, expected in _conditional_cases(etag):
        response = client.get(url, HTTP_IF_NONE_MATCH=header)
        assert response.status_code == expected, header
        assert response["ETag"] == etag
    head = client.head(url)
    assert head.status_code == 200 and head.content == b"" and head["Content-Length"] == str(len(first.content))
    assert head["ETag"] == etag
