"""Suites as YAML: Steward's format round-trips, promptfoo files import, bad files say where."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from registry.evaluation.suites import SuiteFormatError, export_suite, import_suite
from registry.forms import yaml_line
from registry.models import EvaluationSuite

pytestmark = pytest.mark.django_db

SUITE = """\
name: Ticket triage smoke
slug: triage-smoke
category: accuracy
description: Three tickets every model must label.
pass_threshold_bp: 9000
schedule_minutes: 60
scorer: label
scorer_config:
  labels: [billing, technical, account]
concurrency: 4
max_output_chars: 200
cases:
  - key: t1
    prompt: "Classify this support ticket. Ticket: I was charged twice"
    expected: billing
    tags: [billing, easy]
  - key: t2
    messages:
      - {role: system, content: You label support tickets.}
      - {role: user, content: "Ticket: the app crashes"}
    expected: technical
  - key: t3
    prompt: "Ticket: reset my password"
    expected: account
    scorer: contains
    scorer_config: {case_sensitive: true}
    group: g1
"""


def errors_of(text: str, by, **options) -> list[tuple[str, str]]:
    with pytest.raises(SuiteFormatError) as caught:
        import_suite(text, by, **options)
    return caught.value.errors


def test_import_then_export_round_trips(bob) -> None:
    suite, created, updated = import_suite(SUITE, bob)

    assert (created, updated) == (3, 0)
    assert (suite.slug, suite.category, suite.pass_threshold_bp, suite.schedule_minutes) == (
        "triage-smoke",
        "accuracy",
        9000,
        60,
    )
    assert suite.scorer_config == {"labels": ["billing", "technical", "account"]}
    cases = {case.key: case for case in suite.cases.all()}
    assert cases["t1"].messages == [
        {"role": "user", "content": "Classify this support ticket. Ticket: I was charged twice"}
    ]
    assert cases["t2"].messages[0] == {"role": "system", "content": "You label support tickets."}
    assert (cases["t3"].scorer, cases["t3"].scorer_config, cases["t3"].group) == (
        "contains",
        {"case_sensitive": True},
        "g1",
    )

    exported = export_suite(suite)
    again, created, updated = import_suite(exported, bob)
    assert again.pk == suite.pk and (created, updated) == (0, 3)
    assert export_suite(again) == exported


def test_reimport_updates_cases_by_key_and_adds_new_ones(bob) -> None:
    import_suite(SUITE, bob)
    changed = SUITE.replace("expected: billing", "expected: account") + (
        "  - key: t4\n    prompt: 'Ticket: refund please'\n    expected: billing\n"
    )

    suite, created, updated = import_suite(changed, bob)

    assert (created, updated) == (1, 3)
    assert suite.cases.get(key="t1").expected == "account"
    assert suite.cases.count() == 4


def test_malformed_yaml_names_the_line(bob) -> None:
    broken = SUITE.replace("    expected: technical", "    expected: [technical")

    errors = errors_of(broken, bob)

    assert len(errors) == 1
    path, message = errors[0]
    assert path == ""
    assert message.startswith("line 22: invalid YAML")  # the line after the unclosed [ on line 21
    assert not EvaluationSuite.objects.exists()


def test_duplicate_mapping_keys_are_refused_with_both_lines(bob) -> None:
    errors = errors_of(SUITE.replace("scorer: label\n", "scorer: label\nscorer: exact\n", 1), bob)

    assert errors == [("", "line 8: duplicate key 'scorer' (first on line 7)")]


def test_duplicate_case_keys_are_refused(bob) -> None:
    errors = errors_of(SUITE.replace("key: t2", "key: t1"), bob)

    assert ("cases[1].key", "duplicate key 't1' (also cases[0])") in errors


def test_unknown_keys_and_bad_values_name_their_paths_and_lines(bob) -> None:
    text = SUITE.replace("concurrency: 4", "concurency: 4").replace("    tags: [billing, easy]", "    tag: easy")
    text = text.replace("pass_threshold_bp: 9000", "pass_threshold_bp: 12000")

    errors = dict(errors_of(text, bob))

    assert errors["concurency"].startswith("unknown key; expected ")
    assert errors["cases[0].tag"].startswith("unknown key")
    assert errors["pass_threshold_bp"] == "must be an integer from 0 to 10000"
    assert yaml_line(text, "concurency") == 10
    assert yaml_line(text, "cases[0].tag") == 16
    assert yaml_line(text, "cases[2].expected") == 24
    assert yaml_line(text, "cases[9].expected") == 12  # the deepest part that exists: cases
    assert not EvaluationSuite.objects.exists()


def test_missing_parts_and_bad_scorers_are_reported_together(bob) -> None:
    text = (
        "name: X\nslug: x\ncategory: fairness\nscorer: fuzzy\ncases:\n  - key: a\n    expected: b\n  - just a string\n"
    )

    errors = dict(errors_of(text, bob))

    assert errors["category"] == "must be one of accuracy, bias, safety, compliance"
    assert errors["scorer"].startswith("unknown scorer 'fuzzy'")
    assert errors["cases[0].prompt"] == "required: the prompt (or messages)"
    assert errors["cases[1]"].startswith("must be a mapping")


def test_unknown_task_or_judge_is_refused(bob) -> None:
    assert errors_of(SUITE.replace("category: accuracy", "category: accuracy\ntask: nowhere"), bob) == [
        ("task", "unknown task 'nowhere'")
    ]
    assert errors_of(SUITE.replace("category: accuracy", "category: accuracy\njudge: x/y@1"), bob) == [
        ("judge", "unknown model version 'x/y@1'")
    ]


PROMPTFOO = """\
prompts:
  - "Answer briefly: {{question}}"
