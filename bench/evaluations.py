"""Benchmark: evaluation runs on one Celery worker against the demo endpoint at a fixed latency.

1,000 cases x 4 model versions, every answer taking a fixed 50 ms, the suite's concurrency C
(default 32). With C requests always in flight the runs cannot finish sooner than

    ideal = cases x versions x latency / C        (1000 x 4 x 50 ms / 32 = 6.25 s)

and the bench prints the wall time from starting the four runs to the last one finishing, and its
ratio to that ideal (target at most 1.5). Beside it, each round measures the floor: a bare asyncio
client (plain streams, no HTTP library, no database) making the same 4,000 requests at the same
concurrency against the same endpoint, and prints the ratio to it too. The floor pays what the
machine and the demo endpoint cost at that moment, so on a shared machine it moves with other load
where the ideal cannot.

"One worker" is one Celery worker node with one execution slot: ``celery worker --pool=prefork
--concurrency=1``, a single process that takes one task at a time; inside a task (a chunk of
cases) an asyncio loop keeps C requests in flight. Starting the four runs (HTTP-free) and
polling for their end are inside the measured time; starting the worker is not.

One run creates a throwaway PostgreSQL database (created, migrated and dropped here; a name that
existed before is dropped only if it contains "bench"), starts the demo endpoint as a process of
its own (``python -m demo.server --latency-ms 50``) and the worker on the
Redis broker, on a Celery queue of its own (so no other worker on that Redis database takes the
bench's tasks, and the bench's worker takes no one else's).

    .venv/bin/python bench/evaluations.py
    .venv/bin/python bench/evaluations.py --cases 1000 --versions 4 --latency-ms 50 --concurrency 32 \\
        --repeat 2 --database-url postgres://postgres@127.0.0.1:5432/steward_evalbench \\
        --broker-url redis://127.0.0.1:6379/14
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import uuid

import harness
from harness import BenchError

TARGET_RATIO = 1.5
DEMO_MODELS = ["demo-oracle", "demo-careful", "demo-swift", "demo-budget"]
TICKETS = [
    "I was charged twice for my subscription this month",
    "I can't log in since yesterday",
    "The app shows error 500 when I save",
    "Please send a refund for the duplicate payment",
    "How do I reset my password?",
    "Exports crash halfway through",
]
SETTINGS_MODULE = '''\
"""Steward's settings with a Celery queue of the bench's own."""

from steward.settings import *  # noqa: F403

CELERY_TASK_DEFAULT_QUEUE = {queue!r}
'''


def build_data(cases: int, versions: int, concurrency: int, base_url: str):
    """A suite of ``cases`` ticket-triage cases and ``versions`` approved demo versions."""
    from django.contrib.auth.models import User

    from registry.evaluation.suites import SuiteSpec, save_suite
    from registry.models import Status
    from tests.factories import approved_credential, make_model, make_provider, make_version

    owner = User.objects.create_superuser("evalbench", "evalbench@example.org", None)
    approved_credential()  # DEMO_ENDPOINT_API_KEY, for 127.0.0.1 and localhost
    provider = make_provider(name="Bench demo", slug="benchdemo", regions=["local"])
    built = []
    for index in range(versions):
        model_id = DEMO_MODELS[index % len(DEMO_MODELS)]
        model = make_model(provider=provider, name=f"{model_id} {index}", slug=f"m{index}", context_window=8000)
        built.append(
            make_version(
                owner,
                model=model,
                status=Status.APPROVED,
                version="1",
                region="local",
                base_url=base_url,
                provider_model_id=model_id,
                api_key_env="DEMO_ENDPOINT_API_KEY",
                input_price_micro_usd=100_000,
                output_price_micro_usd=400_000,
            )
        )
    prompt = "Classify this support ticket as billing, technical or account. Ticket: {} (ref {})"
    spec_cases = [
        {"key": f"case-{n + 1}", "position": n, "messages": [{"role": "user", "content": prompt.format(ticket, n + 1)}]}
        for n, ticket in zip(range(cases), itertools.cycle(TICKETS))
    ]
    suite_fields = {"name": "Bench triage", "slug": "bench-triage", "category": "accuracy", "scorer": "label"}
    suite_fields |= {"scorer_config": {"labels": ["billing", "technical", "account"]}, "concurrency": concurrency}
    return save_suite(SuiteSpec(suite_fields, spec_cases), owner)[0], built


def measure(suite, versions, timeout: float) -> tuple[float, list]:
    """Start one run per version and wait for all of them to finish; returns (seconds, runs)."""
    from registry.evaluation.runs import start_run
    from registry.models import EvaluationRun, RunTrigger

    started = time.perf_counter()
    runs = [start_run(suite, version, trigger=RunTrigger.API) for version in versions]
    ids = [run.pk for run in runs]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not EvaluationRun.objects.filter(pk__in=ids, status__in=["queued", "running"]).exists():
            break
        time.sleep(0.02)
    else:
        raise BenchError(f"the runs did not finish within {timeout:g} s")
    wall = time.perf_counter() - started
    return wall, list(EvaluationRun.objects.filter(pk__in=ids).order_by("pk"))


def floor_requests(suite, versions) -> list[bytes]:
    """The bodies the runs POST, as the endpoint client writes them: every case for every version."""
    messages = list(suite.cases.order_by("position").values_list("messages", flat=True))
    return [
        json.dumps({"model": version.provider_model_id, "messages": case, "max_tokens": 512}).encode()  # the default
        for version in versions
        for case in messages
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=4)
    parser.add_argument("--latency-ms", type=int, default=50, help="fixed latency of every answer (default 50)")
    parser.add_argument("--concurrency", type=int, default=32, help="the suite's concurrency C (default 32)")
    parser.add_argument("--worker-concurrency", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--repeat", type=int, default=2, help="measured rounds (default 2)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/steward_evalbench")
    parser.add_argument("--broker-url", default=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14"))
    args = parser.parse_args()
    if not 1 <= args.cases <= 20_000 or not 1 <= args.versions <= 16 or not 1 <= args.repeat <= 10:
        parser.error("--cases must be 1..20000, --versions 1..16, --repeat 1..10")
    if not 1 <= args.concurrency <= 256 or not 0 <= args.latency_ms <= 10_000:
        parser.error("--concurrency must be 1..256, --latency-ms 0..10000")
    if not args.broker_url.startswith("redis://"):
        parser.error("--broker-url must be a redis:// URL")
    return args


def run() -> int:
    args = parse_args()
    with harness.Run() as bench:
        tmp = bench.directory("evalbench-")
        queue = f"evalbench-{uuid.uuid4().hex[:12]}"
        (tmp / "evalbench_settings.py").write_text(SETTINGS_MODULE.format(queue=queue))
        env = harness.environment(
            tmp,
            "evalbench_settings",
            DATABASE_URL=args.database_url,
            CELERY_BROKER_URL=args.broker_url,
            STEWARD_EVALUATION_TIMEOUT="30",
        )
        os.environ.update(env)
        sys.path[:0] = [str(tmp), str(harness.ROOT)]
        bench.database(args.database_url)
        harness.python(env, "manage.py", "migrate", "--noinput", "-v0")
        import django

        django.setup()
        from django.db import connections

        bench.callback(connections.close_all)  # before the database is dropped
        port = harness.demo_endpoint(bench, env, args.latency_ms)
        suite, versions = build_data(args.cases, args.versions, args.concurrency, f"http://127.0.0.1:{port}/v1")
        bodies = floor_requests(suite, versions)
        node = harness.celery_worker(bench, env, queue, args.worker_concurrency, tmp / "worker.log")
        ideal = args.cases * args.versions * args.latency_ms / 1000 / args.concurrency
        print(
            f"{args.cases} cases x {args.versions} versions, {args.latency_ms} ms per answer, suite concurrency "
            f"C={args.concurrency}; one worker {node} (--pool=prefork --concurrency={args.worker_concurrency}); "
            f"ideal {ideal:.2f} s; floor: a bare asyncio client, the same {len(bodies)} requests at "
            f"C={args.concurrency}; {os.cpu_count()} cores"
        )
        ratios, floor_ratios = [], []
        headers = {"Content-Type": "application/json"}
        for round_number in range(1, args.repeat + 1):
            floor, statuses = harness.bare_posts(
                port, "/v1/chat/completions", bodies, headers, args.concurrency, timeout=max(120, ideal * 20)
            )
            if statuses != {200: len(bodies)}:
                raise BenchError(f"round {round_number}: the floor's requests were answered {dict(statuses)}")
            wall, runs = measure(suite, versions, timeout=max(120, ideal * 20))
            answered = sum(run.done for run in runs)
            errors = sum(run.errors for run in runs)
            statuses = {run.status for run in runs}
            if statuses != {"completed"} or answered != args.cases * args.versions:
                raise BenchError(f"round {round_number}: runs ended {statuses} with {answered} answers")
            ratios.append(wall / ideal)
            floor_ratios.append(wall / floor)
            print(
                f"round {round_number}: wall {wall:.2f} s, ratio {ratios[-1]:.2f} (target <= {TARGET_RATIO}); "
                f"floor {floor:.2f} s, ratio to the floor {floor_ratios[-1]:.2f}; "
                f"{answered} answers, {errors} errors, p50 latency "
                f"{', '.join(str(run.latency_p50_ms) for run in runs)} ms"
            )
        best = min(ratios)
        print(
            f"best ratio {best:.2f}: {'PASS' if best <= TARGET_RATIO else 'MISS'} (target <= {TARGET_RATIO}); "
            f"best ratio to the floor {min(floor_ratios):.2f}"
        )
        return 0 if best <= TARGET_RATIO else 1


if __name__ == "__main__":
    harness.main(run)
