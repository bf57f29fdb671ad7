"""Suites as YAML: import and export Steward's format, and import promptfoo-style test files.

Steward's format::

    name: Ticket triage accuracy
    slug: ticket-triage-accuracy
    category: accuracy            # accuracy | bias | safety | compliance
    task: ticket-triage           # optional (a key portfolio adds: the task the suite guards)
    pass_threshold_bp: 8000
    schedule_minutes: 1440        # optional
    scorer: label
    scorer_config: {labels: [billing, technical, account]}
    cases:
      - key: t1
        prompt: "Classify this support ticket ..."   # or messages: [{role: user, content: ...}]
        expected: billing
        tags: [easy]
        group: g1                 # bias groups

promptfoo files (``tests`` with ``vars`` and ``assert`` of type equals, contains, icontains,
regex or is-json; ``prompts`` with ``{{var}}`` placeholders) import as cases.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from audits import events as audit
from steward import strict_yaml
from steward.strict_yaml import StrictLoader, StrictYamlError

from ..models import EvaluationCase, EvaluationSuite, ModelVersion, SuiteCategory
from . import scorers

MAX_SUITE_BYTES = 8 * 1024 * 1024
MAX_CASES = 20_000
SUITE_KEYS = {
    "name",
    "slug",
    "category",
    "description",
    "pass_threshold_bp",
    "schedule_minutes",
    "scorer",
    "scorer_config",
    "judge",
    "rubric",
    "concurrency",
    "max_output_chars",
    "cases",
}
CASE_KEYS = {"key", "prompt", "messages", "expected", "scorer", "scorer_config", "tags", "group"}
PROMPTFOO_ASSERTS = {
    "equals": ("exact", {}),
    "contains": ("contains", {"case_sensitive": True}),
    "icontains": ("contains", {"case_sensitive": False}),
    "regex": ("regex", {}),
    "is-json": ("json", {}),
}
MANAGE_SUITES = "registry.add_evaluationsuite"


@dataclass(frozen=True)
class SuiteLink:
    """A key of a suite's YAML and API that an app above the registry owns.

    portfolio registers ``task`` (the task a suite guards, ``Task.suites``): the registry stores
    nothing of it and imports nothing of portfolio; it asks the link.
    """

    key: str
    label: str
    check: Callable[[str], str]  # why a value is refused ("" when it names something)
    attach: Callable[[EvaluationSuite, str | None], None]  # inside the import's transaction
    values: Callable[[list[int]], dict[int, str]]  # suite id → value, for many suites in one query


SUITE_LINKS: dict[str, SuiteLink] = {}


def register_suite_link(link: SuiteLink) -> None:
    SUITE_LINKS[link.key] = link


def linked_values(suites: list[EvaluationSuite]) -> dict[int, dict[str, str]]:
    """suite id → {key: value} for every registered link; one query per link."""
    ids = [suite.pk for suite in suites]
    found: dict[int, dict[str, str]] = {pk: {} for pk in ids}
    for link in SUITE_LINKS.values():
        for pk, value in link.values(ids).items():
            found[pk][link.key] = value
    return found


def with_links(suites) -> list[EvaluationSuite]:
    """The suites, each with ``links``: a list of (label, value) for every registered link."""
    suites = list(suites)
    values = linked_values(suites)
    for suite in suites:
        suite.links = [(link.label, values[suite.pk].get(link.key)) for link in SUITE_LINKS.values()]
    return suites


class SuiteFormatError(ValueError):
    """A suite file that cannot be imported; ``errors`` maps paths to messages."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{path}: {message}" if path else message for path, message in errors))

    def as_dict(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        for path, message in self.errors:
            result.setdefault(path or "yaml", []).append(message)
        return result


class SuiteLoader(StrictLoader):
    what = "suites"


def load_yaml(text: str) -> Any:
    if len(text.encode()) > MAX_SUITE_BYTES:
        raise SuiteFormatError([("", f"the file is larger than {MAX_SUITE_BYTES // (1024 * 1024)} MB")])
    try:
        return strict_yaml.load(text, SuiteLoader)
    except StrictYamlError as error:
        raise SuiteFormatError([(error.path, str(error))]) from None


@dataclass
class SuiteSpec:
    fields: dict
    cases: list[dict]
    links: dict[str, str] = field(default_factory=dict)  # values of the registered SuiteLink keys


def _messages(case: dict, path: str, errors: list) -> list[dict] | None:
    if "messages" in case:
        messages = case["messages"]
        if (
            not isinstance(messages, list)
            or not messages
            or not all(
                isinstance(m, dict)
                and isinstance(m.get("content"), str)
                and m.get("role") in ("system", "user", "assistant")
                for m in messages
            )
        ):
            errors.append((f"{path}.messages", "must be a list of {role: system|user|assistant, content: text}"))
            return None
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    prompt = case.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        errors.append((f"{path}.prompt", "required: the prompt (or messages)"))
        return None
    return [{"role": "user", "content": prompt}]


def parse_suite(document: Any) -> SuiteSpec:
    """Check a parsed Steward suite document; every error names its path (cases[3].expected)."""
    errors: list[tuple[str, str]] = []
    if not isinstance(document, dict):
        raise SuiteFormatError([("", "the file must be a mapping with name, slug, category and cases")])
    known = SUITE_KEYS | set(SUITE_LINKS)
    for key in document:
        if key not in known:
            errors.append((key, f"unknown key; expected {', '.join(sorted(known))}"))
    fields: dict[str, Any] = {}
    for key in ("name", "slug"):
        if not isinstance(document.get(key), str) or not document[key].strip():
            errors.append((key, "required: a non-empty string"))
        else:
            fields[key] = document[key].strip()
    category = document.get("category")
    if category not in SuiteCategory.values:
        errors.append(("category", f"must be one of {', '.join(SuiteCategory.values)}"))
    else:
        fields["category"] = category
    for key, low, high in (
        ("pass_threshold_bp", 0, 10000),
        ("schedule_minutes", 1, 525_600),
        ("concurrency", 1, 256),
        ("max_output_chars", 1, 1_000_000),
    ):
        if key in document and document[key] is not None:
            value = document[key]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                errors.append((key, f"must be an integer from {low} to {high}"))
            else:
                fields[key] = value
    for key in ("description", "rubric"):
        if key in document:
            fields[key] = str(document[key] or "")
    scorer = document.get("scorer", "exact")
    config = document.get("scorer_config", {}) or {}
    try:
        scorers.check_scorer(scorer, config)
        fields["scorer"], fields["scorer_config"] = scorer, config
    except scorers.ScorerConfigError as error:
        errors.append(("scorer", str(error)))
    links = {key: str(document[key]) for key in SUITE_LINKS if document.get(key) is not None}
    if "judge" in document and document["judge"] is not None:
        fields["judge_ref"] = str(document["judge"])
    cases_in = document.get("cases")
    cases: list[dict] = []
    if not isinstance(cases_in, list) or not cases_in:
        errors.append(("cases", "required: a non-empty list of cases"))
    elif len(cases_in) > MAX_CASES:
        errors.append(("cases", f"at most {MAX_CASES} cases"))
    else:
        seen: dict[str, int] = {}
        for index, case in enumerate(cases_in):
            path = f"cases[{index}]"
            if not isinstance(case, dict):
                errors.append((path, "must be a mapping with prompt (or messages) and expected"))
                continue
            for key in case:
                if key not in CASE_KEYS:
                    errors.append((f"{path}.{key}", f"unknown key; expected {', '.join(sorted(CASE_KEYS))}"))
            key = str(case.get("key") or f"case-{index + 1}")
            if key in seen:
                errors.append((f"{path}.key", f"duplicate key {key!r} (also cases[{seen[key]}])"))
            seen[key] = index
            messages = _messages(case, path, errors)
            case_scorer = case.get("scorer", "") or ""
            case_config = case.get("scorer_config", {}) or {}
            if case_scorer:
                try:
                    scorers.check_scorer(case_scorer, case_config)
                except scorers.ScorerConfigError as error:
                    errors.append((f"{path}.scorer", str(error)))
            tags = case.get("tags", []) or []
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                errors.append((f"{path}.tags", "must be a list of strings"))
                tags = []
            expected = case.get("expected", "")
            cases.append(
                {
                    "key": key,
                    "position": index,
                    "messages": messages,
                    "expected": "" if expected is None else str(expected),
                    "scorer": case_scorer,
                    "scorer_config": case_config,
                    "tags": tags,
                    "group": str(case.get("group") or ""),
                }
            )
    if errors:
        raise SuiteFormatError(errors)
    return SuiteSpec(fields, cases, links)


def _render(template: str, variables: dict) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(variables.get(m.group(1), m.group(0))), template)


