"""A verified routing policy and the routing answer it gives for a task and a data classification."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class PolicyDenied(LookupError):
    """No route matches and the policy's default is deny."""


@dataclass(frozen=True)
class RouteDecision:
    """Where a request for (task, classification) goes under the policy in force."""

    task: str
    classification: str
    model: str
    fallbacks: list[str]
    escalation: dict | None
    constraints: dict
    tier: str | None
    policy_set: str
    policy_version: int
    models: dict[str, dict] = field(repr=False, default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "classification": self.classification,
            "model": self.model,
            "fallbacks": self.fallbacks,
            "escalation": self.escalation,
            "constraints": self.constraints,
            "tier": self.tier,
            "policy_set": self.policy_set,
            "policy_version": self.policy_version,
            "endpoints": {ref: self.models[ref] for ref in self.targets() if ref in self.models},
        }

    def targets(self) -> list[str]:
        """Every model this decision may use, in order: primary, fallbacks, escalation target."""
        escalation = [self.escalation["to"]] if self.escalation else []
        return [self.model, *self.fallbacks, *escalation]


class Policy:
    """A verified policy payload (see docs/policy-feed.md), ready to answer routing questions."""

    def __init__(self, payload: dict) -> None:
        self.payload = payload
        self.policy_set: str = payload["policy_set"]
        self.version: int = payload["version"]
        self.models: dict[str, dict] = payload["models"]
        self.default: str = payload.get("default", "deny")
        self._routes = {(route["task"], route["classification"]): route for route in payload["routes"]}

    def __repr__(self) -> str:
        return f"<Policy {self.policy_set} v{self.version}: {len(self._routes)} routes>"

    @property
    def routes(self) -> list[dict]:
        return list(self.payload["routes"])

    def route(self, task: str, classification: str) -> RouteDecision:
        """The route for ``task`` and ``classification``; raises PolicyDenied when none matches."""
        route = self._routes.get((task, classification))
        if route is None:
            raise PolicyDenied(
                f"no route for {task} / {classification} in {self.policy_set} v{self.version}: {self.default}"
            )
        return RouteDecision(
            task=task,
            classification=classification,
            model=route["model"],
            fallbacks=list(route.get("fallbacks", [])),
            escalation=route.get("escalation"),
            constraints=dict(route.get("constraints", {})),
            tier=route.get("tier"),
            policy_set=self.policy_set,
            policy_version=self.version,
            models=self.models,
        )
