"""``manage.py serve``: run the whole of Steward in the foreground — web, Celery worker and beat.

Used by ``make run``. Ctrl-C (or SIGTERM) stops every process it started; if one of them dies,
the others are stopped too, so nothing is left running half-way.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start the web server, a Celery worker, Celery beat and the demo model endpoint; Ctrl-C stops them all."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000", help="host:port for the web server")
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--no-beat", action="store_true", help="do not start Celery beat")

    def handle(self, *args, bind: str, web_workers: int, no_beat: bool, **options) -> None:
        python = sys.executable
        commands = {
            "web": [
                python,
                "-m",
                "gunicorn",
                "steward.wsgi",
                "--bind",
                bind,
                "--workers",
                str(web_workers),
                "--access-logfile",
                "-",
                "--graceful-timeout",
                "5",
            ],
            "worker": [
                python,
                "-m",
                "celery",
                "-A",
                "steward",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "--hostname",
                "worker@%h",
            ],
        }
        commands["demo-models"] = [
            python,
            "-m",
            "demo.server",
            "--port",
            str(settings.STEWARD_DEMO_ENDPOINT_PORT),
        ]
        if not no_beat:
            commands["beat"] = [
                python,
                "-m",
                "celery",
                "-A",
                "steward",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
            ]
        processes: dict[str, subprocess.Popen] = {}
        stopping = False

        def stop(signum=None, frame=None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            for name, command in commands.items():
                # Own process group: the terminal's Ctrl-C reaches us, and we stop them in order.
                processes[name] = subprocess.Popen(command, start_new_session=True)
            url = f"http://{bind}/"
            self._announce(url)
            while not stopping:
                for name, process in processes.items():
                    if process.poll() is not None:
                        self.stderr.write(f"{name} exited with code {process.returncode}; stopping the others.")
                        stopping = True
                        break
                time.sleep(0.5)
        finally:
            self._stop_all(processes)

    def _announce(self, url: str) -> None:
        health = url + "health/?format=json"
        for _ in range(60):
            try:
                with urllib.request.urlopen(health, timeout=10) as response:  # noqa: S310 - our own loopback URL
                    body = json.load(response)
                    break
            except urllib.error.HTTPError as error:
                body = json.load(error)
                if body.get("checks", {}).get("database", {}).get("ok"):
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            body = {}
        worker = body.get("checks", {}).get("worker", {})
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Steward is running at {url}"))
        self.stdout.write(f"  health: {url}health/ (worker: {'answered' if worker.get('ok') else 'not yet'})")
        self.stdout.write(f"  API docs: {url}api/docs/")
        self.stdout.write(f"  demo model endpoint: http://127.0.0.1:{settings.STEWARD_DEMO_ENDPOINT_PORT}/v1")
        for line in self._demo_logins():
            self.stdout.write(line)
        self.stdout.write("  Press Ctrl-C to stop the web server, the worker and beat.")

    def _demo_logins(self) -> list[str]:
        from django.contrib.auth import get_user_model

        from demo.seed import demo_password, demo_users

        present = set(
            get_user_model()
            .objects.filter(username__in=[u["username"] for u in demo_users()])
            .values_list("username", flat=True)
        )
        lines = [
            f"    {spec['username']:<6} {demo_password(spec['username']):<22} {spec['role']}"
            for spec in demo_users()
            if spec["username"] in present
        ]
        return ["  demo logins:", *lines] if lines else []

    def _stop_all(self, processes: dict[str, subprocess.Popen]) -> None:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 15
        for name, process in processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop in time; killing it.")
                process.kill()
                process.wait()
        self.stdout.write(f"Stopped {', '.join(processes)}.")