tests:
  - description: capital
    vars: {question: "What is the capital of France?"}
    assert:
      - type: equals
        value: Paris
  - vars: {question: Name a primary colour}
    assert:
      - type: contains
        value: Red
  - vars: {question: Say hello}
    assert:
      - type: icontains
        value: HELLO
  - vars: {question: Give an order number}
    assert:
      - type: regex
        value: "#\\\\d{5}"
  - vars: {question: Reply in JSON}
    assert:
      - type: is-json
"""


def test_promptfoo_tests_become_cases_with_their_assertions(bob) -> None:
    suite, created, _ = import_suite(
        PROMPTFOO, bob, format="promptfoo", name="Promptfoo basics", slug="promptfoo-basics", category="safety"
    )

    assert created == 5 and suite.category == "safety"
    cases = list(suite.cases.order_by("position"))
    assert [c.key for c in cases] == ["capital", "test-2", "test-3", "test-4", "test-5"]
    assert cases[0].messages == [{"role": "user", "content": "Answer briefly: What is the capital of France?"}]
    assert [(c.scorer, c.scorer_config) for c in cases] == [
        ("exact", {}),
        ("contains", {"case_sensitive": True}),
        ("contains", {"case_sensitive": False}),
        ("regex", {"pattern": "#\\d{5}"}),
        ("json", {}),
    ]
    assert [c.expected for c in cases[:3]] == ["Paris", "Red", "HELLO"]
    # Exported, it is a Steward suite that imports back unchanged.
    exported = export_suite(suite)
    assert import_suite(exported, bob)[0].pk == suite.pk
    assert export_suite(EvaluationSuite.objects.get(pk=suite.pk)) == exported


def test_promptfoo_import_refuses_unsupported_assertions_and_needs_a_name(bob) -> None:
    text = PROMPTFOO.replace("type: is-json", "type: llm-rubric")
    assert errors_of(text, bob, format="promptfoo", name="P", slug="p") == [
        (
            "tests[4].assert[0].type",
            "unsupported assertion 'llm-rubric'; use equals, contains, icontains, regex, is-json",
        )
    ]
    assert yaml_line(text, "tests[4].assert[0].type") == 23
    assert errors_of(PROMPTFOO, bob, format="promptfoo")[0][0] == "name"
    assert errors_of("tests: []\n", bob, format="promptfoo", name="P", slug="p") == [
        ("tests", "a promptfoo file needs a non-empty list of tests")
    ]


def test_only_engineers_import(dave, alice) -> None:
    for person in (dave, alice):
        with pytest.raises(PermissionDenied):
            import_suite(SUITE, person)
    assert not EvaluationSuite.objects.exists()