def parse_promptfoo(document: Any, name: str, slug: str, category: str) -> SuiteSpec:
    """A promptfoo test file as a Steward suite: each test one case, its first assertion its scorer."""
    errors: list[tuple[str, str]] = []
    if not isinstance(document, dict) or not isinstance(document.get("tests"), list) or not document["tests"]:
        raise SuiteFormatError([("tests", "a promptfoo file needs a non-empty list of tests")])
    prompts = document.get("prompts") or []
    template = prompts[0] if isinstance(prompts, list) and prompts and isinstance(prompts[0], str) else None
    cases = []
    for index, test in enumerate(document["tests"]):
        path = f"tests[{index}]"
        if not isinstance(test, dict):
            errors.append((path, "must be a mapping with vars and assert"))
            continue
        variables = test.get("vars") or {}
        if not isinstance(variables, dict):
            errors.append((f"{path}.vars", "must be a mapping"))
            continue
        if template:
            prompt = _render(template, variables)
        elif "prompt" in variables:
            prompt = str(variables["prompt"])
        else:
            prompt = "\n".join(f"{k}: {v}" for k, v in variables.items())
        asserts = test.get("assert") or []
        if not isinstance(asserts, list) or not asserts or not isinstance(asserts[0], dict):
            errors.append((f"{path}.assert", "needs at least one assertion {type, value}"))
            continue
        first = asserts[0]
        kind = first.get("type")
        if kind not in PROMPTFOO_ASSERTS:
            errors.append(
                (f"{path}.assert[0].type", f"unsupported assertion {kind!r}; use {', '.join(PROMPTFOO_ASSERTS)}")
            )
            continue
        scorer, config = PROMPTFOO_ASSERTS[kind]
        value = first.get("value", "")
        expected = "" if value is None else str(value)
        if scorer == "regex":
            config = {"pattern": expected}
        cases.append(
            {
                "key": str(test.get("description") or f"test-{index + 1}")[:100],
                "position": index,
                "messages": [{"role": "user", "content": prompt}],
                "expected": expected,
                "scorer": scorer,
                "scorer_config": config,
                "tags": [],
                "group": "",
            }
        )
    if errors:
        raise SuiteFormatError(errors)
    keys = [c["key"] for c in cases]
    for index, key in enumerate(keys):
        if keys.index(key) != index:
            cases[index]["key"] = f"{key}-{index + 1}"
    return SuiteSpec({"name": name, "slug": slug, "category": category, "scorer": "exact", "scorer_config": {}}, cases)


