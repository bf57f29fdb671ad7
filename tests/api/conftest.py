"""The API from outside: the demo behind pytest-django's live server, a personal API token for each
role and a router token, for schemathesis to send what it makes of the schema.

``seed_demo`` runs once for the package (as in tests/feed, whose snapshot helpers this reuses); the
requests change the data as they go, which is what a real API sees, so nothing is put back between
tests, only once the package is done.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings

from portfolio import feed
from portfolio.models import PolicySet
from steward.models import ApiToken
from tests.feed.conftest import FAST_HASHERS, _forget_feed_memory, _restore, _take_snapshot


@dataclass(frozen=True)
class Tokens:
    """The raw tokens, by who holds them."""

    officer: str
    engineer: str
    auditor: str
    router: str


@pytest.fixture(scope="package")
def tokens(django_db_setup, django_db_blocker) -> Iterator[Tokens]:
    """The demo seeded, with alice (officer), bob (engineer), dave (auditor) and a production router."""
    with django_db_blocker.unblock(), override_settings(PASSWORD_HASHERS=FAST_HASHERS):
        before = _take_snapshot()
        call_command("seed_demo", "--no-evaluations", stdout=io.StringIO(), stderr=io.StringIO())
        users = get_user_model().objects.in_bulk(["alice", "bob", "dave"], field_name="username")
        _, router = feed.register_router(PolicySet.objects.get(slug="production"), "fuzz-edge", by=None)
        yield Tokens(
            officer=ApiToken.issue(users["alice"], "fuzz")[1],
            engineer=ApiToken.issue(users["bob"], "fuzz")[1],
            auditor=ApiToken.issue(users["dave"], "fuzz")[1],
            router=router,
        )
        _restore(before)  # leave the test database as this package found it
        _forget_feed_memory()


@pytest.fixture
def transactional_db(tokens, django_db_blocker) -> Iterator[None]:
    """Overrides pytest-django's for this package: committed rows that stay between its tests."""
    with django_db_blocker.unblock():
        yield
