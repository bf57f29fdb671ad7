"""Demo decision traffic: a gateway's routed requests, reported to Steward through the real client.

``python -m demo.traffic`` (``make run`` does it after ``seed_demo``) registers the router
``demo-gateway`` for production, starts Steward's own WSGI application on 127.0.0.1 in this
process, and sends a few thousand decision records through ``steward_client.DecisionReporter``
and ``POST /api/v1/decisions``, built by ``steward_client.Enforcer`` exactly as the LiteLLM plugin
builds them: every production route, latencies and tokens of the right size, some fallbacks, some
escalations, content or only its digest by the classification's rule, and a handful of genuine
violations (a model the route does not allow, one the matrix does not allow, a version that was
never published). Running it again sends nothing once the demo gateway has reported.

Decisions are judged as of the moment they were made, so the traffic is dated within the past week
but never before the demo's governance was in place (its last approval, holding or publication):
traffic dated earlier would rightly be flagged as made under a policy not yet published.
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from tempfile import TemporaryDirectory
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from steward_client import DecisionReporter, Enforcer, Policy

ROUTER_NAME = "demo-gateway"
TICKETS = [
    ("My invoice shows the wrong company name", "billing"),
    ("I was charged twice this month", "billing"),
    ("I cannot log in since the update", "account"),
    ("Please change the email address on my account", "account"),
    ("The export crashes halfway through", "technical"),
    ("Sync between my phone and laptop is broken", "technical"),
]
# How often each task runs, relative to the others.
WEIGHTS = {
    "ticket-triage": 12,
    "support-reply": 5,
    "contract-review": 2,
    "claims-summary": 2,
    "eu-customer-chat": 4,
    "code-review": 3,
    "marketing-copy": 1,
}
ANSWERS = {
    "support-reply": "Thank you for your message; we have refunded the duplicate charge.",
    "contract-review": "Clause 14.2 caps liability below the contract value; flag for legal.",
    "claims-summary": "Claim for outpatient physiotherapy, six sessions, within policy limits.",
    "eu-customer-chat": "Your order ships from our Amsterdam warehouse tomorrow.",
    "code-review": "The retry loop never backs off; add a jittered delay.",
    "marketing-copy": "Governance that keeps up with your models.",
}


@dataclass(frozen=True)
class TaskSize:
    """A task's typical request: input and output tokens, and how often it runs (a weight)."""

    input_tokens: int
    output_tokens: int
    weight: int