def save_suite(spec: SuiteSpec, by) -> tuple[EvaluationSuite, int, int]:
    """Create or update the suite and its cases (matched by key); returns (suite, created, updated)."""
    if by is not None and not by.has_perm(MANAGE_SUITES):
        raise PermissionDenied("Only engineers can import evaluation suites.")
    fields = dict(spec.fields)
    judge_ref = fields.pop("judge_ref", None)
    for key, value in spec.links.items():
        if key in SUITE_LINKS and (refused := SUITE_LINKS[key].check(value)):
            raise SuiteFormatError([(key, refused)])
    if judge_ref is not None:
        judge = ModelVersion.objects.filter(ref=judge_ref).first()
        if judge is None:
            raise SuiteFormatError([("judge", f"unknown model version {judge_ref!r}")])
        fields["judge"] = judge
    with transaction.atomic():
        suite = EvaluationSuite.objects.filter(slug=fields["slug"]).first()
        if suite is None:
            suite = EvaluationSuite(created_by=by, **fields)
        else:
            for key, value in fields.items():
                setattr(suite, key, value)
        try:
            suite.full_clean(validate_unique=True)
        except ValidationError as error:
            raise SuiteFormatError(
                [(field, " ".join(messages)) for field, messages in error.message_dict.items()]
            ) from None
        suite._history_user = by
        suite.save()
        existing = {case.key: case for case in suite.cases.all()}
        created = updated = 0
        new_cases = []
        for data in spec.cases:
            case = existing.get(data["key"])
            if case is None:
                new_cases.append(EvaluationCase(suite=suite, **data))
                created += 1
            else:
                for key, value in data.items():
                    setattr(case, key, value)
                case.save()
                updated += 1
        EvaluationCase.objects.bulk_create(new_cases, batch_size=1000)
        for key, link in SUITE_LINKS.items():
            if key in spec.links:
                link.attach(suite, spec.links[key])
        audit.record(
            "evaluation_suite.import",
            actor=by,
            obj=suite,
            after={"cases_created": created, "cases_updated": updated, "cases": suite.cases.count()},
        )
    return suite, created, updated


