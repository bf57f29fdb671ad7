"""Endpoint credentials: an evaluation sends a version's API key only to the hosts an officer bound
its variable to, and never the value of one of Steward's own settings variables.

The endpoint is a real HTTP server on 127.0.0.1 that records every request it receives; runs are
started over HTTP by bob (an engineer) and executed by a real Celery worker whose environment holds
the secrets an attacker would want.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.fernet import Fernet

from audits.models import AuditEvent
from registry.evaluation.runs import run_inline, start_run
from registry.models import CredentialStatus, EndpointCredential, EvaluationRun, ModelVersion, RunStatus, Status
from steward.celery import app
from steward.roles import sync_role_permissions
from tests.factories import approved_credential, make_model, make_provider, make_version
from tests.registry.test_evaluation_runs import finished, make_suite, wait_for
from tests.workers import celery_worker

# The worker's environment: what an attacker would like the evaluation to send them.
WORKER_SECRETS = {
    "STEWARD_KEK": Fernet.generate_key().decode(),
    "PARTNER_API_KEY": "sk-partner-0123456789",
    "UNREGISTERED_API_KEY": "sk-unregistered-0123456789",
    "PENDING_API_KEY": "sk-pending-0123456789",
}


@dataclass
class Listener:
    """An OpenAI-compatible endpoint on 127.0.0.1 that writes down every request it receives."""

    server: ThreadingHTTPServer
    requests: list[dict] = field(default_factory=list)
    redirect_to: str = ""

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/v1"

    def secrets_received(self) -> list[str]:
        """Every known secret value that arrived in any header or body."""
        text = json.dumps(self.requests)
        values = [*WORKER_SECRETS.values(), *self._settings_values()]
        return [value for value in values if value and value in text]

    @staticmethod
    def _settings_values() -> list[str]:
        from django.conf import settings

        return [settings.STEWARD_KEK, settings.SECRET_KEY]


def _listener() -> Listener:
    listener: Listener

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the standard library's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            listener.requests.append({"path": self.path, "headers": dict(self.headers), "body": body.decode()})
            if listener.redirect_to:
                self.send_response(307)
                self.send_header("Location", listener.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            answer = json.dumps(
                {
                    "choices": [{"message": {"role": "assistant", "content": "billing"}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 1},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    listener = Listener(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return listener


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = _listener()
    yield found
    found.server.shutdown()
    found.server.server_close()


@pytest.fixture
def other_listener() -> Iterator[Listener]:
    found = _listener()
    yield found
    found.server.shutdown()
    found.server.server_close()


@pytest.fixture(scope="module")
def worker(django_db_setup) -> Iterator[None]:
    """One real worker for the module, with the secrets in its environment."""
    app.control.purge()
    with celery_worker(**WORKER_SECRETS):
        yield


@pytest.fixture
def roles(transactional_db) -> None:
    sync_role_permissions()


def _version(owner, base_url: str, api_key_env: str) -> ModelVersion:
    """A proposed (never approved) version, saved directly: the API refuses Steward's own variables, so
    this is how an older row, or one edited behind the API's back, looks."""
    return make_version(
        owner,
        model=make_model(provider=make_provider()),
        status=Status.PROPOSED,
        base_url=base_url,
        provider_model_id="exfiltrate",
        api_key_env=api_key_env,
    )


