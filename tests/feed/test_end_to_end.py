"""The whole way: a change request written, approved and published through Steward's REST API, pulled
over HTTP by a router, verified, and answering routing questions with the new model — through the
Python API and through the ``steward-client`` command line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from django.contrib.auth import get_user_model

from portfolio.models import PolicyRelease, Router
from steward.models import ApiToken
from steward_client import PolicyDenied

from .conftest import bearer, http

ROOT = Path(__file__).resolve().parents[2]
OLD_MODEL = "openai/gpt-4o-mini@2024-07-18"
NEW_MODEL = "mistral/codestral@2501"


def api(method: str, url: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    headers = bearer(token)
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    response = http(method, url, headers, data)
    return response.status, json.loads(response.body or b"null")


def cli(*args: str) -> subprocess.CompletedProcess:
    """``steward-client`` in a process of its own: no Django, only the client package."""
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "steward_client", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
    )


def test_a_published_change_reaches_a_router_and_its_answers(
    live_url, client_factory, production_router, production_token, root_bytes, tmp_path
):
    users = {user.username: user for user in get_user_model().objects.filter(username__in=["alice", "bob", "carol"])}
    tokens = {name: ApiToken.issue(user, "feed test")[1] for name, user in users.items()}

    # bob (engineer) writes the change: ticket triage on internal data moves to Codestral.
    response = http("GET", f"{live_url}/api/v1/policy-sets/production/current.yaml", bearer(tokens["bob"]))
    assert response.status == 200, response.body
    current = response.body.decode()
    assert current.count(f"model: {OLD_MODEL}") == 1
    changed = current.replace(f"model: {OLD_MODEL}", f"model: {NEW_MODEL}")
    status, check = api(
        "POST", f"{live_url}/api/v1/policy-sets/production/validate", tokens["bob"], {"policy": changed}
    )
    assert (status, check) == (200, {"valid": True, "errors": []})
    status, change = api(
        "POST",
        f"{live_url}/api/v1/change-requests",
        tokens["bob"],
        {"policy_set": "production", "title": "Ticket triage on Codestral", "rationale": "Cheaper.", "policy": changed},
    )
    assert status == 201, change
    assert change["valid"] is True and change["status"] == "draft"
    base = f"{live_url}/api/v1/change-requests/{change['id']}"
    status, change = api("POST", f"{base}/submit", tokens["bob"])
    assert (status, change["status"]) == (200, "in_review")

    # bob cannot approve his own change; alice and carol (officers) approve, alice publishes.
    status, refused = api("POST", f"{base}/reviews", tokens["bob"], {"decision": "approve"})
    assert status == 403
    for officer in ("alice", "carol"):
        status, change = api("POST", f"{base}/reviews", tokens[officer], {"decision": "approve", "comment": "Fine."})
        assert status == 201, change
    assert change["status"] == "approved" and sorted(change["approvals"]) == ["alice", "carol"]
    status, published = api("POST", f"{base}/publish", tokens["alice"])
    assert status == 200, published
    assert published["status"] == "published" and published["published_version"] == 2
    release = PolicyRelease.objects.get(policy_version__policy_set__slug="production", policy_version__number=2)

    # A router pulls it over HTTP, verifies it and routes with it.
    client = client_factory()
    result = client.update()
    assert result.outcome == "applied", result.reason
    assert client.version == 2
    assert (client.state.path / "envelope.json").read_bytes() == bytes(release.envelope)
    policy = client.policy
    decision = policy.route("ticket-triage", "internal")
    assert decision.model == NEW_MODEL
    assert decision.fallbacks == ["mistral/mistral-small@2501", "google/gemini-2.0-flash@001"]
    assert policy.models[NEW_MODEL]["endpoint"]["api_key_env"] == "MISTRAL_API_KEY"
    provenance = policy.payload["provenance"]
    assert provenance["kind"] == "change-request" and provenance["change_request"] == change["id"]
    assert (provenance["author"], provenance["published_by"]) == ("bob", "alice")
    assert sorted(provenance["approvers"]) == ["alice", "carol"]
    try:
        policy.route("fraud-screening", "pci")
    except PolicyDenied as denied:
        assert "no route for fraud-screening / pci in production v2: deny" in str(denied)
    else:
        raise AssertionError("production has no fraud-screening route: the default is deny")
    router = Router.objects.get(pk=production_router[0].pk)
    assert (router.last_status, router.applied_version, router.trust_version) == ("ack", 2, 1)

    # The command line does the same from a state directory of its own.
    token_file = tmp_path / "token"
    token_file.write_text(production_token + "\n")
    shipped = tmp_path / "root.json"
    shipped.write_bytes(root_bytes)
    state = tmp_path / "cli-state"
    pull = cli(
        "pull",
        "--url",
        live_url,
        "--policy-set",
        "production",
        "--token-file",
        str(token_file),
        "--trust-root",
        str(shipped),
        "--state-dir",
        str(state),
        "--once",
    )
    assert (pull.returncode, pull.stdout, pull.stderr) == (0, "production v2 applied\n", "")

    route = cli("route", "--state-dir", str(state), "--task", "ticket-triage", "--classification", "internal")
    assert route.returncode == 0, route.stderr
    answer = json.loads(route.stdout)
    assert answer["decision"] == "route" and answer["model"] == NEW_MODEL
    assert answer["policy_set"] == "production" and answer["policy_version"] == 2
    assert answer["escalation"]["to"] == "openai/gpt-4o@2024-08-06"
    assert set(answer["endpoints"]) == {NEW_MODEL, *answer["fallbacks"], "openai/gpt-4o@2024-08-06"}

    deny = cli("route", "--state-dir", str(state), "--task", "fraud-screening", "--classification", "pci")
    assert deny.returncode == 3
    assert json.loads(deny.stdout)["decision"] == "deny"
    assert deny.stderr.count("\n") == 1 and "no route for fraud-screening / pci" in deny.stderr

    export = cli("export-litellm", "--state-dir", str(state))
    assert export.returncode == 0, export.stderr
    config = yaml.safe_load(export.stdout)
    assert config["router_settings"]["enable_tag_filtering"] is True
    entries = config["model_list"]
    triage = [e for e in entries if e["model_name"] == "ticket-triage"]
    assert len(triage) == 1
    assert triage[0]["litellm_params"]["model"] == "openai/codestral-2501"
    assert triage[0]["litellm_params"]["api_key"] == "os.environ/MISTRAL_API_KEY"
    assert triage[0]["litellm_params"]["tags"] == ["internal"]
    assert triage[0]["model_info"]["id"] == NEW_MODEL and triage[0]["model_info"]["steward_ref"] == NEW_MODEL
    assert triage[0]["model_info"]["input_cost_per_token"] == 3e-07
    assert {"ticket-triage": ["ticket-triage--fallback-1", "ticket-triage--fallback-2"]} in config["router_settings"][
        "fallbacks"
    ]
    routes = {(r["task"], r["classification"]): r for r in policy.routes}
    for entry in entries:
        task = entry["model_name"].split("--")[0]
        (classification,) = entry["litellm_params"]["tags"]
        assert (task, classification) in routes
        assert entry["litellm_params"]["api_key"].startswith("os.environ/")
        assert entry["model_info"]["steward_ref"] in policy.models
        assert entry["model_info"]["id"].split("#")[0] == entry["model_info"]["steward_ref"]
    # LiteLLM keys deployments by id: a ref serving several routes gets "#2", "#3" after its first use.
    assert len({e["model_info"]["id"] for e in entries}) == len(entries)
    primaries = {e["model_name"]: e["model_info"]["steward_ref"] for e in entries if "--" not in e["model_name"]}
    assert primaries == {task: route["model"] for (task, _), route in routes.items()}


def test_the_command_line_fails_with_one_line_and_a_non_zero_exit(live_url, production_token, root_bytes, tmp_path):
    shipped = tmp_path / "root.json"
    shipped.write_bytes(root_bytes)
    token_file = tmp_path / "token"
    token_file.write_text("swr_not-a-real-token")
    state = tmp_path / "state"
    common = ["--policy-set", "production", "--trust-root", str(shipped), "--state-dir", str(state), "--once"]
    refused = cli("pull", "--url", live_url, "--token-file", str(token_file), *common)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1
    assert "answered 401: Invalid or missing router token.; no valid policy in force" in refused.stderr

    route = cli("route", "--state-dir", str(state), "--task", "ticket-triage", "--classification", "internal")
    assert route.returncode == 1 and "no policy pulled yet" in route.stderr

    token_file.write_text(production_token)
    assert cli("pull", "--url", live_url, "--token-file", str(token_file), *common).returncode == 0
    down = cli("pull", "--url", "http://127.0.0.1:9", "--token-file", str(token_file), *common)
    assert down.returncode == 0  # the last good policy stays in force
    assert "cannot reach http://127.0.0.1:9" in down.stderr and "keeping v1 in force" in down.stderr
