"""``steward-client``: pull and verify the signed policy, answer routing questions, export to LiteLLM.

Exit codes: 0 a valid policy is in force (or the route exists); 1 no valid policy; 2 bad usage;
3 the policy denies the route.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .client import PolicyClient, UpdateResult
from .litellm import litellm_yaml
from .policy import Policy, PolicyDenied
from .state import StateDir, write_atomically
from .verify import VerificationError, load_initial_root, open_envelope, verify_next_root

ANCHOR = "anchor.root.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steward-client", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pull = commands.add_parser("pull", help="pull, verify and persist the signed policy; report ACK/NACK")
    pull.add_argument("--url", required=True, help="Steward's base URL, e.g. https://steward.example.org")
    pull.add_argument("--policy-set", required=True)
    pull.add_argument("--token-file", required=True, type=Path, help="file holding the router token")
    pull.add_argument("--trust-root", required=True, type=Path, help="the trust root shipped with this router")
    pull.add_argument("--state-dir", required=True, type=Path)
    mode = pull.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one update, then exit")
    mode.add_argument("--interval", type=float, default=30.0, help="seconds between polls (jittered)")
    pull.add_argument("--timeout", type=float, default=10.0)
    pull.add_argument(
        "--on-change",
        metavar="CMD",
        help="shell command run after each new policy is verified and saved, before the ACK (e.g. a reload); "
        "a non-zero exit NACKs the version and keeps the previous one in force",
    )
    route = commands.add_parser("route", help="print where a task and classification go (JSON)")
    route.add_argument("--state-dir", required=True, type=Path)
    route.add_argument("--task", required=True)
    route.add_argument("--classification", required=True)
    route.add_argument("--trust-root", type=Path, help="default: the root saved by pull")
    export = commands.add_parser("export-litellm", help="print a LiteLLM proxy config.yaml")
    export.add_argument("--state-dir", required=True, type=Path)
    export.add_argument("--trust-root", type=Path, help="default: the root saved by pull")
    return parser


def _fail(message: str, code: int = 1) -> int:
    print(f"steward-client: {message}", file=sys.stderr)
    return code


def _pull(args: argparse.Namespace) -> int:
    try:
        token = args.token_file.read_text().strip()
        shipped = args.trust_root.read_bytes()
    except OSError as error:
        return _fail(f"{error.filename}: {error.strerror}", 2)
    if not token:
        return _fail(f"{args.token_file}: the token file is empty", 2)
    try:
        client = PolicyClient(
            args.url,
            args.policy_set,
            token,
            shipped,
            args.state_dir,
            timeout=args.timeout,
            on_apply=_command_runner(args.on_change, args.policy_set, args.state_dir) if args.on_change else None,
        )
    except VerificationError as error:
        return _fail(f"--trust-root: {error}", 2)
    write_atomically(args.state_dir / ANCHOR, shipped)

    def show(result: UpdateResult) -> None:
        version = f"v{result.policy.version}" if result.policy else "none"
        if result.outcome == "failed":
            kept = f"; keeping {version} in force" if result.policy else "; no valid policy in force"
            print(f"steward-client: {result.reason}{kept}", file=sys.stderr, flush=True)
        else:
            print(f"{args.policy_set} {version} {result.outcome}", flush=True)

    if args.once:
        result = client.update()
        show(result)
        return 0 if result.in_force else 1
    try:
        client.run(args.interval, on_result=show)
    except KeyboardInterrupt:
        pass
    return 0 if client.policy else 1


def _command_runner(command: str, policy_set: str, state_dir: Path) -> Callable[[Policy], None]:
    """Run ``command`` for each new policy; its environment names the version and the state directory."""

    def run(policy: Policy) -> None:
        environment = {
            **os.environ,
            "STEWARD_POLICY_SET": policy_set,
            "STEWARD_POLICY_VERSION": str(policy.version),
            "STEWARD_STATE_DIR": str(state_dir),
        }
        done = subprocess.run(command, shell=True, env=environment, capture_output=True, text=True)  # noqa: S602
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"--on-change command exited {done.returncode}: {tail[0][:300]}")

    return run


def _policy_from_state(state_dir: Path, trust_root: Path | None) -> Policy:
    state = StateDir(state_dir)
    anchor = trust_root.read_bytes() if trust_root else state.read(ANCHOR)
    if anchor is None:
        raise VerificationError(f"{state_dir}: no trust root (run pull first or give --trust-root)")
    root = load_initial_root(anchor)
    while (saved := state.root_version(root.version + 1)) is not None:
        root = verify_next_root(root, saved)
    envelope = state.envelope
    if envelope is None:
        raise VerificationError(f"{state_dir}: no policy pulled yet")
    info = state.info()
    verified = open_envelope(envelope, root, info.get("policy_set", ""), dt.datetime.now(dt.UTC))
    return Policy(verified.payload)


def _route(args: argparse.Namespace) -> int:
    try:
        policy = _policy_from_state(args.state_dir, args.trust_root)
    except (VerificationError, OSError) as error:
        return _fail(str(error))
    try:
        decision = policy.route(args.task, args.classification)
    except PolicyDenied as error:
        print(json.dumps({"decision": "deny", "reason": str(error)}))
        return _fail(str(error), 3)
    print(json.dumps({"decision": "route", **decision.as_dict()}, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    try:
        policy = _policy_from_state(args.state_dir, args.trust_root)
    except (VerificationError, OSError) as error:
        return _fail(str(error))
    sys.stdout.write(litellm_yaml(policy))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return {"pull": _pull, "route": _route, "export-litellm": _export}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
