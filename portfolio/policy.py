"""A routing policy as a domain type: its routes, what each may use, and route-level diffs.

A policy version stores its *spec*: the YAML's normalised form as JSON (``normalise``). Everything
that reads routes goes through ``Policy`` and ``Route`` (``PolicyVersion.policy``,
``PolicyVersion.route_for``), so the shape of the spec is known in this module alone (and in the
validator of raw YAML, ``portfolio.validation``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property

import yaml

PRIMARY = "primary"
ESCALATION = "escalation"


@dataclass(frozen=True)
class Escalation:
    """Where a route escalates to, when, and how often at most (basis points of its requests)."""

    to: str
    when: tuple[str, ...]
    max_rate_bp: int
    confidence_threshold_bp: int | None = None

    def as_spec(self) -> dict:
        return {
            "to": self.to,
            "when": list(self.when),
            "confidence_threshold_bp": self.confidence_threshold_bp,
            "max_rate_bp": self.max_rate_bp,
        }

    def __str__(self) -> str:
        return f"to {self.to} on {', '.join(self.when)} (cap {self.max_rate_bp} bp)"


@dataclass(frozen=True)
class Route:
    """One route: a task and a data classification go to a model, then its fallbacks in order,
    escalating to a higher tier on the conditions given."""

    task: str
    classification: str
    model: str
    fallbacks: tuple[str, ...] = ()
    escalation: Escalation | None = None
    tier: str | None = None
    constraints: dict = field(default_factory=dict, hash=False, compare=True)

    @classmethod
    def from_spec(cls, route: dict) -> Route:
        escalation = route.get("escalation")
        return cls(
            task=route["task"],
            classification=route["classification"],
            model=route["model"],
            fallbacks=tuple(route.get("fallbacks") or ()),
            escalation=Escalation(
                to=escalation["to"],
                when=tuple(escalation["when"]),
                max_rate_bp=escalation["max_rate_bp"],
                confidence_threshold_bp=escalation.get("confidence_threshold_bp"),
            )
            if escalation
            else None,
            tier=route.get("tier"),
            constraints=dict(route.get("constraints") or {}),
        )

    def as_spec(self) -> dict:
        return {
            "task": self.task,
            "classification": self.classification,
            "tier": self.tier,
            "model": self.model,
            "fallbacks": list(self.fallbacks),
            "escalation": self.escalation.as_spec() if self.escalation else None,
            "constraints": dict(self.constraints),
        }

    @property
    def key(self) -> tuple[str, str]:
        return (self.task, self.classification)

    @property
    def models(self) -> tuple[str, ...]:
        """Every model the route may use, in order: the primary, the fallbacks, the escalation target."""
        escalation = (self.escalation.to,) if self.escalation else ()
        return (self.model, *self.fallbacks, *escalation)

    def place_of(self, ref: str) -> str | None:
        """Where ``ref`` stands in the route: "primary", "fallback 1" …, "escalation", or None."""
        if ref == self.model:
            return PRIMARY
        if ref in self.fallbacks:
            return f"fallback {self.fallbacks.index(ref) + 1}"
        if self.escalation and ref == self.escalation.to:
            return ESCALATION
        return None

    def with_model(self, ref: str) -> Route:
        """This route sent to ``ref`` first; ``ref`` leaves the fallbacks (a model is not its own fallback)."""
        return replace(self, model=ref, fallbacks=tuple(f for f in self.fallbacks if f != ref))


@dataclass(frozen=True)
class Policy:
    """A routing policy: its routes (by task and classification) and what applies when none matches."""

    routes: tuple[Route, ...]
    default: str = "deny"

    @classmethod
    def from_spec(cls, spec: dict) -> Policy:
        return cls(tuple(Route.from_spec(r) for r in spec.get("routes", [])), spec.get("default", "deny"))

    def as_spec(self) -> dict:
        return {"default": self.default, "routes": [route.as_spec() for route in self.routes]}

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def __len__(self) -> int:
        return len(self.routes)

    def route_for(self, task: str, classification: str) -> Route | None:
        return self._by_key.get((task, classification))

    @cached_property
    def _by_key(self) -> dict[tuple[str, str], Route]:
        return {route.key: route for route in self.routes}

    @property
    def model_refs(self) -> list[str]:
        """Every model any route may use, sorted."""
        return sorted({ref for route in self.routes for ref in route.models})

    def uses(self, ref: str) -> bool:
        return any(ref in route.models for route in self.routes)

    def with_route_model(self, task: str, classification: str, ref: str) -> Policy:
        """A copy whose route for (task, classification) goes to ``ref``; KeyError without that route."""
        if self.route_for(task, classification) is None:
            raise KeyError((task, classification))
        routes = tuple(r.with_model(ref) if r.key == (task, classification) else r for r in self.routes)
        return replace(self, routes=routes)


def normalise(document: dict) -> dict:
    """The spec of a validated YAML document: routes sorted by task and classification, every
    optional part explicit."""
    routes = sorted((Route.from_spec(route) for route in document.get("routes", [])), key=lambda r: r.key)
    return Policy(tuple(routes), document.get("default", "deny")).as_spec()


def to_yaml(spec: dict) -> str:
    """A readable YAML document for a spec (exports, starting points for changes)."""
    routes = []
    for route in Policy.from_spec(spec):
        out = {"task": route.task, "classification": route.classification}
        if route.tier:
            out["tier"] = route.tier
        out["model"] = route.model
        if route.fallbacks:
            out["fallbacks"] = list(route.fallbacks)
        if route.escalation:
            out["escalation"] = {k: v for k, v in route.escalation.as_spec().items() if v is not None}
        if route.constraints:
            out["constraints"] = route.constraints
        routes.append(out)
    return yaml.safe_dump({"default": spec["default"], "routes": routes}, sort_keys=False, width=120)


def route_changes(old: dict | None, new: dict) -> list[str]:
    """What changed, route by route, in words: "ticket-triage / internal: a → b"."""
    before = {route.key: route for route in Policy.from_spec(old or {"routes": []})}
    after = {route.key: route for route in Policy.from_spec(new)}
    lines: list[str] = []
    if old and old.get("default") != new.get("default"):
        lines.append(f"default: {old.get('default')} → {new.get('default')}")
    for key in sorted(before.keys() | after.keys()):
        name = f"{key[0]} / {key[1]}"
        if key not in after:
            lines.append(f"{name}: removed (was {before[key].model})")
            continue
        if key not in before:
            lines.append(f"{name}: added → {after[key].model}")
            continue
        a, b = before[key], after[key]
        if a.model != b.model:
            lines.append(f"{name}: {a.model} → {b.model}")
        if a.fallbacks != b.fallbacks:
            lines.append(f"{name}: fallbacks {', '.join(a.fallbacks) or 'none'} → {', '.join(b.fallbacks) or 'none'}")
        if a.escalation != b.escalation:
            lines.append(f"{name}: escalation {a.escalation or 'none'} → {b.escalation or 'none'}")
        if a.constraints != b.constraints:
            lines.append(f"{name}: constraints {a.constraints or 'none'} → {b.constraints or 'none'}")
        if a.tier != b.tier:
            lines.append(f"{name}: tier {a.tier or 'task default'} → {b.tier or 'task default'}")
    return lines


def document_changes(base_spec: dict | None, document: dict | None) -> list[str] | None:
    """Route-level changes from ``base_spec`` to a parsed (maybe invalid) document; None while its
    routes are too malformed to compare (the validation errors already say why)."""
    if document is None:
        return None
    try:
        return route_changes(base_spec, normalise(document))
    except (KeyError, TypeError, AttributeError, ValueError):
        return None


def text_diff(old: str, new: str, old_name: str, new_name: str) -> list[str]:
    return list(
        difflib.unified_diff(old.splitlines(), new.splitlines(), fromfile=old_name, tofile=new_name, lineterm="")
    )
