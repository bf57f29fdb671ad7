"""Export the policy in force as a LiteLLM proxy ``config.yaml``; and the proxy plugin, ``steward_guard``.

The export is static: LiteLLM routes by it until the next export and restart, and its tag
filtering does not refuse what the policy does not route. ``steward_guard`` (loaded lazily from
``litellm_proxy``, which needs LiteLLM) enforces the policy live: see docs/litellm.md.

Each route target becomes a ``model_list`` entry whose ``model_name`` names the task (fallbacks
and escalation get suffixed names), tagged with the data classification so that LiteLLM's tag
filtering keeps, for example, PII requests on the models approved for PII.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from .policy import Policy

PROVIDER_PREFIX = {"openai-compatible": "openai", "anthropic": "anthropic", "gemini": "gemini", "bedrock": "bedrock"}


def _usd_per_token(micro_usd_per_million_tokens: int) -> float:
    # Through Decimal so that 2_500_000 micro-USD per million tokens is exactly 2.5e-06, not 2.4999…e-06.
    return float(Decimal(micro_usd_per_million_tokens) / Decimal(10**12))


def _entry(model_name: str, ref: str, model: dict, classification: str, deployment_id: str) -> dict:
    endpoint = model["endpoint"]
    prefix = PROVIDER_PREFIX.get(endpoint["kind"], "openai")
    return {
        "model_name": model_name,
        "litellm_params": {
            "model": f"{prefix}/{endpoint['provider_model_id']}",
            "api_base": endpoint["base_url"],
            "api_key": f"os.environ/{endpoint['api_key_env']}",
            "tags": [classification],
        },
        "model_info": {
            "id": deployment_id,
            "steward_ref": ref,
            "input_cost_per_token": _usd_per_token(model["prices"]["input_micro_usd_per_mtok"]),
            "output_cost_per_token": _usd_per_token(model["prices"]["output_micro_usd_per_mtok"]),
        },
    }


def litellm_config(policy: Policy) -> dict:
    """The LiteLLM proxy configuration for ``policy`` as data."""
    model_list: list[dict] = []
    fallbacks: dict[str, list[str]] = {}
    uses: dict[str, int] = {}

    def add(model_name: str, ref: str, classification: str) -> None:
        # LiteLLM keys deployments by model_info.id: the Steward ref, with #n where a ref serves again.
        uses[ref] = uses.get(ref, 0) + 1
        deployment_id = ref if uses[ref] == 1 else f"{ref}#{uses[ref]}"
        model_list.append(_entry(model_name, ref, policy.models[ref], classification, deployment_id))

    for route in policy.routes:
        task, classification = route["task"], route["classification"]
        add(task, route["model"], classification)
        names = []
        for index, ref in enumerate(route.get("fallbacks", []), start=1):
            name = f"{task}--fallback-{index}"
            names.append(name)
            add(name, ref, classification)
        if route.get("escalation"):
            add(f"{task}--escalation", route["escalation"]["to"], classification)
        if names:
            existing = fallbacks.setdefault(task, [])
            existing.extend(name for name in names if name not in existing)
    return {
        "model_list": model_list,
        "router_settings": {
            "enable_tag_filtering": True,
            "fallbacks": [{task: names} for task, names in sorted(fallbacks.items())],
        },
        "general_settings": {
            "steward_policy": {"policy_set": policy.policy_set, "version": policy.version},
        },
    }


def to_yaml(value: Any, indent: int = 0) -> str:
    """A small YAML writer for plain data (strings quoted as JSON, which YAML reads the same)."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        lines = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 1)}")
            else:
                lines.append(f"{pad}{key}: {to_yaml(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        if not value:
            return "[]"
        lines = []
        for item in value:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 1).lstrip()
                lines.append(f"{pad}- {body}")
            else:
                lines.append(f"{pad}- {to_yaml(item)}")
        return "\n".join(lines)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        # YAML 1.1 (PyYAML, which LiteLLM uses) reads 3e-07 as a string: the mantissa needs a dot.
        mantissa, exponent, power = repr(value).partition("e")
        return f"{mantissa}.0e{power}" if exponent and "." not in mantissa else repr(value)
    if isinstance(value, int):
        return repr(value)
    return json.dumps(value)


def litellm_yaml(policy: Policy) -> str:
    header = f"# LiteLLM proxy config generated by steward-client from {policy.policy_set} v{policy.version}\n"
    return header + to_yaml(litellm_config(policy)) + "\n"


def __getattr__(name: str) -> Any:
    # The proxy plugin imports LiteLLM, which the export above does not need: load it on first use.
    # config.yaml names it as ``steward_client.litellm.steward_guard``.
    if name == "steward_guard":
        from .litellm_proxy import steward_guard

        return steward_guard()
    if name in ("StewardGuard", "GuardSettings"):
        from . import litellm_proxy

        return getattr(litellm_proxy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
