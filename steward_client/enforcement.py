"""Enforcing a verified policy on one request: which models it may try, in which order, with which limits.

A gateway asks ``Enforcer.plan`` before every call and gets a ``Plan`` (the models to try, the
timeout, the output-token budget) or a ``Refusal`` naming the rule that refused it. Once the
call is over, ``Enforcer.record`` turns the plan and what happened into the decision record
Steward expects. Nothing here knows about a particular gateway: ``steward_client.litellm_proxy``
wires it into LiteLLM, an in-house router can call it directly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .policy import Policy
from .verify import DEFAULT_CLOCK_SLACK, parse_time

ESCALATION_WINDOW_SECONDS = 3600  # the window Steward checks max_rate_bp over (audits/decisions.py)
ESCALATION_MIN_DECISIONS = 20  # and the fewest decisions it judges a rate on
DEFAULT_OUTPUT_TOKENS = 1024  # the output assumed for a cost check when the caller sets no max_tokens
SUFFIXES = ("--escalation", "--fallback-")  # the aliases export-litellm writes; never callable


class Refusal(Exception):
    """A request the policy does not allow: HTTP ``status``, the ``rule`` that refused it, a message."""

    def __init__(self, status: int, rule: str, message: str, policy_version: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.rule = rule
        self.message = message
        self.policy_version = policy_version

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "message": self.message, "policy_version": self.policy_version}


@dataclass
class Plan:
    """What the gateway does with one request under policy ``policy_version``."""

    task: str
    classification: str
    policy_version: int
    chain: list[str]  # model refs to try in order: primary, fallbacks, escalation where allowed
    primary: str
    fallbacks: list[str]
    escalation: str | None  # the escalation target, when it is in the chain
    escalated_upfront: bool  # low confidence or context overflow: the chain starts with the escalation target
    timeout_seconds: float | None
    max_tokens: int | None
    storage: str  # "content" or "digest"
    started_at: float = field(default_factory=time.time)

    def as_metadata(self) -> dict[str, Any]:
        """The plan as plain data, carried with the request through the gateway."""
        return {
            "task": self.task,
            "classification": self.classification,
            "policy_version": self.policy_version,
            "chain": self.chain,
            "primary": self.primary,
            "fallbacks": self.fallbacks,
            "escalation": self.escalation,
            "escalated_upfront": self.escalated_upfront,
            "storage": self.storage,
            "started_at": self.started_at,
        }


class EscalationBudget:
    """Per-route counts over a sliding window, so that escalations stay within ``max_rate_bp``.

    Counted per process: every process of a gateway keeps within the cap, so all of them together do.
    """

    def __init__(self, window_seconds: int = ESCALATION_WINDOW_SECONDS, buckets: int = 60) -> None:
        self.bucket_seconds = window_seconds / buckets
        self.buckets = buckets
        self._counts: dict[tuple[str, str], dict[int, list[int]]] = {}
        self._lock = threading.Lock()

    def _window(self, route: tuple[str, str], now: float) -> dict[int, list[int]]:
        current = int(now // self.bucket_seconds)
        window = self._counts.setdefault(route, {})
        for stale in [key for key in window if key <= current - self.buckets]:
            del window[stale]
        return window

    def allows(self, route: tuple[str, str], max_rate_bp: int, now: float | None = None) -> bool:
        """Whether one more escalation keeps the route's rate, this request included, within the cap."""
        now = time.time() if now is None else now
        with self._lock:
            window = self._window(route, now)
            total = sum(bucket[0] for bucket in window.values())
            escalated = sum(bucket[1] for bucket in window.values())
        # Steward judges the rate over at least ESCALATION_MIN_DECISIONS requests; so does the cap here.
        return (escalated + 1) * 10_000 <= max_rate_bp * max(total + 1, ESCALATION_MIN_DECISIONS)

    def count(self, route: tuple[str, str], escalated: bool, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            bucket = self._window(route, now).setdefault(int(now // self.bucket_seconds), [0, 0])
            bucket[0] += 1
            bucket[1] += int(escalated)


def estimate_tokens(text: str) -> int:
    """A cautious token estimate without a tokenizer: one token per three bytes of UTF-8."""
    return math.ceil(len(text.encode("utf-8")) / 3)


def messages_text(messages: Iterable[Any]) -> str:
    """The request's content as one string: ``role: text`` per message (what records store or digest)."""
    lines = []
    for message in messages or ():
        if not isinstance(message, dict):
            continue
        content = message.get("content", "")
        if isinstance(content, list):  # content parts: keep the text ones
            content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        lines.append(f"{message.get('role', 'user')}: {content if content is not None else ''}")
    return "\n".join(lines)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if text else ""


def cost_micro_usd(prices: dict, input_tokens: int, output_tokens: int) -> int:
    """The cost of a call at the policy's prices (micro-USD per million tokens), rounded up."""
    total = input_tokens * prices["input_micro_usd_per_mtok"] + output_tokens * prices["output_micro_usd_per_mtok"]
    return -(-total // 1_000_000)


class Enforcer:
    """One verified policy, compiled for answering requests quickly.

    ``count_tokens(ref, text)`` counts a request's input tokens for the context-window and cost
    checks (by default a cautious estimate); it is only called for routes that need it.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        clock_slack: dt.timedelta = DEFAULT_CLOCK_SLACK,
        count_tokens: Callable[[str, str], int] | None = None,
        budget: EscalationBudget | None = None,
    ) -> None:
        self.policy = policy
        self.version = policy.version
        self.policy_set = policy.policy_set
        self.expires_at = (parse_time(policy.payload["expires"], "expires") + clock_slack).timestamp()
        self.count_tokens = count_tokens or (lambda ref, text: estimate_tokens(text))
        self.budget = budget or EscalationBudget()
        self.routes = {(route["task"], route["classification"]): route for route in policy.routes}
        self.tasks = {route["task"] for route in policy.routes}
        self.classifications: dict[str, dict] = policy.payload.get("classifications", {})
        # Names that reach a model directly and must never be called: refs, provider ids, aliases.
        self.direct_names: set[str] = set()
        for ref, model in policy.models.items():
            endpoint = model.get("endpoint", {})
            self.direct_names.update({ref, f"steward/{ref}", endpoint.get("provider_model_id", "")})
            self.direct_names.add(f"{model.get('provider', '')}/{endpoint.get('provider_model_id', '')}")
        self.direct_names.discard("")

    def refuse(self, status: int, rule: str, message: str) -> Refusal:
        return Refusal(status, rule, f"{message} ({self.policy_set} v{self.version})", self.version)

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) > self.expires_at

    def classification_of(self, metadata: dict | None, tags: Iterable[Any] | None) -> str:
        """The request's one data classification: ``metadata.classification``, or its one tag."""
        metadata = metadata or {}
        tags = [tag for tag in (tags or ()) if tag is not None]
        declared = metadata.get("classification")
        if declared is not None:
            if not isinstance(declared, str) or not declared.strip():
                raise self.refuse(403, "classification-missing", "metadata.classification must be one non-empty string")
            others = {tag for tag in tags if tag in self.classifications and tag != declared}
            if others:
                raise self.refuse(
                    403,
                    "classification-ambiguous",
                    f"metadata.classification is {declared!r} but the tags name {', '.join(sorted(others))} too",
                )
            return declared.strip()
        if not tags:
            raise self.refuse(
                403,
                "classification-missing",
                "the request names no data classification: set metadata.classification or exactly one tag",
            )
        if len(tags) > 1:
            raise self.refuse(
                403,
                "classification-ambiguous",
                f"the request has {len(tags)} tags ({', '.join(map(str, tags))}); name exactly one classification",
            )
        return str(tags[0])

    def plan(
        self,
        model: Any,
        messages: Any,
        *,
        metadata: dict | None = None,
        tags: Iterable[Any] | None = None,
        max_tokens: int | None = None,
        now: float | None = None,
    ) -> Plan:
        """Where this request may go, or a Refusal. ``model`` is the name the caller asked for: the task."""
        now = time.time() if now is None else now
        if self.expired(now):
            raise self.refuse(503, "policy-expired", "the policy in force has expired; no request is routed")
        if not isinstance(model, str) or not model:
            raise self.refuse(403, "unknown-task", "the request names no task (the model field)")
        if model not in self.tasks:
            # Tasks are slugs; a name with a provider prefix or a version is a model, whatever it names.
            if model in self.direct_names or "/" in model or "@" in model or any(s in model for s in SUFFIXES):
                raise self.refuse(
                    403, "direct-model", f"{model!r} names a model, not a task: call the task and let the policy route"
                )
            raise self.refuse(403, "unknown-task", f"{model!r} is not a task of the policy")
        classification = self.classification_of(metadata, tags)
        if classification not in self.classifications:
            raise self.refuse(403, "unknown-classification", f"{classification!r} is not a data classification")
        route = self.routes.get((model, classification))
        if route is None:
            raise self.refuse(
                403,
                "no-route",
                f"no route for {model} / {classification}: the default is {self.policy.default}",
            )
        return self._plan_route(route, messages, metadata or {}, max_tokens, now)

    def _plan_route(self, route: dict, messages: Any, metadata: dict, max_tokens: int | None, now: float) -> Plan:
        task, classification = route["task"], route["classification"]
        primary, fallbacks = route["model"], list(route.get("fallbacks", []))
        escalation = route.get("escalation") or None
        constraints = route.get("constraints") or {}
        chain = [primary, *fallbacks]
        target = None
        upfront = False
        text = None
        if escalation and self.budget.allows((task, classification), escalation["max_rate_bp"], now):
            when = set(escalation["when"])
            confidence = metadata.get("confidence_bp")
            low = (
                "low_confidence" in when
                and isinstance(confidence, int)
                and not isinstance(confidence, bool)
                and confidence < escalation.get("confidence_threshold_bp", 0)
            )
            overflow = False
            if "context_overflow" in when:
                text = messages_text(messages)
                window = self.policy.models[primary].get("context_window")
                overflow = bool(window) and self.count_tokens(primary, text) > window
            if low or overflow:
                target, upfront = escalation["to"], True
                chain = [target, *[ref for ref in chain if ref != target]]
            elif when & {"error", "timeout"}:
                # LiteLLM's fallbacks do not tell a timeout from another failure: either condition
                # puts the escalation target after the fallbacks.
                target = escalation["to"]
                chain = [*chain, target] if target not in chain else chain
        timeout = constraints.get("max_latency_ms")
        budget_tokens = max_tokens
        cap = constraints.get("max_cost_micro_usd")
        if cap is not None:
            text = messages_text(messages) if text is None else text
            budget_tokens = self._cost_budget(chain, text, cap, max_tokens)
        return Plan(
            task=task,
            classification=classification,
            policy_version=self.version,
            chain=chain,
            primary=primary,
            fallbacks=fallbacks,
            escalation=target,
            escalated_upfront=upfront,
            timeout_seconds=timeout / 1000 if timeout else None,
            max_tokens=budget_tokens,
            storage=self.classifications.get(classification, {}).get("storage", "digest"),
            started_at=now,
        )

    def _cost_budget(self, chain: list[str], text: str, cap: int, max_tokens: int | None) -> int:
        """The output tokens the cap leaves at the dearest model of the chain; refuses when none are left."""
        worst_input = max(
            cost_micro_usd(self.policy.models[ref]["prices"], self.count_tokens(ref, text), 0) for ref in chain
        )
        output_price = max(self.policy.models[ref]["prices"]["output_micro_usd_per_mtok"] for ref in chain)
        left = cap * 1_000_000 - worst_input * 1_000_000
        allowed = left // output_price if output_price else DEFAULT_OUTPUT_TOKENS
        if allowed < 1:
            raise self.refuse(
                403, "cost-cap", f"the input alone would cost {worst_input} micro-USD, over the route's cap of {cap}"
            )
        return min(allowed, max_tokens) if max_tokens else allowed

    def record(
        self,
        plan: dict,
        *,
        request_id: str,
        model: str,
        input_text: str,
        output_text: str,
        input_tokens: int,
        output_tokens: int,
        ended_at: float | None = None,
    ) -> dict:
        """The decision record for a finished request (``plan`` as ``Plan.as_metadata`` wrote it)."""
        ended_at = time.time() if ended_at is None else ended_at
        started = plan["started_at"]
        prices = self.policy.models.get(model, {}).get("prices")
        digest_only = plan["storage"] != "content"
        fallback_used = model != plan["primary"] and model in plan["fallbacks"]
        escalated = model == plan.get("escalation") and model != plan["primary"]
        self.budget.count((plan["task"], plan["classification"]), escalated, started)
        record = {
            "request_id": request_id,
            "occurred_at": dt.datetime.fromtimestamp(started, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "policy_set": self.policy_set,
            "policy_version": plan["policy_version"],
            "task": plan["task"],
            "classification": plan["classification"],
            "model": model,
            "fallback_used": fallback_used,
            "escalated": escalated,
            "latency_ms": max(int((ended_at - started) * 1000), 0),
            "input_tokens": max(int(input_tokens or 0), 0),
            "output_tokens": max(int(output_tokens or 0), 0),
            "cost_micro_usd": cost_micro_usd(prices, input_tokens or 0, output_tokens or 0) if prices else 0,
        }
        if digest_only:
            # The digest is computed here, so content a classification keeps as digest never leaves the router.
            record.update(
                input="", output="", input_sha256=sha256_hex(input_text), output_sha256=sha256_hex(output_text)
            )
        else:
            record.update(input=input_text, output=output_text)
        return record
