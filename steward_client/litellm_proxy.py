"""The LiteLLM proxy plugin: enforce Steward's signed policy inside the proxy and report every decision.

Loaded by the proxy from its ``config.yaml`` (``litellm_settings.callbacks:
steward_client.litellm.steward_guard``) and configured from the environment (see docs/litellm.md).
In each proxy process it:

- polls the signed policy with ``PolicyClient`` in a background thread; a newly verified version
  is compiled and swapped in at once, and the deployments it needs are added to the proxy's
  router (those no longer routed removed) before the next request is routed; then it ACKs;
- before every call (``async_pre_call_hook``) refuses what the policy does not allow with a 403
  naming the rule (503 without a policy in force, or after it expired), and otherwise sends the
  request to the route's primary with the fallbacks, escalation, timeout and token budget;
- reports one decision record per request from the success and failure hooks through a
  ``DecisionReporter`` (batches, a disk spool while Steward cannot be reached).

This module imports LiteLLM; the rest of steward_client does not.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException

from .client import PolicyClient, UpdateResult
from .enforcement import Enforcer, EscalationBudget, Plan, Refusal, messages_text
from .policy import Policy
from .reporter import DEFAULT_MAX_SPOOL_BYTES, DecisionReporter
from .verify import DEFAULT_CLOCK_SLACK

logger = logging.getLogger("steward_client.litellm")

GROUP_PREFIX = "steward/"  # the proxy's model groups are steward/<ref>; callers never name them
REFUSAL_TYPE = "steward_policy_refusal"
ROUTED_CALLS = {"completion", "acompletion", "text_completion", "atext_completion"}
PROVIDER_PREFIX = {"openai-compatible": "openai", "anthropic": "anthropic", "gemini": "gemini", "bedrock": "bedrock"}
# What a caller may put in a request to send it elsewhere than the policy says: removed.
CALLER_ROUTING = (
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "mock_response",
    "mock_testing_fallbacks",
    "api_base",
    "base_url",
    "api_key",
    "user_config",
)
SPOOL_REPORT_SECONDS = 60.0  # while batches wait on disk, the status repeats the spool's size this often


@dataclass(frozen=True)
class GuardSettings:
    """Where the policy comes from and where state goes; from ``STEWARD_*`` environment variables."""

    url: str
    policy_set: str
    token_file: Path
    trust_root: Path
    state_dir: Path
    poll_interval: float = 30.0
    max_backoff: float = 600.0
    spool_max_bytes: int = DEFAULT_MAX_SPOOL_BYTES
    report_retry_max: float = 30.0

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> GuardSettings:
        environ = os.environ if environ is None else environ
        required = (
            "STEWARD_URL",
            "STEWARD_POLICY_SET",
            "STEWARD_TOKEN_FILE",
            "STEWARD_TRUST_ROOT",
            "STEWARD_STATE_DIR",
        )
        missing = [name for name in required if not environ.get(name)]
        if missing:
            raise RuntimeError(f"steward_client.litellm: set {', '.join(missing)} (see docs/litellm.md)")
        return cls(
            url=environ["STEWARD_URL"],
            policy_set=environ["STEWARD_POLICY_SET"],
            token_file=Path(environ["STEWARD_TOKEN_FILE"]),
            trust_root=Path(environ["STEWARD_TRUST_ROOT"]),
            state_dir=Path(environ["STEWARD_STATE_DIR"]),
            poll_interval=float(environ.get("STEWARD_POLL_INTERVAL", 30)),
            max_backoff=float(environ.get("STEWARD_MAX_BACKOFF", 600)),
            spool_max_bytes=int(float(environ.get("STEWARD_SPOOL_MAX_MB", DEFAULT_MAX_SPOOL_BYTES >> 20)) * 2**20),
            report_retry_max=float(environ.get("STEWARD_REPORT_RETRY_MAX", 30)),
        )


def deployment_for(ref: str, model: dict) -> dict:
    """The proxy deployment of one policy model: group ``steward/<ref>``, its id changing with the endpoint."""
    endpoint = model["endpoint"]
    fingerprint = hashlib.sha256(json.dumps(endpoint, sort_keys=True).encode()).hexdigest()[:12]
    key = os.environ.get(endpoint.get("api_key_env") or "", "")
    if not key:
        logger.warning("%s: %s is not set; calls to this model will fail over", ref, endpoint.get("api_key_env"))
    return {
        "model_name": GROUP_PREFIX + ref,
        "litellm_params": {
            "model": f"{PROVIDER_PREFIX.get(endpoint['kind'], 'openai')}/{endpoint['provider_model_id']}",
            "api_base": endpoint["base_url"],
            "api_key": key or "unset",
            "max_retries": 0,  # a failure moves on to the next model of the route at once
        },
        "model_info": {"id": f"{GROUP_PREFIX}{ref}#{fingerprint}", "steward_ref": ref},
    }


def _refusal(refusal: Refusal, policy_set: str) -> ProxyException:
    return ProxyException(
        message=f"Refused by Steward policy: {refusal.message} [rule: {refusal.rule}]",
        type=REFUSAL_TYPE,
        param=refusal.rule,
        code=refusal.status,
        provider_specific_fields={"steward": {"policy_set": policy_set, **refusal.as_dict()}},
    )


class StewardGuard(CustomLogger):
    """The plugin; one instance per proxy process (``steward_client.litellm.steward_guard``)."""

    def __init__(self, settings: GuardSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or GuardSettings.from_environ()
        token = self.settings.token_file.read_text().strip()
        if not token:
            raise RuntimeError(f"{self.settings.token_file}: the router token file is empty")
        self.budget = EscalationBudget()
        self._enforcer: Enforcer | None = None
        self._deployments: dict[str, dict] = {}  # deployment id → deployment, for the policy in force
        self._router_version: int | None = None  # the version whose deployments the router holds
        self._router_lock = threading.Lock()
        self._failed: OrderedDict[str, str] = OrderedDict()  # call id → the last model that failed it
        self._spool_reported: tuple[int, float] = (0, 0.0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.reporter = DecisionReporter(
            self.settings.url,
            token,
            self.settings.state_dir / "spool",
            max_spool_bytes=self.settings.spool_max_bytes,
            retry_max=self.settings.report_retry_max,
        )
        self.client = PolicyClient(
            self.settings.url,
            self.settings.policy_set,
            token,
            self.settings.trust_root,
            self.settings.state_dir / "policy",
            on_apply=self._apply,
            status_extra=lambda: self.reporter.spool_state().as_status(),
        )
        self._thread = threading.Thread(target=self._poll, name="steward-policy", daemon=True)
        self._thread.start()

    # --- the policy ----------------------------------------------------------------------------

    def _apply(self, policy: Policy) -> None:
        """Compile a verified policy and make it the one enforced (called by PolicyClient before the ACK)."""
        enforcer = Enforcer(policy, clock_slack=DEFAULT_CLOCK_SLACK, budget=self.budget)
        routed = {ref for route in policy.routes for ref in _route_refs(route)}
        deployments = {}
        for ref in sorted(routed):
            deployment = deployment_for(ref, policy.models[ref])
            deployments[deployment["model_info"]["id"]] = deployment
        with self._router_lock:
            self._enforcer, self._deployments = enforcer, deployments
        # The proxy's router belongs to its event loop: change it there, between requests. Before
        # the loop has served anything, at once; either way the next request is routed only after.
        if self._loop is None:
            self._sync_router()
        else:
            self._loop.call_soon_threadsafe(self._sync_router)
        logger.info("Steward policy %s v%s in force", policy.policy_set, policy.version)

    def _poll(self) -> None:
        self.client.run(self.settings.poll_interval, max_backoff=self.settings.max_backoff, on_result=self._polled)

    def _polled(self, result: UpdateResult) -> None:
        if result.outcome == "failed":
            logger.warning("Steward policy update failed: %s", result.reason)
        self._report_spool()

    def _report_spool(self) -> None:
        """Tell Steward how much waits in the spool when that changes, and now and then while it waits."""
        state = self.reporter.spool_state()
        last_records, last_at = self._spool_reported
        due = state.records != last_records and (state.records == 0 or last_records == 0)
        due = due or (state.records and time.monotonic() - last_at >= SPOOL_REPORT_SECONDS)
        if not due:
            return
        self._spool_reported = (state.records, time.monotonic())
        if self.client.version is not None and self.client.policy is not None:
            self.client.send_status("ack", self.client.version)
        else:
            self.client.send_status("nack", self.client.version, "no valid policy in force")

    def _sync_router(self) -> None:
        """Make the proxy's router hold exactly the deployments of the policy in force."""
        try:
            from litellm.proxy import proxy_server
            from litellm.types.router import Deployment
        except ImportError:  # pragma: no cover - only inside a proxy
            return
        router = getattr(proxy_server, "llm_router", None)
        enforcer = self._enforcer
        if router is None or enforcer is None:
            return
        with self._router_lock:
            if self._router_version == enforcer.version:
                return
            wanted = self._deployments
            for deployment in list(router.model_list):
                info = deployment.get("model_info", {}) if isinstance(deployment, dict) else {}
                if str(info.get("id", "")).startswith(GROUP_PREFIX) and info["id"] not in wanted:
                    router.delete_deployment(id=info["id"])
            for deployment in wanted.values():
                if not router.has_model_id(deployment["model_info"]["id"]):
                    router.add_deployment(Deployment(**json.loads(json.dumps(deployment))))
            self._router_version = enforcer.version

    # --- before every call ---------------------------------------------------------------------

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: str) -> dict:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        enforcer = self._enforcer
        policy_set = self.settings.policy_set
        if enforcer is None:
            raise _refusal(Refusal(503, "policy-missing", "no verified policy is in force yet"), policy_set)
        if call_type not in ROUTED_CALLS:
            raise _refusal(
                enforcer.refuse(403, "endpoint-not-governed", f"{call_type} calls are not routed by the policy"),
                policy_set,
            )
        metadata = data.get("metadata") or {}
        requested = metadata.get("requester_metadata")
        caller = requested if isinstance(requested, dict) else metadata
        tags = metadata.get("caller_tags")
        if tags is None:
            tags = data.get("tags") if data.get("tags") is not None else caller.get("tags")
        messages = data.get("messages")
        if messages is None and "prompt" in data:
            messages = [{"role": "user", "content": str(data["prompt"])}]
        try:
            plan = enforcer.plan(
                data.get("model"), messages, metadata=caller, tags=tags, max_tokens=data.get("max_tokens")
            )
        except Refusal as refusal:
            raise _refusal(refusal, policy_set) from None
        if self._router_version != enforcer.version:
            self._sync_router()
        self._route(data, plan)
        return data

    @staticmethod
    def _route(data: dict, plan: Plan) -> None:
        data["model"] = GROUP_PREFIX + plan.chain[0]
        data["fallbacks"] = [GROUP_PREFIX + ref for ref in plan.chain[1:]]
        data["num_retries"] = 0
        for name in CALLER_ROUTING:
            data.pop(name, None)
        if plan.timeout_seconds:
            data["timeout"] = plan.timeout_seconds
        if plan.max_tokens:
            data["max_tokens"] = plan.max_tokens
        data.setdefault("metadata", {})["steward"] = plan.as_metadata()

    # --- after every call ----------------------------------------------------------------------

    @staticmethod
    def _plan_of(kwargs: dict) -> dict | None:
        metadata = (kwargs.get("litellm_params") or {}).get("metadata") or kwargs.get("metadata") or {}
        plan = metadata.get("steward")
        return plan if isinstance(plan, dict) else None

    @staticmethod
    def _ref_of(kwargs: Any) -> str | None:
        """The policy model a call went to: from the deployment's model_info, else its model group."""
        info = (kwargs.get("litellm_params") or {}).get("model_info") or kwargs.get("model_info") or {}
        ref = info.get("steward_ref")
        if ref:
            return ref
        logged = kwargs.get("standard_logging_object") or {}
        metadata = kwargs.get("metadata") or kwargs.get("litellm_metadata") or {}
        group = logged.get("model_group") or metadata.get("model_group") or ""
        return group[len(GROUP_PREFIX) :] if group.startswith(GROUP_PREFIX) else None

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        try:
            plan = self._plan_of(kwargs)
            enforcer = self._enforcer
            if plan is None or enforcer is None:
                return
            ref = self._ref_of(kwargs) or plan["chain"][0]
            usage = _usage(response_obj)
            self._failed.pop(kwargs.get("litellm_call_id", ""), None)
            self.reporter.report(
                enforcer.record(
                    plan,
                    request_id=kwargs.get("litellm_call_id") or "",
                    model=ref,
                    input_text=messages_text(kwargs.get("messages") or kwargs.get("input") or []),
                    output_text=_output_text(response_obj),
                    input_tokens=usage[0],
                    output_tokens=usage[1],
                )
            )
        except Exception:  # noqa: BLE001 - reporting must never break the caller's answer
            logger.exception("could not build the decision record of a successful call")

    async def async_post_call_failure_deployment_hook(
        self, request_data: Any, exception: Exception, call_type: Any, fallback_depth: int | None = None
    ) -> None:
        # Once per failed attempt, before the router tries the next model: remember the last one.
        try:
            call_id = request_data.get("litellm_call_id")
            ref = self._ref_of(request_data)
            if call_id and ref:
                self._failed[call_id] = ref
                while len(self._failed) > 10_000:
                    self._failed.popitem(last=False)
        except Exception:  # noqa: BLE001
            logger.exception("could not note a failed attempt")

    async def async_post_call_failure_hook(
        self, request_data: dict, original_exception: Exception, user_api_key_dict: Any, traceback_str: Any = None
    ) -> None:
        # Once per request that ends in an error: one decision record, naming the last model tried.
        if isinstance(original_exception, ProxyException) and original_exception.type == REFUSAL_TYPE:
            return  # refused before any model was called: not a routed decision
        plan = (request_data.get("metadata") or {}).get("steward")
        call_id = request_data.get("litellm_call_id") or ""
        if not isinstance(plan, dict) or not call_id:
            return
        ref = self._failed.pop(call_id, None) or plan["chain"][0]
        self._report_failure(call_id, plan, ref, request_data.get("messages") or [])

    def _report_failure(self, call_id: str, plan: dict, ref: str, messages: list) -> None:
        enforcer = self._enforcer
        if enforcer is None:
            return
        try:
            self.reporter.report(
                enforcer.record(
                    plan,
                    request_id=call_id,
                    model=ref,
                    input_text=messages_text(messages),
                    output_text="",
                    input_tokens=0,
                    output_tokens=0,
                )
            )
        except Exception:  # noqa: BLE001
            logger.exception("could not build the decision record of a failed call")


