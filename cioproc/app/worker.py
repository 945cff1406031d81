"""``cioproc worker --role ROLE`` (and ``python -m cioproc.app.worker [ROLE]``): run the app.

Configuration problems, a topics.yaml that does not fit the app id, and topics missing
from the cluster are reported as one line each, before the worker joins its group. The
worker then runs until SIGTERM or SIGINT (a clean stop) or a fatal error (non-zero exit).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import faust

from cioproc.app.factory import CioprocApp, create_app
from cioproc.app.startup import verify_topics
from cioproc.config import ROLES, Config, load_config
from cioproc.kafka.topics import ActualTopic, TopicsFile, load_topics
from cioproc.observability.logs import register_secret, setup_logging


class CommandLineWorker(faust.Worker):
    """The Worker ``faust -A cioproc.app worker`` runs: cioproc's JSON logging stays in place."""

    def __init__(self, *services: Any, **options: Any) -> None:
        options.update(override_logging=False, redirect_stdouts=False)
        super().__init__(*services, **options)
        for app in services:  # the start-up banner shows the web server only when it runs
            if isinstance(app, CioprocApp) and app.boot_strategy.enable_web is False:
                app.conf.web_enabled = False


def prepare_app(role: str = "all") -> CioprocApp:
    """What every way of running a worker does before Faust starts (``cioproc worker`` and
    ``faust -A cioproc.app worker``): the configuration, its secrets registered for redaction,
    JSON logs, the app, and the cluster's topics checked. A CioprocError (one line each
    problem) when it cannot run; nothing has started then."""
    config = load_config()
    if config.api_key:
        register_secret(config.api_key.reveal())
    if config.kafka.sasl_password:
        register_secret(config.kafka.sasl_password.reveal())
    setup_logging(config.log_level)
    for line in config.warnings():
        logging.getLogger("cioproc.config").warning(line)
    topics = load_topics(config.topics_file)
    app = create_app(role, config, topics)
    actual = _preflight(app.role, config, topics)
    app.use_topic_limits(actual)
    app.topics_verified = True
    return app


def main(role: str = "all") -> int:
    """Run a worker for ``role`` in this process; the exit status (a CioprocError for the CLI to print)."""
    app = prepare_app(role)
    config = app.config
    worker = faust.Worker(
        app,
        loglevel=config.log_level,
        override_logging=False,
        redirect_stdouts=False,
        quiet=True,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def _preflight(role: str, config: Config, topics: TopicsFile) -> dict[str, ActualTopic]:
    """Check the cluster's topics in a loop of its own (the worker's loop stays untouched);
    what the cluster reported of them."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(
            verify_topics(topics, role, config.kafka.bootstrap_servers, **config.kafka.aiokafka_kwargs())
        )
    finally:
        loop.close()


if __name__ == "__main__":
    chosen = sys.argv[1] if len(sys.argv) > 1 else "all"
    if chosen not in ROLES:
        print(f"usage: python -m cioproc.app.worker [{'|'.join(ROLES)}]", file=sys.stderr)
        sys.exit(2)
    from cioproc.cli import main as cli_main

    sys.exit(cli_main(["worker", "--role", chosen]))
