"""Each scorer on its own: what passes, what fails, and which configurations are refused."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from demo.server import start_in_thread
from registry.evaluation import scorers
from registry.evaluation.endpoints import client_for, endpoint_session
from registry.evaluation.scorers import FULL, Score, ScorerConfigError
from registry.models import ModelVersion


def run(coroutine):
    """Run a coroutine to its end in a thread of its own: the browser tests of the same session keep
    an event loop running in the main thread, where ``asyncio.run`` refuses to start."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


def test_exact_folds_white_space_and_is_case_sensitive_by_default() -> None:
    assert scorers.exact("  billing \n", "billing", {}).passed
    assert scorers.exact("a   b", "a b", {}).score_bp == FULL
    assert not scorers.exact("Billing", "billing", {}).passed
    assert scorers.exact("Billing", "billing", {"case_sensitive": False}).passed
    assert not scorers.exact("billing, I think", "billing", {}).passed


def test_contains_ignores_case_unless_asked() -> None:
    assert scorers.contains("The answer is PARIS.", "paris", {}).passed
    assert not scorers.contains("The answer is PARIS.", "paris", {"case_sensitive": True}).passed
    assert scorers.contains("The answer is Paris.", "Paris", {"case_sensitive": True}).passed
    assert scorers.contains("it is 42", "", {"value": "42"}).passed
    assert not scorers.contains("London", "Paris", {}).passed


def test_regex_matches_a_pattern_and_refuses_an_invalid_one() -> None:
    score = scorers.regex("Order #12345 shipped", "", {"pattern": r"#\d{5}\b"})
    assert score.passed and score.label == "#12345"
    assert not scorers.regex("Order shipped", "", {"pattern": r"#\d+"}).passed
    assert scorers.regex("YES", r"^yes$", {"ignore_case": True}).passed
    assert not scorers.regex("YES", r"^yes$", {}).passed
    with pytest.raises(ScorerConfigError, match=r"regex: invalid pattern '\(unclosed'"):
        scorers.regex("anything", "", {"pattern": "(unclosed"})
    with pytest.raises(ScorerConfigError, match="invalid pattern"):
        scorers.check_scorer("regex", {"pattern": "[a-"})


def test_valid_json_accepts_a_fenced_block() -> None:
    assert scorers.valid_json('{"label": "billing"}', "", {}).passed
    assert scorers.valid_json('Here it is:\n```json\n{"a": [1, 2]}\n```', "", {}).passed
    assert scorers.valid_json("```\n[1, 2, 3]\n```", "", {}).passed
    score = scorers.valid_json("{label: billing}", "", {})
    assert not score.passed and score.detail.startswith("not JSON")


SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["billing", "technical"]}, "urgent": {"type": "boolean"}},
    "required": ["label"],
}


def test_json_schema_validates_the_answer_and_names_the_failing_path() -> None:
    assert scorers.json_schema('{"label": "billing", "urgent": true}', "", {"schema": SCHEMA}).passed
    wrong = scorers.json_schema('{"label": "billing", "urgent": "yes"}', "", {"schema": SCHEMA})
    assert not wrong.passed and wrong.detail.startswith("urgent:")
    missing = scorers.json_schema('{"urgent": false}', "", {"schema": SCHEMA})
    assert not missing.passed and "'label' is a required property" in missing.detail
    assert not scorers.json_schema("not json", "", {"schema": SCHEMA}).passed
    # The expected text may carry the schema.
    assert scorers.json_schema('```json\n{"label": "technical"}\n```', '{"required": ["label"]}', {}).passed


def test_json_schema_refuses_an_invalid_schema_or_none_at_all() -> None:
    with pytest.raises(ScorerConfigError, match="json-schema: invalid schema"):
        scorers.json_schema("{}", "", {"schema": {"type": "nonsense"}})
    with pytest.raises(ScorerConfigError, match="no schema"):
        scorers.json_schema("{}", "not a schema", {})
    with pytest.raises(ScorerConfigError, match="invalid schema"):
        scorers.check_scorer("json-schema", {"schema": {"type": 12}})


def test_number_within_tolerance() -> None:
    assert scorers.number("The total is 1,234.5 EUR", "1234.5", {}).passed
    assert scorers.number("about 99", "100", {"tolerance": 1}).passed
    assert not scorers.number("about 98", "100", {"tolerance": 1}).passed
    assert scorers.number("-7", "", {"value": -7}).passed
    assert scorers.number("no figure here", "3", {}).detail == "no number in the answer"
    with pytest.raises(ScorerConfigError, match="is not a number"):
        scorers.number("3", "three", {})


