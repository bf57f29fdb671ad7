"""Comparing two runs of a suite case by case: both answers and verdicts, changed cases first,
the score's change; only runs of one suite; readers only; a fixed number of queries."""

from __future__ import annotations

import html
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from registry.models import CaseResult, EvaluationRun, RunStatus
from tests.registry.test_evaluation_pages import completed_run, demo_version, make_suite, text

pytestmark = pytest.mark.django_db

# Each case's verdict in the earlier and the later run: (passed, error), or None for no answer.
PASS, FAIL, ERROR = (True, ""), (False, ""), (False, "HTTP 503 from the endpoint")
BEFORE = {"t1": PASS, "t2": PASS, "t3": FAIL, "t4": ERROR, "t5": PASS}
AFTER = {"t1": FAIL, "t2": PASS, "t3": PASS, "t4": FAIL, "t5": None}


def record(run: EvaluationRun, verdicts: dict, answer: str) -> EvaluationRun:
    """Results as the runner would have written them: ``answer`` is what each case was answered."""
    cases = {case.key: case for case in run.suite.cases.all()}
    CaseResult.objects.bulk_create(
        CaseResult(
            run=run,
            case=cases[key],
            output="" if verdict[1] else f"{answer} {key}",
            passed=verdict[0],
            score_bp=10000 if verdict[0] else 0,
            error=verdict[1],
            detail=f"scored {key} in run {run.pk}",
        )
        for key, verdict in verdicts.items()
        if verdict is not None
    )
    return run


@pytest.fixture
def two_runs(bob) -> tuple[EvaluationRun, EvaluationRun]:
    suite = make_suite("triage", cases=5)
    version = demo_version(bob)
    before = record(completed_run(suite, version, 6000, ago_minutes=60), BEFORE, "older")
    after = record(completed_run(suite, version, 4000, ago_minutes=5), AFTER, "newer")
    return before, after


def compare(client: Client, run: EvaluationRun, other: str | int, headers: dict | None = None, **params):
    return client.get(f"/registry/runs/{run.pk}/compare/", {"with": other, **params}, headers=headers)


def rows(page) -> list[tuple[str, str]]:
    """(case key, move) of each row of the comparison table, in the page's order."""
    return re.findall(r'data-case="(t\d+)" data-move="(\w+)"', page.content.decode())


def test_two_runs_compare_case_by_case_with_changed_cases_first(bob, client_for, two_runs) -> None:
    before, after = two_runs
    page = compare(client_for(bob), after, before.pk)

    assert page.status_code == 200
    # Regressions (passed before, not now), improvements, other changes, then the unchanged ones.
    assert rows(page) == [
        ("t1", "regressed"),
        ("t5", "regressed"),
        ("t3", "improved"),
        ("t4", "changed"),
        ("t2", "same"),
    ]
    body = text(page)
    summary = body.split('id="compare-summary"')[1].split("</table>")[0]
    assert summary.index(f"#{before.pk}") < summary.index(f"#{after.pk}"), "the earlier run is 'before'"
    assert 'Score <strong class="bad">-20.0</strong> points' in body
    assert "2 regressed" in body and "1 improved" in body and "1 changed otherwise" in body and "1 unchanged" in body
    t1 = body.split('data-case="t1"')[1].split("</tr>")[0]
    assert "older t1" in t1 and "newer t1" in t1, "both answers"
    assert t1.index("result-pass") < t1.index("result-fail"), "both verdicts, before then after"
    assert "scored t1 in run" in t1 and ">billing<" in t1, "the scorer's reason and the expected answer"
    assert '<span class="bad">-100.0</span>' in t1
    t4 = body.split('data-case="t4"')[1].split("</tr>")[0]
    assert "HTTP 503 from the endpoint" in t4 and "result-error" in t4
    t5 = body.split('data-case="t5"')[1].split("</tr>")[0]
    assert "not answered in this run" in t5 and "result-missing" in t5


def test_the_comparison_reads_the_same_from_either_run(bob, client_for, two_runs) -> None:
    before, after = two_runs
    client = client_for(bob)
    assert rows(compare(client, before, after.pk)) == rows(compare(client, after, before.pk))


def test_changed_only_leaves_out_the_unchanged_cases(bob, client_for, two_runs) -> None:
    before, after = two_runs
    client = client_for(bob)
    assert "Changed only (4)" in text(compare(client, before, after.pk))

    partial = compare(
        client, before, after.pk, show="changed", headers={"HX-Request": "true", "HX-Target": "comparison"}
    )

    assert partial.status_code == 200
    assert "<html" not in partial.content.decode()
    assert [key for key, _ in rows(partial)] == ["t1", "t5", "t3", "t4"]


def test_the_run_page_offers_the_other_finished_runs_of_its_suite(bob, client_for, two_runs) -> None:
    before, after = two_runs
    elsewhere = completed_run(make_suite("refusals", category="safety"), after.model_version, 9000)
    running = EvaluationRun.objects.create(
        suite=after.suite, model_version=after.model_version, status=RunStatus.RUNNING
    )

    page = client_for(bob).get(after.get_absolute_url()).content.decode()

    form = page.split('id="compare-form"')[1].split("</form>")[0]
    assert f'action="/registry/runs/{after.pk}/compare/"' in page
    # Neither the run of another suite nor the unfinished one.
    assert re.findall(r'<option value="(\d+)"', form) == [str(before.pk)], (elsewhere.pk, running.pk)


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ("x", "with: No run has the id 'x'"),
        ("²", "with: No run has the id '²'"),
        ("999999", "with: No run has the id '999999'"),
        ("same", "with: Choose a run other than"),
        ("elsewhere", "with: Run #{elsewhere} is of the suite Refusals, not Triage"),
    ],
)
def test_runs_that_cannot_be_compared_are_a_400_naming_the_field(bob, client_for, two_runs, other, message) -> None:
    before, after = two_runs
    elsewhere = completed_run(make_suite("refusals", category="safety"), after.model_version, 9000)
    other = {"same": str(after.pk), "elsewhere": str(elsewhere.pk)}.get(other, other)

    page = compare(client_for(bob), after, other)

    assert page.status_code == 400
    assert message.format(elsewhere=elsewhere.pk) in html.unescape(text(page))
    assert 'id="compare-cases"' not in page.content.decode()


@pytest.mark.parametrize(
    ("username", "status"), [("alice", 200), ("bob", 200), ("dave", 200), ("erin", 403), (None, 302)]
)
def test_every_reader_compares_runs_and_nobody_else(request, client_for, two_runs, username, status) -> None:
    before, after = two_runs
    client = client_for(request.getfixturevalue(username)) if username else Client()
    assert compare(client, before, after.pk).status_code == status


def test_the_comparison_costs_the_same_queries_for_five_cases_as_for_a_hundred(bob, client_for) -> None:
    version = demo_version(bob)
    client = client_for(bob)

    def queries(cases: int) -> int:
        suite = make_suite(f"suite-{cases}", cases=cases)
        verdicts = {f"t{n + 1}": PASS if n % 3 else FAIL for n in range(cases)}
        first = record(completed_run(suite, version, 7000, ago_minutes=60), verdicts, "a")
        second = record(completed_run(suite, version, 7500, ago_minutes=5), verdicts | {"t1": PASS}, "b")
        with CaptureQueriesContext(connection) as captured:
            page = compare(client, second, first.pk, per_page=500)
        assert page.status_code == 200 and len(rows(page)) == cases
        return len(captured)

    assert queries(5) == queries(100)