def _start_over_http(client, suite, version) -> dict:
    response = client.post(
        "/api/v1/evaluation-runs",
        json.dumps({"suite": suite.slug, "model_version": version.ref}),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()


# --- the exfiltration, tried by bob over HTTP ------------------------------------------------------


def test_bob_cannot_propose_a_version_that_names_stewards_own_variable(bob, client_for, mistral_large) -> None:
    for name in ("STEWARD_KEK", "DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "REDIS_URL", "AWS_ACCESS_KEY_ID"):
        body = {
            "model": "mistral/mistral-large",
            "version": f"x{len(name)}",
            "region": "eu-west-1",
            "base_url": "http://attacker.example/v1",
            "provider_model_id": "m",
            "api_key_env": name,
            "input_price_micro_usd": 1,
            "output_price_micro_usd": 1,
            "cost_tier": "small",
        }
        response = client_for(bob).post("/api/v1/model-versions", json.dumps(body), content_type="application/json")
        assert response.status_code == 400
        assert list(response.json()) == ["api_key_env"]
        assert "one of Steward's own settings variables" in response.json()["api_key_env"][0]
    assert not ModelVersion.objects.exists()


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("api_key_env", "setup", "host", "reason"),
    [
        ("STEWARD_KEK", None, "127.0.0.1", "is one of Steward's own settings variables"),
        ("DATABASE_URL", None, "127.0.0.1", "is one of Steward's own settings variables"),
        ("UNREGISTERED_API_KEY", None, "127.0.0.1", "is not a registered endpoint credential"),
        ("PENDING_API_KEY", CredentialStatus.REQUESTED, "127.0.0.1", "is awaiting approval, not approved"),
        ("PARTNER_API_KEY", CredentialStatus.APPROVED, "localhost", "may be sent only to 127.0.0.1"),
    ],
    ids=["steward-kek", "database-url", "unregistered", "not-approved", "another-host"],
)
def test_an_evaluation_sends_no_key_that_is_not_bound_to_its_host(
    roles, bob, alice, client_for, worker, listener, api_key_env, setup, host, reason
) -> None:
    if setup is not None:
        EndpointCredential.objects.create(env_var=api_key_env, hosts=["127.0.0.1"], status=setup, requested_by=alice)
    suite = make_suite("exfiltration", 3)
    version = _version(bob, listener.url(host), api_key_env)

    started = _start_over_http(client_for(bob), suite, version)

    run = wait_for(EvaluationRun.objects.get(pk=started["id"]), finished)
    assert run.status == RunStatus.FAILED
    assert api_key_env in run.detail and reason in run.detail and "nothing was sent" in run.detail
    assert f"{host}:{listener.port}" in run.detail
    assert started["status"] == "failed" and started["detail"] == run.detail  # fails at once, shown on its page
    assert listener.requests == []  # nothing at all left the machine for the endpoint
    page = client_for(bob).get(f"/registry/runs/{run.pk}/")
    assert reason in html.unescape(page.content.decode())


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_registered_approved_variable_is_sent_to_its_host(roles, bob, client_for, worker, listener) -> None:
    approved_credential("PARTNER_API_KEY", ("127.0.0.1",))
    suite = make_suite("bound-key", 3)
    version = _version(bob, listener.url(), "PARTNER_API_KEY")  # proposed versions can be evaluated (gates)

    started = _start_over_http(client_for(bob), suite, version)

    run = wait_for(EvaluationRun.objects.get(pk=started["id"]), finished)
    assert run.status == RunStatus.COMPLETED, run.detail
    assert len(listener.requests) == 3
    assert {r["headers"].get("Authorization") for r in listener.requests} == {"Bearer sk-partner-0123456789"}
    assert listener.secrets_received() == ["sk-partner-0123456789"]


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_credential_revoked_after_the_run_started_stops_the_worker_sending(
    roles, bob, alice, carol, worker, listener
) -> None:
    from registry.tasks import execute_run

    credential = EndpointCredential.request(bob, "PARTNER_API_KEY", ["127.0.0.1"], "partner gateway")
    credential.decide("approve", alice, "Our partner's gateway.")
    suite = make_suite("revoked-later", 3)
    run = start_run(suite, _version(bob, listener.url(), "PARTNER_API_KEY"), by=bob, dispatch=False)
    assert run.status == RunStatus.QUEUED

    credential.decide("revoke", carol, "The partner contract ended.")
    execute_run.delay(run.pk)

    run = wait_for(run, finished)
    assert run.status == RunStatus.FAILED and "revoked, not approved" in run.detail
    assert listener.requests == []


@pytest.mark.django_db(transaction=True)
def test_a_redirect_to_another_host_is_not_followed_with_the_key(
    roles, bob, listener, other_listener, monkeypatch
) -> None:
    monkeypatch.setenv("PARTNER_API_KEY", "sk-partner-0123456789")
    approved_credential("PARTNER_API_KEY", ("127.0.0.1",))
    listener.redirect_to = other_listener.url("localhost") + "/chat/completions"
    suite = make_suite("redirected", 2)
    run = start_run(suite, _version(bob, listener.url(), "PARTNER_API_KEY"), by=bob, dispatch=False)

    run = run_inline(run)

    assert len(listener.requests) == 2  # the bound host got the key, as it should
    assert other_listener.requests == []  # the redirect's target got nothing
    assert run.errors == 2
    assert all("redirects are not followed" in r.error for r in run.results.all())


# --- the credential itself: validation, separation of duties, audit ---------------------------------


def _post(client, url: str, body: dict):
    return client.post(url, json.dumps(body), content_type="application/json")


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"env_var": "mistral-key", "hosts": ["api.mistral.ai"]}, "env_var", "Must be an environment variable name"),
        ({"env_var": "STEWARD_KEK", "hosts": ["api.mistral.ai"]}, "env_var", "one of Steward's own settings"),
        ({"env_var": "DATABASE_URL", "hosts": ["api.mistral.ai"]}, "env_var", "one of Steward's own settings"),
        ({"env_var": "CELERY_BROKER_URL", "hosts": ["x.ai"]}, "env_var", "one of Steward's own settings"),
        ({"env_var": "SECRET_KEY", "hosts": ["x.ai"]}, "env_var", "one of Steward's own settings"),
        ({"env_var": "REDIS_PASSWORD", "hosts": ["x.ai"]}, "env_var", "one of Steward's own settings"),
        ({"env_var": "AWS_SECRET_ACCESS_KEY", "hosts": ["x.ai"]}, "env_var", "one of Steward's own settings"),
        ({"env_var": "MISTRAL_API_KEY", "hosts": []}, "hosts", "at least one"),
        ({"env_var": "MISTRAL_API_KEY"}, "hosts", "required"),
        ({"env_var": "MISTRAL_API_KEY", "hosts": ["https://api.mistral.ai/v1"]}, "hosts", "is not a host"),
        ({"env_var": "MISTRAL_API_KEY", "hosts": ["*.mistral.ai"]}, "hosts", "is not a host"),
        ({"env_var": "MISTRAL_API_KEY", "hosts": ["api.mistral.ai:99999"]}, "hosts", "between 1 and 65535"),
    ],
)
def test_a_bad_credential_request_names_the_field_and_saves_nothing(bob, client_for, body, field, message) -> None:
    response = _post(client_for(bob), "/api/v1/endpoint-credentials", body)
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert message in " ".join(response.json()[field])
    assert not EndpointCredential.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="endpoint_credential").exists()


