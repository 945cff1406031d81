"""``cioproc sandbox``: run a local Customer.io Track API workspace."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from cioproc.sandbox.config import DEFAULT_API_KEY, DEFAULT_HOST, DEFAULT_PORT, DEFAULT_SITE_ID, SandboxConfig
from cioproc.sandbox.faults import FaultConfig


def _statuses(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("expected a comma-separated list such as 500,503,429") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cioproc sandbox",
        description="A local Customer.io Track API workspace (v1 identify/events/merge, v2 entity/batch) "
        "with inspection under /_sandbox/ and optional fault injection.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port; 0 picks a free one (default %(default)s)")
    parser.add_argument("--site-id", default=None, help=f"accepted site id (default $CIO_SITE_ID or {DEFAULT_SITE_ID})")
    parser.add_argument("--api-key", default=None, help="accepted API key (default $CIO_API_KEY or a sandbox key)")
    parser.add_argument(
        "--admin-token",
        default=None,
        help="token the /_sandbox/* routes require (Authorization: Bearer TOKEN); "
        "default: a random one, printed at start",
    )
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="fraction of requests answered with a fault status"
    )
    parser.add_argument(
        "--fault-statuses", type=_statuses, default=(500, 503, 429), help="fault statuses (default 500,503,429)"
    )
    parser.add_argument(
        "--retry-after", type=int, default=1, help="Retry-After seconds sent with 429 (default %(default)s)"
    )
    parser.add_argument("--latency-ms", type=int, default=0, help="latency added to every Track request")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="fraction of connections closed before handling")
    parser.add_argument(
        "--drop-after-apply-rate", type=float, default=0.0, help="fraction of connections closed after handling"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault RNG")
    parser.add_argument(
        "--region", choices=("us", "eu"), default="us",
        help="the workspace's region, as GET /api/v1/accounts/region reports it (default %(default)s)",
    )
    parser.add_argument(
        "--allow-email-update-by-id",
        action="store_true",
        help="workspace setting: an identify by id may change an email that is already set",
    )
    return parser


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> SandboxConfig:
    """A SandboxConfig from parsed arguments; CIO_SITE_ID / CIO_API_KEY fill what is not given."""
    faults = FaultConfig(
        fault_rate=args.fault_rate,
        fault_statuses=args.fault_statuses,
        retry_after=args.retry_after,
        latency_ms=args.latency_ms,
        drop_rate=args.drop_rate,
        drop_after_apply_rate=args.drop_after_apply_rate,
        seed=args.seed,
    )
    token = {"admin_token": args.admin_token} if args.admin_token else {}
    return SandboxConfig(
        **token,
        host=args.host,
        port=args.port,
        site_id=args.site_id or environ.get("CIO_SITE_ID") or DEFAULT_SITE_ID,
        api_key=args.api_key or environ.get("CIO_API_KEY") or DEFAULT_API_KEY,
        faults=faults,
        allow_email_update_by_id=args.allow_email_update_by_id,
        region=args.region,
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, print the URL once listening, serve until interrupted."""
    from cioproc.sandbox.server import run

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))

    def ready(url: str) -> None:
        print(
            f"Customer.io sandbox listening on {url} (site id {config.site_id}); inspect {url}/_sandbox/people",
            flush=True,
        )
        if args.admin_token:
            print("sandbox admin token (Authorization: Bearer ...): the one given with --admin-token", flush=True)
        else:
            print(f"sandbox admin token (Authorization: Bearer ...): {config.admin_token}", flush=True)

    try:
        run(config, ready)
    except OSError as exc:
        print(f"cioproc sandbox: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
