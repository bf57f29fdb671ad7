"""Reading and validating routing-policy YAML.

Every error carries its path into the document (``routes[3].fallbacks[1]``) and a plain
message. The same validation runs on every revision, in the editor as people type, and again at
publish time. The format is documented in docs/policy-format.md.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from compliance.matrix import Matrix
from compliance.models import DataClassification
from registry.models import ModelVersion, Status
from steward import strict_yaml
from steward.strict_yaml import StrictLoader, StrictYamlError

from .models import CostTier, PolicySet, Task

MAX_DOCUMENT_BYTES = 256 * 1024
MAX_ROUTES = 2000
ESCALATION_CONDITIONS = ("error", "timeout", "low_confidence", "context_overflow")
ROUTE_KEYS = {"task", "classification", "model", "tier", "fallbacks", "escalation", "constraints", "notes"}
ESCALATION_KEYS = {"to", "when", "confidence_threshold_bp", "max_rate_bp"}
CONSTRAINT_KEYS = {"max_latency_ms", "max_cost_micro_usd"}
TOP_KEYS = {"routes", "default", "description"}
DEFAULT_ACTIONS = ("deny",)


@dataclass(frozen=True)
class PolicyError:
    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass
class ValidationResult:
    errors: list[PolicyError] = field(default_factory=list)
    document: dict | None = None  # the parsed YAML, when it parsed

    @property
    def ok(self) -> bool:
        return not self.errors


# The loader and its error, as routing policies call them.
PolicyYamlError = StrictYamlError


class PolicyLoader(StrictLoader):
    what = "policies"


def parse_document(text: str) -> dict:
    """Parse policy YAML safely; raises PolicyYamlError with the line."""
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise PolicyYamlError(f"the document is larger than {MAX_DOCUMENT_BYTES // 1024} KB")
    document = strict_yaml.load(text, PolicyLoader)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise PolicyYamlError("the document must be a mapping with 'routes' and 'default'")
    return document


@dataclass
class Catalogue:
    """What the validator looks things up in, loaded in a fixed number of queries."""

    versions: dict[str, ModelVersion]
    tasks: dict[str, Task]
    classifications: dict[str, DataClassification]
    tiers: dict[str, CostTier]

    @classmethod
    def load(cls, refs: set[str], task_slugs: set[str], classification_slugs: set[str]) -> Catalogue:
        return cls(
            versions={v.ref: v for v in ModelVersion.objects.with_related().filter(ref__in=refs)},
            tasks={t.slug: t for t in Task.objects.select_related("tier").filter(slug__in=task_slugs)},
            classifications={c.slug: c for c in DataClassification.objects.filter(slug__in=classification_slugs)},
            tiers={t.slug: t for t in CostTier.objects.all()},
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def validate_document(text: str, policy_set: PolicySet, at: dt.datetime | None = None) -> ValidationResult:
    """All errors in a policy document for ``policy_set`` at time ``at`` (default now)."""
    try:
        document = parse_document(text)
    except PolicyYamlError as error:
        return ValidationResult(errors=[PolicyError(error.path, str(error))])
    return validate_policy(document, policy_set, at)


def validate_policy(document: dict, policy_set: PolicySet, at: dt.datetime | None = None) -> ValidationResult:
    at = at or timezone.now()
    errors: list[PolicyError] = []
    result = ValidationResult(errors=errors, document=document)

    def error(path: str, message: str) -> None:
        errors.append(PolicyError(path, message))

    for key in document:
        if key not in TOP_KEYS:
            error(key, f"unknown key {key!r}; expected {', '.join(sorted(TOP_KEYS))}")
    default = document.get("default")
    if default is None:
        error("default", "required: the action when no route matches (deny)")
    elif default not in DEFAULT_ACTIONS:
        error("default", f"must be {' or '.join(DEFAULT_ACTIONS)}, not {default!r}")
    routes = document.get("routes")
    if routes is None:
        error("routes", "required: a list of routes")
        return result
    if not isinstance(routes, list):
        error("routes", "must be a list of routes")
        return result
    if len(routes) > MAX_ROUTES:
        error("routes", f"at most {MAX_ROUTES} routes")
        return result

    # Gather every name first so that lookups cost a fixed number of queries.
    refs: set[str] = set()
    tasks: set[str] = set()
    classifications: set[str] = set()
    for route in routes:
        if not isinstance(route, dict):
            continue
        for name, bucket in (("model", refs), ("task", tasks), ("classification", classifications)):
            if isinstance(route.get(name), str):
                bucket.add(route[name])
        if isinstance(route.get("fallbacks"), list):
            refs.update(f for f in route["fallbacks"] if isinstance(f, str))
        if isinstance(route.get("escalation"), dict) and isinstance(route["escalation"].get("to"), str):
            refs.add(route["escalation"]["to"])
    catalogue = Catalogue.load(refs, tasks, classifications)
    matrix = Matrix(catalogue.versions.values(), catalogue.classifications.values(), at)

    seen_keys: dict[tuple[str, str], int] = {}
    for index, route in enumerate(routes):
        path = f"routes[{index}]"
        if not isinstance(route, dict):
            error(path, "must be a mapping with task, classification and model")
            continue
        for key in route:
            if key not in ROUTE_KEYS:
                error(f"{path}.{key}", f"unknown key {key!r}; expected {', '.join(sorted(ROUTE_KEYS))}")
        task = _lookup(route, "task", path, catalogue.tasks, "task", error)
        classification = _lookup(route, "classification", path, catalogue.classifications, "data classification", error)
        if _strings(route.get("task")) and _strings(route.get("classification")):
            key = (route["task"], route["classification"])
            if key in seen_keys:
                error(path, f"duplicate route for {key[0]} / {key[1]} (also routes[{seen_keys[key]}])")
            else:
                seen_keys[key] = index

        tier = task.tier if task else None
        if "tier" in route:
            tier = _lookup(route, "tier", path, catalogue.tiers, "cost tier", error)

        def check_model(ref_path: str, ref: Any, expect_tier: CostTier | None, _c=classification):
            return _check_model(ref_path, ref, expect_tier, _c, catalogue, matrix, error)

        primary = check_model(f"{path}.model", route.get("model"), tier) if "model" in route else None
        if "model" not in route:
            error(f"{path}.model", "required: the model reference this route sends requests to")

        fallbacks = route.get("fallbacks", [])
        fallback_versions: list[ModelVersion] = []
        if not isinstance(fallbacks, list):
            error(f"{path}.fallbacks", "must be a list of model references")
            fallbacks = []
        seen_fallbacks: dict[str, int] = {}
        for f_index, ref in enumerate(fallbacks):
            f_path = f"{path}.fallbacks[{f_index}]"
            if isinstance(ref, str) and ref == route.get("model"):
                error(f_path, f"{ref} is the route's own model: a fallback cycle")
                continue
            if isinstance(ref, str) and ref in seen_fallbacks:
                error(f_path, f"{ref} is already fallbacks[{seen_fallbacks[ref]}]")
                continue
            if isinstance(ref, str):
                seen_fallbacks[ref] = f_index
            version = check_model(f_path, ref, tier)
            if version is not None:
                fallback_versions.append(version)

        if policy_set.require_provider_diversity and primary is not None:
            other = [v for v in fallback_versions if v.model.provider_id != primary.model.provider_id]
            if not other:
                error(
                    f"{path}.fallbacks",
                    f"{policy_set.slug} requires a fallback from a provider other than "
                    f"{primary.model.provider.name} (single-provider dependency)",
                )

        if "escalation" in route:
            _check_escalation(route["escalation"], f"{path}.escalation", tier, catalogue, check_model, error)

        if "constraints" in route:
            _check_constraints(route["constraints"], f"{path}.constraints", error)
    return result


def _check_model(
    ref_path: str,
    ref: Any,
    expect_tier: CostTier | None,
    classification: DataClassification | None,
    catalogue: Catalogue,
    matrix: Matrix,
    error,
) -> ModelVersion | None:
    """Check one model reference of a route: known, approved, usable for the classification, in tier."""
    if not _strings(ref):
        error(ref_path, "must be a model reference provider/model@version")
        return None
    version = catalogue.versions.get(ref)
    if version is None:
        error(ref_path, f"unknown model {ref!r}: no such version in the registry")
        return None
    if version.status != Status.APPROVED:
        error(ref_path, f"{ref} is {version.get_status_display().lower()}, not approved")
    if classification is not None:
        verdict = matrix.verdict(version, classification)
        if not verdict.usable:
            error(ref_path, f"{ref} may not process {classification.slug}: {'; '.join(verdict.reasons)}")
    if expect_tier is not None:
        if version.cost_tier != expect_tier.slug:
            error(ref_path, f"{ref} is in tier {version.cost_tier}, the route is in tier {expect_tier.slug}")
        elif version.input_price_micro_usd > expect_tier.price_ceiling_micro_usd:
            error(
                ref_path,
                f"{ref} costs {version.input_price_micro_usd} micro-USD per million input tokens, above the "
                f"{expect_tier.slug} ceiling of {expect_tier.price_ceiling_micro_usd}",
            )
    return version


def _lookup(route: dict, key: str, path: str, table: dict, what: str, error) -> Any:
    value = route.get(key)
    if value is None:
        # Only called for "tier" when the key is present: an empty tier must not switch off the tier checks.
        error(f"{path}.{key}", f"required: the {what}" if key != "tier" else f"must be a {what} name")
        return None
    if not _strings(value):
        error(f"{path}.{key}", f"must be a {what} name")
        return None
    found = table.get(value)
    if found is None:
        error(f"{path}.{key}", f"unknown {what} {value!r}")
    return found


def _check_escalation(
    escalation: Any, path: str, tier: CostTier | None, catalogue: Catalogue, check_model, error
) -> None:
    if not isinstance(escalation, dict):
        error(path, "must be a mapping with to, when and max_rate_bp")
        return
    for key in escalation:
        if key not in ESCALATION_KEYS:
            error(f"{path}.{key}", f"unknown key {key!r}; expected {', '.join(sorted(ESCALATION_KEYS))}")
    target = None
    if "to" not in escalation:
        error(f"{path}.to", "required: the model to escalate to")
    else:
        # The target is checked against its own tier, which must rank above the route's.
        ref = escalation["to"]
        target = catalogue.versions.get(ref) if isinstance(ref, str) else None
        target_tier = catalogue.tiers.get(target.cost_tier) if target else None
        check_model(f"{path}.to", ref, target_tier)
        if target is not None and target_tier is None:
            error(f"{path}.to", f"{ref} is in tier {target.cost_tier!r}, which is not a cost tier")
        elif target is not None and tier is not None and target_tier.rank <= tier.rank:
            error(
                f"{path}.to",
                f"escalation must go to a higher tier than {tier.slug}; {ref} is in tier {target_tier.slug}",
            )
    when = escalation.get("when")
    if when is None:
        error(f"{path}.when", f"required: one or more of {', '.join(ESCALATION_CONDITIONS)}")
    elif not isinstance(when, list) or not when:
        error(f"{path}.when", f"must be a non-empty list of {', '.join(ESCALATION_CONDITIONS)}")
    else:
        for w_index, condition in enumerate(when):
            if condition not in ESCALATION_CONDITIONS:
                error(
                    f"{path}.when[{w_index}]",
                    f"unknown condition {condition!r}; use {', '.join(ESCALATION_CONDITIONS)}",
                )
        if "low_confidence" in when and "confidence_threshold_bp" not in escalation:
            error(f"{path}.confidence_threshold_bp", "required with low_confidence: the threshold in basis points")
    if "confidence_threshold_bp" in escalation:
        value = escalation["confidence_threshold_bp"]
        if not _is_int(value) or not 0 <= value <= 10000:
            error(f"{path}.confidence_threshold_bp", "must be an integer from 0 to 10000 (basis points)")
    if "max_rate_bp" not in escalation:
        error(f"{path}.max_rate_bp", "required: the cap on the escalation rate in basis points (0–10000)")
    else:
        value = escalation["max_rate_bp"]
        if not _is_int(value) or not 0 <= value <= 10000:
            error(f"{path}.max_rate_bp", f"must be an integer from 0 to 10000 (basis points), not {value!r}")


def _check_constraints(constraints: Any, path: str, error) -> None:
    if not isinstance(constraints, dict):
        error(path, "must be a mapping with max_latency_ms and/or max_cost_micro_usd")
        return
    for key, value in constraints.items():
        if key not in CONSTRAINT_KEYS:
            error(f"{path}.{key}", f"unknown key {key!r}; expected {', '.join(sorted(CONSTRAINT_KEYS))}")
        elif not _is_int(value) or value <= 0:
            error(f"{path}.{key}", "must be a positive integer")
