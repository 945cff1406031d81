"""The `cioproc` command line: one subcommand per job, each importing only what it needs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from cioproc import __version__
from cioproc.config import ROLES, SETTINGS
from cioproc.errors import CioprocError

Handler = Callable[[argparse.Namespace], int]


def _kafka(args: argparse.Namespace) -> int:
    from cioproc.kafka import broker

    return broker.main(args.action, args.port, secure=args.secure)


def _topics(args: argparse.Namespace) -> int:
    from cioproc.config import load_config
    from cioproc.kafka import admin

    config = load_config()
    bootstrap = args.bootstrap or config.kafka.bootstrap_servers
    path = args.file or str(config.topics_file)
    return admin.main(args.action, bootstrap, path, **config.kafka.aiokafka_kwargs())


def _config(args: argparse.Namespace) -> int:
    from cioproc.config import load_config

    config = load_config()
    for line in config.warnings():
        print(f"warning: {line}", file=sys.stderr)
    for key, value in config.masked().items():
        print(f"{key}={value}")
    return 0


# One example block per subcommand, shown by `cioproc COMMAND --help`.
EXAMPLES: dict[str, str] = {
    "check": "cioproc check                    # everything a worker of role all needs\n"
             "cioproc check --role processor   # no Customer.io credentials needed",
    "status": "cioproc status\ncioproc status --json | jq '.groups[].lag'",
    "inspect": "cioproc inspect commands --key 8016471649 --limit 20\n"
               "cioproc inspect commands --partition 3 --offset 1200 --limit 5\n"
               "cioproc inspect dlq --from-time 2026-01-31T12:00:00Z\n"
               "cioproc inspect dlq --source batches --limit 100",
    "completion": "source <(cioproc completion bash)\ncioproc completion zsh > \"${fpath[1]}/_cioproc\"",
    "kafka": "cioproc kafka start\ncioproc kafka status --port 29092",
    "topics": "cioproc topics apply\ncioproc topics check --file topics.yaml",
    "config": "cioproc config\nCIOPROC_ENV_FILE=prod.env cioproc config",
    "worker": "cioproc worker                  # processor and sender in one process\n"
              "cioproc worker --role sender",
    "sandbox": "cioproc sandbox --port 8765\ncioproc sandbox --fault-rate 0.1 --region eu",
    "generate": "cioproc generate --users 100 --events 5000 > batches.jsonl",
    "produce": "cioproc produce batches.jsonl\ncioproc generate --events 1000 | cioproc produce -",
    "replay": "cioproc replay batches --from-time 2026-01-31T00:00:00Z --dry-run\n"
              "cioproc replay dlq --source commands",
    "demo": "cioproc demo\ncioproc demo --users 500 --events 100000",
}


def _add(sub: Any, name: str, help_text: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand with its one-line help and its examples."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=help_text, epilog="examples:\n" + _indent(EXAMPLES[name]),
        formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs,
    )
    return parser


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cioproc",
        description="Kafka-native stream processor: mParticle event batches in, Customer.io commands out.",
        epilog="`cioproc COMMAND --help` shows a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"cioproc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _add(sub, "check", "check configuration, Kafka, topics and Customer.io credentials for a role")
    p.add_argument("--role", choices=ROLES, default="all", help="the worker role to check for (default all)")
    p.set_defaults(handler=_check)

    p = _add(sub, "status", "consumer groups (members, offsets, lag per partition) and dead-letter topic sizes")
    p.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    p.set_defaults(handler=_status)

    p = _add(sub, "inspect", "print records of the commands or a dead-letter topic as JSON lines")
    p.add_argument("what", choices=("commands", "dlq"))
    p.add_argument("--source", choices=("commands", "batches"), default="commands",
                   help="dlq: the dead-letter topic of the commands (default) or of the batches")
    p.add_argument("--key", help="only records of this MPID (reads only its partition)")
    p.add_argument("--partition", type=int, help="only this partition")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--offset", type=int, help="start at this offset (needs --partition)")
    start.add_argument("--from-time", help="start at this time (ISO 8601 or Unix ms)")
    p.add_argument("--limit", type=int, default=100, help="at most this many records (default %(default)s)")
    p.set_defaults(handler=_inspect)

    p = _add(sub, "completion", "print a shell completion script")
    p.add_argument("shell", choices=("bash", "zsh"))
    p.set_defaults(handler=_completion)

    p = _add(sub, "kafka", "start, stop or query the local development Kafka (KRaft)")
    p.add_argument("action", choices=("start", "stop", "status"))
    p.add_argument("--port", type=int, default=None, help="listener port (default $CIOPROC_KAFKA_PORT or 9092)")
    p.add_argument(
        "--secure",
        action="store_true",
        help="start with a SASL_SSL listener (SCRAM-SHA-512, generated CA) on the port and mutual TLS on port+2; "
        "client settings go to .cioproc/kafka/<port>/client.env",
    )
    p.set_defaults(handler=_kafka)

    p = _add(sub, "topics", "create (apply) or compare (check) the topics declared in topics.yaml")
    p.add_argument("action", choices=("apply", "check"))
    p.add_argument("--file", help="topics file (default $CIOPROC_TOPICS_FILE or ./topics.yaml)")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)")
    p.set_defaults(handler=_topics)

    p = _add(sub, "config", "print the effective configuration, secrets masked")
    p.epilog = f"{p.epilog}\n\nvariables (default):\n" + "\n".join(
        f"  {s.variable} ({s.default or 'unset'}{', masked' if s.secret else ''}): {s.help}" for s in SETTINGS
    )
    p.set_defaults(handler=_config)

    p = _add(sub, "worker", "run the Faust app: processor, sender or both")
    p.add_argument("--role", choices=ROLES, default="all")
    p.set_defaults(handler=_worker)

    for name, target, help_text in _DELEGATED:
        p = _add(sub, name, help_text, add_help=False)
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


def _delegate(target: str, name: str = "") -> Handler:
    def handler(args: argparse.Namespace) -> int:
        import importlib

        module, _, function = target.partition(":")
        try:
            return int(getattr(importlib.import_module(module), function)(args.args) or 0)
        except SystemExit as exc:  # the delegate's parser printed its help (or a usage error)
            if name and {"-h", "--help"} & set(args.args):
                print("\nexamples:\n" + _indent(EXAMPLES[name]))
            raise exc

    return handler


def _check(args: argparse.Namespace) -> int:
    from cioproc.ops.check import main as check_main

    return check_main(args.role)


def _status(args: argparse.Namespace) -> int:
    from cioproc.ops.status import main as status_main

    return status_main(as_json=args.json)


def _inspect(args: argparse.Namespace) -> int:
    from cioproc.ops.inspect import main as inspect_main

    return inspect_main(args)


def _completion(args: argparse.Namespace) -> int:
    from cioproc.ops.completion import script

    print(script(args.shell, build_parser()))
    return 0


def _worker(args: argparse.Namespace) -> int:
    from cioproc.app.worker import main as worker_main

    return worker_main(args.role)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if argv and argv[0] in {name for name, _, _ in _DELEGATED}:
        # The delegate parses its own options, --help included.
        target = dict((n, t) for n, t, _ in _DELEGATED)[argv[0]]
        args = argparse.Namespace(handler=_delegate(target, argv[0]), args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CioprocError as exc:  # every kind of cioproc error: its lines, its exit code, no traceback
        for line in exc.lines():
            print(f"{exc.label}: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