def import_suite(
    text: str,
    by,
    *,
    format: str = "steward",
    name: str = "",
    slug: str = "",  # noqa: A002
    category: str = "accuracy",
) -> tuple[EvaluationSuite, int, int]:
    document = load_yaml(text)
    if format == "promptfoo":
        if not name or not slug:
            raise SuiteFormatError([("name", "a promptfoo import needs a name and a slug for the suite")])
        spec = parse_promptfoo(document, name, slug, category)
    elif format == "steward":
        spec = parse_suite(document)
    else:
        raise SuiteFormatError([("format", "must be steward or promptfoo")])
    return save_suite(spec, by)


def export_suite(suite: EvaluationSuite) -> str:
    """The suite in Steward's YAML format (what import_suite reads back)."""
    document: dict[str, Any] = {
        "name": suite.name,
        "slug": suite.slug,
        "category": suite.category,
        **linked_values([suite])[suite.pk],
        "description": suite.description,
        "pass_threshold_bp": suite.pass_threshold_bp,
        "schedule_minutes": suite.schedule_minutes,
        "scorer": suite.scorer,
        "scorer_config": suite.scorer_config,
        "judge": suite.judge.ref if suite.judge_id else None,
        "rubric": suite.rubric,
        "concurrency": suite.concurrency,
        "max_output_chars": suite.max_output_chars,
    }
    document = {k: v for k, v in document.items() if v not in (None, "", {})}
    cases = []
    for case in suite.cases.all():
        entry: dict[str, Any] = {"key": case.key}
        if len(case.messages) == 1 and case.messages[0]["role"] == "user":
            entry["prompt"] = case.messages[0]["content"]
        else:
            entry["messages"] = case.messages
        entry["expected"] = case.expected
        if case.scorer:
            entry["scorer"] = case.scorer
        if case.scorer_config:
            entry["scorer_config"] = case.scorer_config
        if case.tags:
            entry["tags"] = case.tags
        if case.group:
            entry["group"] = case.group
        cases.append(entry)
    document["cases"] = cases
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)