def test_label_match_reads_the_first_word_or_the_first_named_label() -> None:
    assert scorers.label("Billing. The customer was charged twice.", "billing", {}).passed
    labels = {"labels": ["billing", "technical", "account"]}
    score = scorers.label("This is about the account, not billing", "account", labels)
    assert score.passed and score.label == "account"
    assert not scorers.label("I am not sure", "billing", labels).passed
    assert scorers.label("I am not sure", "billing", labels).label == ""


def test_refusal_expected_and_not_expected() -> None:
    refusal = "I can't help with that request."
    answer = "Bonjour means good morning."
    assert scorers.refusal(refusal, "", {}).passed
    assert not scorers.refusal(answer, "", {}).passed
    assert scorers.refusal(answer, "", {"expect_refusal": False}).passed
    benign_refused = scorers.refusal("I must decline.", "", {"expect_refusal": False})
    assert not benign_refused.passed and benign_refused.label == "refused"


def test_group_consistency_scores_whole_groups() -> None:
    # Each member reads its label; the score comes when the group is complete.
    read = scorers.group_consistency("Approve, the income covers it", "", {"labels": ["approve", "deny"]})
    assert (read.label, read.score_bp) == ("approve", 0)
    scores = scorers.score_groups(
        {"loan-1": {1: "approve", 2: "approve", 3: "approve"}, "loan-2": {4: "approve", 5: "deny"}, "g3": {6: ""}}
    )
    assert all(scores[i].passed and scores[i].score_bp == FULL for i in (1, 2, 3))
    assert not scores[4].passed and not scores[5].passed
    assert scores[4].detail == "group loan-2: labels differ: 'approve', 'deny'"
    assert not scores[6].passed  # nobody gave a label: not consistent


def test_check_scorer_refuses_unknown_scorers_and_bad_configurations() -> None:
    with pytest.raises(ScorerConfigError, match="unknown scorer 'fuzzy'"):
        scorers.check_scorer("fuzzy", {})
    with pytest.raises(ScorerConfigError, match="must be a mapping"):
        scorers.check_scorer("exact", ["case_sensitive"])
    for name in scorers.SCORER_NAMES:
        scorers.check_scorer(name, {})


def test_llm_judge_turns_the_judges_score_into_basis_points() -> None:
    asked: list[list[dict]] = []

    async def ask(messages: list[dict]) -> str:
        asked.append(messages)
        return "SCORE: 8.5\nMostly right."

    score = run(scorers.judge("Paris", "Paris", "Capital of France?", "Be strict.", {}, ask))
    assert score == Score(8500, True, "8.5/10", "SCORE: 8.5\nMostly right.")
    prompt = asked[0][0]["content"]
    assert "Be strict." in prompt and "Capital of France?" in prompt and "Answer to grade:\nParis" in prompt
    strict = run(scorers.judge("Paris", "", "q", "", {"pass_bp": 9000}, ask))
    assert strict.score_bp == 8500 and not strict.passed


def test_llm_judge_without_a_score_fails_the_case() -> None:
    async def ask(messages: list[dict]) -> str:
        return "It looks fine to me."

    score = run(scorers.judge("x", "y", "q", "", {}, ask))
    assert score.score_bp == 0 and not score.passed and "the judge gave no SCORE" in score.detail

    async def generous(messages: list[dict]) -> str:
        return "SCORE: 14"

    assert run(scorers.judge("x", "", "q", "", {}, generous)).score_bp == FULL  # clamped to 10


def test_llm_judge_with_the_demo_judge_over_http() -> None:
    server = start_in_thread(latency_ms=0)
    judge = ModelVersion(
        base_url=server.url,
        provider_model_id="demo-judge",
        api_key_env="DEMO_ENDPOINT_API_KEY",
        input_price_micro_usd=0,
        output_price_micro_usd=0,
    )

    async def grade(output: str, expected: str) -> Score:
        async with endpoint_session(1) as http:
            client = client_for(judge, http, timeout=10)

            async def ask(messages: list[dict]) -> str:
                return (await client.complete(messages)).text

            return await scorers.judge(output, expected, "Classify the ticket.", "", {}, ask)

    try:
        right = run(grade("It is a billing question.", "billing"))
        wrong = run(grade("technical", "billing"))
    finally:
        server.shutdown()
        server.server_close()
    assert (right.score_bp, right.passed) == (9000, True)
    assert "agrees with the reference" in right.detail
    assert (wrong.score_bp, wrong.passed) == (3000, False)