def demo_records(
    policy: Policy,
    sizes: dict[str, TaskSize],
    count: int,
    *,
    days: int = 7,
    seed: int = 13,
    now: float | None = None,
    since: float | None = None,
) -> list[dict]:
    """``count`` decision records under ``policy``, spread over the past ``days`` but not before
    ``since`` (a timestamp); deterministic per seed."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    earliest = now - days * 86400 if since is None else max(now - days * 86400, since)
    span = max(now - earliest, 0.0)
    enforcer = Enforcer(policy)
    routes = [route for route in policy.routes if route["task"] in sizes]
    weights = [sizes[route["task"]].weight for route in routes]
    records = []
    for index in range(count):
        route = rng.choices(routes, weights)[0]
        task, classification = route["task"], route["classification"]
        size = sizes[task]
        ticket, label = TICKETS[index % len(TICKETS)]
        text = f"user: {ticket}" if task == "ticket-triage" else f"user: {task.replace('-', ' ')} request {index}"
        plan = enforcer.plan(task, [{"role": "user", "content": text}], metadata={"classification": classification})
        plan.started_at = now - rng.uniform(min(60.0, span / 2), span)
        model, latency = plan.primary, rng.lognormvariate(6.2, 0.45)  # about 500 ms, a long tail
        luck = rng.random()
        if luck < 0.05 and plan.fallbacks:
            model, latency = plan.fallbacks[0], latency * 2.2  # the primary failed first
        elif luck < 0.08 and route.get("escalation"):
            plan.escalation = route["escalation"]["to"]
            model, latency = plan.escalation, latency * 1.6
        input_tokens = max(1, int(rng.gauss(size.input_tokens, size.input_tokens / 4)))
        output_tokens = max(1, int(rng.gauss(size.output_tokens, size.output_tokens / 4)))
        records.append(
            enforcer.record(
                plan.as_metadata(),
                request_id=f"demo-{uuid.UUID(int=rng.getrandbits(128))}",
                model=model,
                input_text=text,
                output_text=label if task == "ticket-triage" else ANSWERS.get(task, "Done."),
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                ended_at=plan.started_at + latency / 1000,
            )
        )
    return records + genuine_violations(policy, enforcer, now, earliest)


def genuine_violations(policy: Policy, enforcer: Enforcer, now: float, earliest: float | None = None) -> list[dict]:
    """A few decisions an officer must see: what a misconfigured or out-of-date router would report."""
    by_route = {(route["task"], route["classification"]): route for route in policy.routes}
    wrong = []

    def off_policy(task: str, classification: str, model: str, minutes_ago: int, version: int | None = None) -> None:
        if (task, classification) not in by_route or not model:
            return
        plan = enforcer.plan(task, [], metadata={"classification": classification})
        plan.started_at = now - minutes_ago * 60 if earliest is None else max(now - minutes_ago * 60, earliest)
        record = enforcer.record(
            plan.as_metadata(),
            request_id=f"demo-violation-{len(wrong) + 1}",
            model=model,
            input_text=f"user: {task} request",
            output_text="Done.",
            input_tokens=900,
            output_tokens=120,
            ended_at=plan.started_at + 0.8,
        )
        if version is not None:
            record["policy_version"] = version
        wrong.append(record)

    # A ticket router still on last quarter's model; a reply router sending personal data to a
    # model the matrix refuses for it; a gateway reporting a policy version that never existed.
    off_policy("ticket-triage", "internal", "openai/gpt-4o@2024-05-13", 340)
    off_policy("ticket-triage", "internal", "openai/gpt-4o@2024-05-13", 320)
    off_policy("support-reply", "pii", "google/gemini-1.5-pro@002", 200)
    off_policy("support-reply", "pii", "google/gemini-1.5-pro@002", 190)
    off_policy(
        "ticket-triage", "internal", next(iter(by_route[("ticket-triage", "internal")]["fallbacks"]), ""), 90, 99
    )
    return wrong


def send(url: str, token: str, records: list[dict], spool_dir: str | os.PathLike) -> DecisionReporter:
    """Report ``records`` through the client and wait until Steward has them all."""
    reporter = DecisionReporter(url, token, spool_dir, flush_interval=0.2, retry_initial=0.2, retry_max=2)
    for record in records:
        reporter.report(record)
    delivered = reporter.drain(120)
    reporter.close()
    if not delivered:
        raise RuntimeError(f"the demo decisions did not all reach {url}; {reporter.spool_state().records} left")
    return reporter


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


@contextmanager
def local_steward() -> Iterator[str]:
    """Steward's WSGI application on a free port of 127.0.0.1, in a thread of this process."""
    from django.core.wsgi import get_wsgi_application

    server = make_server(
        "127.0.0.1", 0, get_wsgi_application(), server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _governed_since() -> float | None:
    """When the demo's governance last changed: the latest cell or version change, holding or publication."""
    from compliance.models import CertificationHolding, MatrixCell
    from portfolio.models import PolicyVersion
    from registry.models import ModelVersion

    moments = [
        MatrixCell.history.order_by("-history_date").values_list("history_date", flat=True).first(),
        ModelVersion.history.order_by("-history_date").values_list("history_date", flat=True).first(),
        CertificationHolding.objects.order_by("-recorded_at").values_list("recorded_at", flat=True).first(),
        PolicyVersion.objects.order_by("-published_at").values_list("published_at", flat=True).first(),
    ]
    known = [moment for moment in moments if moment is not None]
    return max(known).timestamp() if known else None


def seed_traffic(count: int = 3000, url: str | None = None) -> int:
    """Register the demo gateway and report ``count`` decisions (plus a few violations); 0 if it has reported."""
    from audits.models import DecisionRecord
    from portfolio.feed import register_router
    from portfolio.models import PolicyRelease, PolicySet, Router, Task
    from steward_client.verify import strict_json

    if DecisionRecord.objects.filter(router__name__startswith=ROUTER_NAME).exists():
        return 0
    release = (
        PolicyRelease.objects.filter(policy_version__policy_set__slug="production")
        .order_by("-policy_version__number")
        .first()
    )
    if release is None:
        return 0
    policy = Policy(strict_json(bytes(release.payload), "policy payload"))
    sizes = {
        task.slug: TaskSize(task.typical_input_tokens, task.typical_output_tokens, WEIGHTS.get(task.slug, 1))
        for task in Task.objects.all()
    }
    # A run stopped before reporting left a router whose token is lost: register another.
    name = ROUTER_NAME
    while Router.objects.filter(name=name).exists():
        name = f"{ROUTER_NAME}-{uuid.uuid4().hex[:6]}"
    _, token = register_router(PolicySet.objects.get(slug="production"), name, by=None)
    records = demo_records(policy, sizes, count, since=_governed_since())
    with TemporaryDirectory(prefix="steward-demo-spool-") as spool:
        if url is not None:
            send(url, token, records, spool)
        else:
            with local_steward() as local:
                send(local, token, records, spool)
    return DecisionRecord.objects.filter(router__name=name).count()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=3000, help="decision records to send (plus a few violations)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "steward.settings")
    import django

    django.setup()
    started = time.perf_counter()
    sent = seed_traffic(args.count)
    if sent:
        print(f"Demo traffic: {sent} decision records from {ROUTER_NAME} in {time.perf_counter() - started:.1f}s.")  # noqa: T201
    else:
        print(f"Demo traffic: {ROUTER_NAME} has reported already (or production has no policy); nothing sent.")  # noqa: T201


if __name__ == "__main__":
    main()
