"""The normalised form of a routing policy, and route-level diffs between two of them."""

from __future__ import annotations

import difflib

import yaml


def normalise(document: dict) -> dict:
    """The policy as data: routes sorted by task and classification, every optional part explicit."""
    routes = []
    for route in document.get("routes", []):
        escalation = route.get("escalation")
        routes.append(
            {
                "task": route["task"],
                "classification": route["classification"],
                "tier": route.get("tier"),
                "model": route["model"],
                "fallbacks": list(route.get("fallbacks", [])),
                "escalation": (
                    {
                        "to": escalation["to"],
                        "when": list(escalation["when"]),
                        "confidence_threshold_bp": escalation.get("confidence_threshold_bp"),
                        "max_rate_bp": escalation["max_rate_bp"],
                    }
                    if escalation
                    else None
                ),
                "constraints": dict(route.get("constraints", {})),
            }
        )
    routes.sort(key=lambda r: (r["task"], r["classification"]))
    return {"default": document.get("default", "deny"), "routes": routes}


def to_yaml(spec: dict) -> str:
    """A readable YAML document for a normalised spec (exports, starting points for changes)."""
    routes = []
    for route in spec["routes"]:
        out = {"task": route["task"], "classification": route["classification"]}
        if route.get("tier"):
            out["tier"] = route["tier"]
        out["model"] = route["model"]
        if route["fallbacks"]:
            out["fallbacks"] = route["fallbacks"]
        if route["escalation"]:
            escalation = {k: v for k, v in route["escalation"].items() if v is not None}
            out["escalation"] = escalation
        if route["constraints"]:
            out["constraints"] = route["constraints"]
        routes.append(out)
    return yaml.safe_dump({"default": spec["default"], "routes": routes}, sort_keys=False, width=120)


def route_changes(old: dict | None, new: dict) -> list[str]:
    """What changed, route by route, in words: "ticket-triage / internal: a → b"."""
    before = {(r["task"], r["classification"]): r for r in (old or {"routes": []})["routes"]}
    after = {(r["task"], r["classification"]): r for r in new["routes"]}
    lines: list[str] = []
    if old and old.get("default") != new.get("default"):
        lines.append(f"default: {old.get('default')} → {new.get('default')}")
    for key in sorted(before.keys() | after.keys()):
        name = f"{key[0]} / {key[1]}"
        if key not in after:
            lines.append(f"{name}: removed (was {before[key]['model']})")
            continue
        if key not in before:
            lines.append(f"{name}: added → {after[key]['model']}")
            continue
        a, b = before[key], after[key]
        if a["model"] != b["model"]:
            lines.append(f"{name}: {a['model']} → {b['model']}")
        if a["fallbacks"] != b["fallbacks"]:
            lines.append(
                f"{name}: fallbacks {', '.join(a['fallbacks']) or 'none'} → {', '.join(b['fallbacks']) or 'none'}"
            )
        if a["escalation"] != b["escalation"]:
            lines.append(f"{name}: escalation {_escalation(a['escalation'])} → {_escalation(b['escalation'])}")
        if a["constraints"] != b["constraints"]:
            lines.append(f"{name}: constraints {a['constraints'] or 'none'} → {b['constraints'] or 'none'}")
        if a.get("tier") != b.get("tier"):
            lines.append(f"{name}: tier {a.get('tier') or 'task default'} → {b.get('tier') or 'task default'}")
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


def _escalation(escalation: dict | None) -> str:
    if not escalation:
        return "none"
    when = ", ".join(escalation["when"])
    return f"to {escalation['to']} on {when} (cap {escalation['max_rate_bp']} bp)"


def text_diff(old: str, new: str, old_name: str, new_name: str) -> list[str]:
    return list(
        difflib.unified_diff(old.splitlines(), new.splitlines(), fromfile=old_name, tofile=new_name, lineterm="")
    )