def test_bedrocks_key_variable_is_not_taken_for_stewards_own(bob, client_for) -> None:
    body = {"env_var": "AWS_BEARER_TOKEN_BEDROCK", "hosts": ["bedrock-runtime.eu-west-1.amazonaws.com"]}
    assert _post(client_for(bob), "/api/v1/endpoint-credentials", body).status_code == 201


def test_the_requester_never_approves_their_own_credential(alice, carol, bob, client_for) -> None:
    url = "/api/v1/endpoint-credentials"
    created = _post(client_for(alice), url, {"env_var": "MISTRAL_API_KEY", "hosts": ["API.Mistral.ai"]}).json()
    assert created["status"] == "requested" and created["hosts"] == ["api.mistral.ai"]
    pk = created["id"]

    own = _post(client_for(alice), f"{url}/{pk}/approve", {"comment": "Looks fine."})
    engineer = _post(client_for(bob), f"{url}/{pk}/approve", {"comment": "Looks fine."})
    no_comment = _post(client_for(carol), f"{url}/{pk}/approve", {"comment": " "})
    assert own.status_code == 403 and "alice requested MISTRAL_API_KEY and cannot approve it" in own.json()["detail"]
    assert engineer.status_code == 403
    assert no_comment.status_code == 400 and "comment" in no_comment.json()
    assert EndpointCredential.objects.get().status == CredentialStatus.REQUESTED

    approved = _post(client_for(carol), f"{url}/{pk}/approve", {"comment": "Mistral's EU endpoint."})
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert approved.json()["decided_by"] == "carol"
    events = list(AuditEvent.objects.filter(object_type="registry.endpointcredential").order_by("seq"))
    assert [(e.action, e.actor_name) for e in events] == [
        ("endpoint_credential.request", "alice"),
        ("endpoint_credential.approve", "carol"),
    ]
    assert events[1].after == {"status": "approved", "hosts": ["api.mistral.ai"]}


def test_requesting_other_hosts_needs_a_new_approval(alice, carol, bob) -> None:
    credential = EndpointCredential.request(bob, "MISTRAL_API_KEY", ["api.mistral.ai"])
    credential.decide("approve", alice, "Mistral.")
    again = EndpointCredential.request(bob, "MISTRAL_API_KEY", ["api.mistral.ai", "mistral.example.org"])
    assert again.pk == credential.pk and again.status == CredentialStatus.REQUESTED
    event = AuditEvent.objects.filter(action="endpoint_credential.request").order_by("-seq").first()
    assert event.before["hosts"] == ["api.mistral.ai"]
    assert event.after["hosts"] == ["api.mistral.ai", "mistral.example.org"]


def test_the_pages_show_the_binding_and_the_officer_decides_there(alice, carol, bob, client_for) -> None:
    page = client_for(bob).post("/registry/credentials/", {"env_var": "SECRET_KEY", "hosts": "x.ai"})
    assert page.status_code == 400 and "one of Steward&#x27;s own settings variables" in page.content.decode()
    assert not EndpointCredential.objects.exists()

    response = client_for(bob).post(
        "/registry/credentials/", {"env_var": "PARTNER_API_KEY", "hosts": "127.0.0.1\nlocalhost:8001"}
    )
    credential = EndpointCredential.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/registry/credentials/{credential.pk}/"
    assert credential.hosts == ["127.0.0.1", "localhost:8001"] and credential.requested_by == bob

    version = make_version(bob, base_url="http://127.0.0.1:9/v1", api_key_env="PARTNER_API_KEY")
    detail = client_for(bob).get(f"/registry/versions/{version.pk}/").content.decode()
    assert "Evaluations send no key" in detail and "awaiting approval" in detail

    decided = client_for(carol).post(f"/registry/credentials/{credential.pk}/approve/", {"comment": "Partner."})
    assert decided.status_code == 302
    credential.refresh_from_db()
    assert credential.status == CredentialStatus.APPROVED and credential.decided_by == carol
    assert "bound to its host" in client_for(bob).get(f"/registry/versions/{version.pk}/").content.decode()
    listing = client_for(carol).get(f"/registry/credentials/{credential.pk}/").content.decode()
    assert version.ref in listing and "key sent" in listing
