"""Sign-in throttling: repeated failures lock out an account, and an address, with a clear message;
every lockout and unlock is audited; an officer can unlock; passwords are validated."""

from __future__ import annotations

import html

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client

from audits.models import AuditEvent

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"  # tests/conftest.py gives every named user this one


def sign_in(username: str, password: str, address: str = "10.0.0.1"):
    return Client(REMOTE_ADDR=address).post("/login/", {"username": username, "password": password})


def test_five_failures_lock_the_account_even_for_the_right_password(settings, alice) -> None:
    assert settings.AXES_FAILURE_LIMIT == 5
    for _ in range(4):
        assert sign_in("alice", "wrong").status_code == 200  # the form again, with its error
    locked = sign_in("alice", "wrong")
    assert locked.status_code == 429
    page = html.unescape(locked.content.decode())
    assert "Too many failed sign-ins" in page and "in 15 min" in page and "ask a governance officer" in page
    # From another address too, and with the right password: the account is locked.
    assert sign_in("alice", PASSWORD, address="10.0.0.2").status_code == 429
    lockouts = [e.after for e in AuditEvent.objects.filter(action="auth.lockout").order_by("seq")]
    assert lockouts == [{"username": "alice", "ip": "10.0.0.1"}, {"username": "alice", "ip": "10.0.0.2"}]
    assert AuditEvent.objects.filter(action="auth.sign_in_failed").count() >= 5
    assert not AuditEvent.objects.filter(action="auth.sign_in").exists()


def test_failures_for_many_accounts_from_one_address_lock_the_address(alice, bob) -> None:
    for name in ("carol", "dave", "erin", "frank", "grace"):
        sign_in(name, "guess", address="10.9.9.9")
    assert sign_in("bob", PASSWORD, address="10.9.9.9").status_code == 429
    assert sign_in("bob", PASSWORD, address="10.0.0.7").status_code == 302  # bob himself is not locked


def test_a_successful_sign_in_clears_the_accounts_count(alice) -> None:
    for _ in range(4):
        sign_in("alice", "wrong")
    assert sign_in("alice", PASSWORD).status_code == 302
    for _ in range(4):
        sign_in("alice", "wrong")
    assert sign_in("alice", PASSWORD).status_code == 302


def test_an_officer_unlocks_a_locked_account_and_the_unlock_is_audited(alice, carol, bob, dave, client_for) -> None:
    for _ in range(5):
        sign_in("alice", "wrong")
    assert sign_in("alice", PASSWORD).status_code == 429

    page = client_for(dave).get("/security/lockouts/").content.decode()  # auditors read it
    assert "account <strong>alice</strong>" in page and "locked" in page and "Unlock</button>" not in page
    assert client_for(bob).get("/security/lockouts/").status_code == 403
    refused = client_for(bob).post("/security/lockouts/unlock/", {"kind": "account", "value": "alice"})
    assert refused.status_code == 403 and sign_in("alice", PASSWORD).status_code == 429

    response = client_for(carol).post("/security/lockouts/unlock/", {"kind": "account", "value": "alice"})
    assert response.status_code == 302
    assert sign_in("alice", PASSWORD).status_code == 302
    event = AuditEvent.objects.get(action="auth.unlock")
    assert event.actor_name == "carol" and event.object_repr == "alice" and event.after["account"] == "alice"


def test_unlock_names_what_is_missing(carol, client_for) -> None:
    response = client_for(carol).post("/security/lockouts/unlock/", {"kind": "planet", "value": "x"}, follow=True)
    assert "Choose an account or an address to unlock." in response.content.decode()
    assert not AuditEvent.objects.filter(action="auth.unlock").exists()


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short-1", "at least 12 characters"),
        ("password1234", "too common"),
        ("830219475612", "entirely numeric"),
    ],
)
def test_password_validators_are_on(password, message) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_password(password)
