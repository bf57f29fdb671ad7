"""Publishing at the same moment, on PostgreSQL, from two threads with their own connections.

Two change requests from the same base, both approved: exactly one becomes the next version,
the other gets StaleBaseError; version numbers stay unique and grow by one. And one change
published twice at once becomes one version. The data must be
committed for the threads to see it, hence ``transaction=True`` (the tables are flushed after).
"""

from __future__ import annotations

import re
import threading

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection

from portfolio.models import ChangeRequest, ChangeStatus, PolicySet, PolicyVersion
from portfolio.publishing import StaleBaseError, publish, start_change
from steward.roles import sync_role_permissions

from .conftest import PRODUCTION_V1, build_world, make_people, publish_through_review

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def production(transactional_db) -> PolicySet:
    # An earlier transactional test may have flushed the role groups with everything else.
    sync_role_permissions()
    people = make_people()
    build_world(people)
    production = PolicySet.objects.get(slug="production")
    publish_through_review(production, PRODUCTION_V1, people["bob"], [people["alice"], people["carol"]])
    return production


def approved_change(policy_set: PolicySet, route: int, cap: int) -> ChangeRequest:
    """An approved change of the current text: the escalation cap of routes[route] becomes ``cap``."""
    bob, alice, carol = (User.objects.get(username=name) for name in ("bob", "alice", "carol"))
    current = policy_set.current_version().document
    caps = list(re.finditer(r"max_rate_bp: \d+", current))
    text = current[: caps[route].start()] + f"max_rate_bp: {cap}" + current[caps[route].end() :]
    change = start_change(policy_set, bob, f"routes[{route}] cap {cap} bp", "Racing another change.", text)
    change.submit(bob)
    change.review(alice, "approve", "ok")
    change.review(carol, "approve", "ok")
    assert change.status == ChangeStatus.APPROVED
    return change


def publish_at_once(change_ids: list[int], officers: list[str]) -> list[PolicyVersion | Exception]:
    """Publish each change from its own thread, all released together; what each thread got."""
    barrier = threading.Barrier(len(change_ids))
    results: list[PolicyVersion | Exception | None] = [None] * len(change_ids)

    def run(index: int) -> None:
        try:
            officer = User.objects.get(username=officers[index])
            change = ChangeRequest.objects.get(pk=change_ids[index])
            barrier.wait(timeout=10)
            results[index] = publish(change, officer)
        except Exception as error:  # noqa: BLE001 - the test asserts on whatever each thread got
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(change_ids))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_of_two_changes_from_the_same_base_exactly_one_is_published(production):
    for round_number in range(3):
        base = production.current_version().number
        first = approved_change(production, 0, 100 + round_number)
        second = approved_change(production, 1, 200 + round_number)
        assert first.base_version_id == second.base_version_id == production.current_version().pk

        results = publish_at_once([first.pk, second.pk], ["alice", "carol"])

        won = [r for r in results if isinstance(r, PolicyVersion)]
        lost = [r for r in results if isinstance(r, StaleBaseError)]
        assert (len(won), len(lost)) == (1, 1), results
        [version] = won
        assert version.number == base + 1
        [message] = lost[0].message_dict["base_version"]
        assert f"starts from v{base}, but production is now at v{base + 1}." in message
        statuses = {c.pk: c.status for c in ChangeRequest.objects.filter(pk__in=[first.pk, second.pk])}
        assert sorted(statuses.values()) == [ChangeStatus.APPROVED, ChangeStatus.PUBLISHED]
        assert statuses[version.change_request_id] == ChangeStatus.PUBLISHED

    # One change published twice at the same moment (a double click, two officers) is one version.
    change = approved_change(production, 0, 300)

    results = publish_at_once([change.pk, change.pk], ["alice", "carol"])

    won = [r for r in results if isinstance(r, PolicyVersion)]
    refused = [r for r in results if isinstance(r, ValidationError) and not isinstance(r, StaleBaseError)]
    assert (len(won), len(refused)) == (1, 1), results
    assert refused[0].message_dict["status"] == [f"{change} is already published."]

    numbers = list(production.versions.order_by("number").values_list("number", flat=True))
    assert numbers == [1, 2, 3, 4, 5]
