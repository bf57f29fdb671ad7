"""The model-version lifecycle, enforced by the model's own methods for every caller."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError

from registry.models import ModelVersion, Status, VersionTransition
from steward.roles import ENGINEERS

from ..factories import make_version, version_fields

pytestmark = pytest.mark.django_db


def test_engineer_proposes_a_version_with_a_first_timeline_entry(bob, mistral_large):
    version = ModelVersion.propose(bob, **version_fields(mistral_large, version="2411", notes="EU reasoning"))
    assert version.status == Status.PROPOSED
    assert version.ref == "mistral/mistral-large@2411"
    [entry] = version.transitions.all()
    assert (entry.action, entry.actor, entry.comment) == ("propose", bob, "EU reasoning")


def test_officer_cannot_propose(alice, mistral_large):
    with pytest.raises(PermissionDenied):
        ModelVersion.propose(alice, **version_fields(mistral_large))
    assert not ModelVersion.objects.exists()


def test_duplicate_ref_is_refused_with_the_ref_named(bob, proposed_version):
    with pytest.raises(ValidationError) as caught:
        ModelVersion.propose(bob, **version_fields(proposed_version.model, version="2411"))
    assert "mistral/mistral-large@2411 is already in the registry." in caught.value.message_dict["version"]
    assert ModelVersion.objects.count() == 1


def test_officer_approves_with_comment_and_it_is_recorded(alice, proposed_version):
    proposed_version.approve(alice, "Passed the EU reasoning suite.")
    proposed_version.refresh_from_db()
    assert proposed_version.status == Status.APPROVED
    last = proposed_version.transitions.last()
    assert (last.action, last.from_status, last.to_status) == ("approve", "proposed", "approved")
    assert (last.actor, last.comment) == (alice, "Passed the EU reasoning suite.")


def test_proposer_cannot_approve_own_proposal_even_as_officer(alice, mistral_large):
    alice.groups.add(Group.objects.get(name=ENGINEERS))
    version = ModelVersion.propose(alice, **version_fields(mistral_large))
    for action in ("approve", "reject"):
        with pytest.raises(PermissionDenied, match="cannot .* another officer must decide"):
            version.transition(action, alice, "looks fine to me")
    version.refresh_from_db()
    assert version.status == Status.PROPOSED
    assert version.transitions.count() == 1


def test_engineer_cannot_decide(bob, carol, mistral_large):
    other = make_version(carol, model=mistral_large)
    with pytest.raises(PermissionDenied, match="Only governance officers"):
        other.approve(bob, "ok")
    other.refresh_from_db()
    assert other.status == Status.PROPOSED


@pytest.mark.parametrize("comment", ["", "   ", None])
def test_comment_is_required(alice, proposed_version, comment):
    with pytest.raises(ValidationError) as caught:
        proposed_version.approve(alice, comment)
    assert "comment" in caught.value.message_dict
    proposed_version.refresh_from_db()
    assert proposed_version.status == Status.PROPOSED


@pytest.mark.parametrize(
    ("path", "final"),
    [
        (["approve", "restrict", "approve", "deprecate", "retire"], Status.RETIRED),
        (["reject"], Status.REJECTED),
        (["approve", "deprecate"], Status.DEPRECATED),
    ],
)
def test_allowed_paths(alice, proposed_version, path, final):
    for action in path:
        proposed_version.transition(action, alice, f"{action} for the test")
    proposed_version.refresh_from_db()
    assert proposed_version.status == final
    assert [t.action for t in proposed_version.transitions.all()] == ["propose", *path]


@pytest.mark.parametrize(
    ("before", "action"),
    [
        ([], "retire"),
        ([], "deprecate"),
        ([], "restrict"),
        (["reject"], "approve"),
        (["approve"], "approve"),
        (["approve", "deprecate", "retire"], "approve"),
        (["approve", "deprecate"], "restrict"),
    ],
)
def test_disallowed_transition_gives_a_clear_message(alice, proposed_version, before, action):
    for step in before:
        proposed_version.transition(step, alice, "setup")
    status_before = ModelVersion.objects.get(pk=proposed_version.pk).status
    with pytest.raises(ValidationError) as caught:
        proposed_version.transition(action, alice, "try it")
    [message] = caught.value.message_dict["status"]
    assert message.startswith(f"Cannot {action} mistral/mistral-large@2411: it is ")
    assert "Allowed actions:" in message
    assert ModelVersion.objects.get(pk=proposed_version.pk).status == status_before


def test_unknown_action_is_refused(alice, proposed_version):
    with pytest.raises(ValidationError) as caught:
        proposed_version.transition("promote", alice, "x")
    assert "action" in caught.value.message_dict


def test_every_transition_records_who_when_and_comment(alice, carol, proposed_version):
    proposed_version.approve(alice, "first")
    proposed_version.restrict(carol, "second")
    rows = list(VersionTransition.objects.filter(version=proposed_version).order_by("at", "pk"))
    assert [(r.actor.username, r.comment) for r in rows[1:]] == [("alice", "first"), ("carol", "second")]
    assert all(r.at is not None for r in rows)
