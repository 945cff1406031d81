"""The `cioproc` command line: one subcommand per job, each importing only what it needs."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from cioproc import __version__

Handler = Callable[[argparse.Namespace], int]


def _kafka(args: argparse.Namespace) -> int:
    from cioproc.kafka import broker

    return broker.main(args.action, args.port, secure=args.secure)


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
    for line in config.warnings():
        print(f"warning: {line}", file=sys.stderr)
    for key, value in config.masked().items():
        print(f"{key}={value}")
    return 0


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
    p.add_argument(
        "--secure",
        action="store_true",
        help="start with a SASL_SSL listener (SCRAM-SHA-512, generated CA) on the port and mutual TLS on port+2; "
        "client settings go to .cioproc/kafka/<port>/client.env",
    )
    p.set_defaults(handler=_kafka)

    p = sub.add_parser("topics", help="create (apply) or compare (check) the topics declared in topics.yaml")
    p.add_argument("action", choices=("apply", "check"))
    p.add_argument("--file", help="topics file (default $CIOPROC_TOPICS_FILE or ./topics.yaml)")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)")
    p.set_defaults(handler=_topics)

    p = sub.add_parser("config", help="print the effective configuration, secrets masked")
    p.set_defaults(handler=_config)

    p = sub.add_parser("worker", help="run the Faust app: processor, sender or both")
    p.add_argument("--role", choices=("processor", "sender", "all"), default="all")
    p.set_defaults(handler=_worker)

    for name, target, help_text in _DELEGATED:
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.add_argument("args", nargs=argparse.REMAINDER)
        p.set_defaults(handler=_delegate(target))
    return parser


# Subcommands whose own parser lives with the package they drive: (name, "module:function", help).
_DELEGATED = (
    ("sandbox", "cioproc.sandbox.cli:main", "run a local Customer.io Track API workspace"),
    ("generate", "cioproc.generate.cli:generate_main", "write synthetic mParticle batches as JSON lines"),
    ("produce", "cioproc.generate.cli:produce_main", "write JSON lines (FILE or -) to the input topics"),
    ("replay", "cioproc.replay:main", "re-run a topic from a time or offsets, or re-drive a dead-letter topic"),
    ("demo", "cioproc.demo:main", "the whole pipeline on generated data: Kafka, sandbox, worker, summary"),
)


def _delegate(target: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        import importlib

        module, _, function = target.partition(":")
        return int(getattr(importlib.import_module(module), function)(args.args) or 0)

    return handler


def _worker(args: argparse.Namespace) -> int:
    from cioproc.app.worker import main as worker_main

    return worker_main(args.role)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if argv and argv[0] in {name for name, _, _ in _DELEGATED}:
        # The delegate parses its own options, --help included.
        args = argparse.Namespace(handler=_delegate(dict((n, t) for n, t, _ in _DELEGATED)[argv[0]]), args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