def _route_refs(route: dict) -> list[str]:
    escalation = [route["escalation"]["to"]] if route.get("escalation") else []
    return [route["model"], *route.get("fallbacks", []), *escalation]


def _usage(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    if usage is None and isinstance(response, dict):
        usage = response.get("usage")
    if usage is None:
        return 0, 0
    get = usage.get if isinstance(usage, dict) else lambda name, default=0: getattr(usage, name, default)
    return int(get("prompt_tokens", 0) or 0), int(get("completion_tokens", 0) or 0)


def _output_text(response: Any) -> str:
    try:
        choices = response.choices if hasattr(response, "choices") else response.get("choices", [])
        parts = []
        for choice in choices:
            message = getattr(choice, "message", None) or (choice.get("message") if isinstance(choice, dict) else None)
            content = getattr(message, "content", None) if message is not None else None
            if content is None and isinstance(message, dict):
                content = message.get("content")
            if content is None:
                content = getattr(choice, "text", None)
            parts.append(content or "")
        return "\n".join(parts)
    except Exception:  # noqa: BLE001 - an odd response has no text to keep
        return ""


_instance: StewardGuard | None = None
_instance_lock = threading.Lock()


def steward_guard() -> StewardGuard:
    """The process's plugin, created on first use (when the proxy loads its config)."""
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = StewardGuard()
        return _instance


__all__ = ["GuardSettings", "StewardGuard", "deployment_for", "steward_guard"]
