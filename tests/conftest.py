"""Shared fixtures: the named users of every role (alice and carol the officers, bob the engineer,
dave the auditor), clients signed in as them, and a little registry data."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from steward.roles import AUDITORS, ENGINEERS, OFFICERS

from .factories import make_model, make_provider, make_version


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # Signing in is not what the suite measures; a slow hasher only costs time per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # seed_demo's demo evaluation runs take seconds; the tests that are about them turn them back on.
    settings.STEWARD_SEED_EVALUATION_RUNS = False


def _user(username: str, *roles: str, **extra) -> User:
    user = User.objects.create_user(username, f"{username}@example.org", "correct-horse-battery", **extra)
    for role in roles:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def alice(db) -> User:
    return _user("alice", OFFICERS)


@pytest.fixture
def carol(db) -> User:
    return _user("carol", OFFICERS)


@pytest.fixture
def bob(db) -> User:
    return _user("bob", ENGINEERS)


@pytest.fixture
def dave(db) -> User:
    return _user("dave", AUDITORS)


@pytest.fixture
def erin(db) -> User:
    """Signed in, but with no role at all."""
    return _user("erin")


@pytest.fixture
def admin_user(db) -> User:
    return _user("root", is_superuser=True, is_staff=True)


@pytest.fixture
def client_for():
    """``client_for(user)`` → a test client signed in as ``user``."""

    def make(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def mistral_large(db):
    provider = make_provider(name="Mistral AI", slug="mistral", regions=["eu-west-1"])
    return make_model(provider=provider, name="Mistral Large", slug="mistral-large", family="mistral")


@pytest.fixture
def proposed_version(bob, mistral_large):
    """A version bob proposed, awaiting an officer."""
    return make_version(bob, model=mistral_large, version="2411", cost_tier="large")
