"""The `cioproc` command line: one subcommand per job, each importing only what it needs."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from cioproc import __version__

Handler = Callable[[argparse.Namespace], int]


def _kafka(args: argparse.Namespace) -> int:
    from cioproc.kafka import broker

    return broker.main(args.action, args.port)


def _topics(args: argparse.Namespace) -> int:
    from cioproc.config import ConfigError, load_config
    from cioproc.kafka import admin

    try:
        config = load_config()
    except ConfigError as exc:
        return _config_failed(exc)
    bootstrap = args.bootstrap or config.kafka.bootstrap_servers
    path = args.file or str(config.topics_file)
    return admin.main(args.action, bootstrap, path, **config.kafka.aiokafka_kwargs())


def _config(args: argparse.Namespace) -> int:
    from cioproc.config import ConfigError, load_config

    try:
        config = load_config()
    except ConfigError as exc:
        return _config_failed(exc)
    for key, value in config.masked().items():
        print(f"{key}={value}")
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from cioproc.sandbox.__main__ import main as sandbox_main

    return sandbox_main(args.args)


def _config_failed(exc: Exception) -> int:
    for line in getattr(exc, "problems", [str(exc)]):
        print(f"config error: {line}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cioproc",
        description="Kafka-native stream processor: mParticle event batches in, Customer.io commands out.",
    )
    parser.add_argument("--version", action="version", version=f"cioproc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("kafka", help="start, stop or query the local development Kafka (KRaft)")
    p.add_argument("action", choices=("start", "stop", "status"))
    p.add_argument("--port", type=int, default=None, help="listener port (default $CIOPROC_KAFKA_PORT or 9092)")
    p.set_defaults(handler=_kafka)

    p = sub.add_parser("topics", help="create (apply) or compare (check) the topics declared in topics.yaml")
    p.add_argument("action", choices=("apply", "check"))
    p.add_argument("--file", help="topics file (default $CIOPROC_TOPICS_FILE or ./topics.yaml)")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)")
    p.set_defaults(handler=_topics)

    p = sub.add_parser("config", help="print the effective configuration, secrets masked")
    p.set_defaults(handler=_config)

    p = sub.add_parser("sandbox", help="run a local Customer.io Track API workspace", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(handler=_sandbox)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
