"""`cioproc generate` and `cioproc produce`: synthetic data as JSON lines, and JSON lines into Kafka.

    cioproc generate --users 10000 --events 100000 --seed 1 > data.jsonl
    cioproc produce data.jsonl            # or: cioproc generate ... | cioproc produce -
    cioproc generate --produce            # straight to the input topics

The line format is described in :mod:`cioproc.generate.jsonlines`.

`produce` skips a line that is not a message, names it on stderr (``line 12: ...``),
carries on, and exits 1 at the end if any line was skipped: one bad line in a large file
does not waste the rest. Exit codes: 0 everything sent; 1 bad lines skipped, or Kafka
failed (the message says how many were acknowledged before); 2 a usage, configuration or
topics-file problem (nothing sent).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from cioproc.config import ConfigError, load_config
from cioproc.generate.jsonlines import LineError, decode_line, encode_line
from cioproc.generate.model import Record, Summary
from cioproc.generate.produce import COMPRESSIONS, ProduceError, produce_records
from cioproc.generate.synthetic import generate
from cioproc.kafka.failures import watch_connections
from cioproc.kafka.topics import TopicsFileError, load_topics

MAX_REPORTED_ERRORS = 20
COMPRESSION_HELP = "Kafka compression (default auto: lz4 or zstd if installed, else none)"
WRITE_CHUNK = 2000  # lines per write() call


# ---------------------------------------------------------------- generate


def generate_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="cioproc generate",
        description="Write synthetic mParticle event batches and audience membership changes as JSON lines "
        '({"topic": "batches"|"audiences", "key": "<mpid>", "value": {...}}), reproducible by seed.',
    )
    parser.add_argument("--users", type=_positive, default=10_000, help="number of users (default 10000)")
    parser.add_argument("--events", type=_non_negative, default=100_000, help="exact number of events (default 100000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--erasures", type=_non_negative, default=0,
                        help="also this many data subject erasure requests of generated users, last (default 0)")
    parser.add_argument(
        "--now-ms", type=int, default=None, help="reference time in Unix ms; events fall in the 48 hours before it "
        "(default: the current time; set it for byte-identical output)"
    )  # fmt: skip
    parser.add_argument(
        "--push-share", type=_share, default=0.0, metavar="SHARE",
        help="share of iOS and Android devices that register for push (push_registration events, "
        "device_info.push_token); default 0: none"
    )  # fmt: skip
    parser.add_argument("--output", "-o", default="-", help="output file, - for stdout (default -)")
    parser.add_argument("--summary", metavar="FILE", help="also write the summary of what was generated as JSON")
    parser.add_argument("--produce", action="store_true", help="send to the input topics instead of writing lines")
    parser.add_argument(
        "--bootstrap", help="with --produce: Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)"
    )
    parser.add_argument(
        "--topics-file", help="with --produce: topics file (default $CIOPROC_TOPICS_FILE or ./topics.yaml)"
    )
    parser.add_argument("--compression", choices=COMPRESSIONS, default="auto", help=COMPRESSION_HELP)
    parser.add_argument("--quiet", "-q", action="store_true", help="no summary or progress on stderr")
    args = parser.parse_args(argv)

    now_ms = args.now_ms if args.now_ms is not None else int(time.time() * 1000)
    summary = Summary()
    records = generate(args.users, args.events, args.seed, now_ms=now_ms, summary=summary,
                       push_share=args.push_share, erasures=args.erasures)
    started = time.monotonic()
    if args.produce:
        status = _produce_to_kafka(records, args, Counter())
        if status:
            return status
    else:
        try:
            with _open_output(args.output) as out:
                _write_lines(records, out)
        except BrokenPipeError:  # `| head`: the reader has what it wanted
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the flush at exit does not fail again
            return 0
        except OSError as exc:
            print(f"generate: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return 2
    elapsed = time.monotonic() - started
    if args.summary:
        Path(args.summary).write_bytes(orjson.dumps(summary.as_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    if not args.quiet:
        print(describe(summary, args.seed, elapsed), file=sys.stderr)
    return 0


def describe(summary: Summary, seed: int, elapsed_s: float) -> str:
    """A few human lines about a generation."""
    ids = summary.users_by_identity
    messages = summary.batches + summary.audience_messages
    return "\n".join(
        [
            f"generated {summary.events:,} events in {summary.batches:,} batches for {summary.users:,} users, "
            f"and {summary.audience_messages:,} audience messages (seed {seed}) in {elapsed_s:.1f} s "
            f"({messages / max(elapsed_s, 1e-9):,.0f} messages/s)",
            "  users: "
            + ", ".join(f"{n:,} {kind.replace('_', ' ')}" for kind, n in sorted(ids.items(), key=lambda kv: -kv[1])),
            f"  {summary.opted_out_users:,} opt out ({summary.opted_back_in_users:,} opt back in); "
            f"{summary.multi_device_users:,} use several device types; "
            f"{summary.forwardable_events_by_type['custom_event']:,} custom events and "
            f"{summary.forwardable_events_by_type['screen_view']:,} screen views of identified users",
        ]
    )


def _write_lines(records: Iterator[Record], out: IO[bytes]) -> None:
    chunk: list[bytes] = []
    for record in records:
        chunk.append(encode_line(record))
        if len(chunk) >= WRITE_CHUNK:
            out.write(b"".join(chunk))
            chunk.clear()
    out.write(b"".join(chunk))
    out.flush()


class _open_output:
    """stdout's binary buffer for "-", else the file (closed on exit)."""

    def __init__(self, target: str):
        self.target = target
        self.file: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        if self.target == "-":
            return sys.stdout.buffer
        self.file = open(self.target, "wb")
        return self.file

    def __exit__(self, *exc: Any) -> None:
        if self.file is not None:
            self.file.close()


# ---------------------------------------------------------------- produce


def produce_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="cioproc produce",
        description="Send JSON lines to the input topics named in topics.yaml: "
        '{"topic": "batches"|"audiences", "key": "<mpid>", "value": {...}} as `cioproc generate` writes them, '
        "or bare mParticle batches (topic batches, keyed by mpid) and bare audience messages. Bad lines are "
        "reported with their line number and skipped; the exit code is then 1.",
    )
    parser.add_argument("file", metavar="FILE", help="JSON lines file, - for stdin")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--topics-file", help="topics file (default $CIOPROC_TOPICS_FILE or ./topics.yaml)")
    parser.add_argument("--compression", choices=COMPRESSIONS, default="auto", help=COMPRESSION_HELP)
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress or summary on stderr")
    args = parser.parse_args(argv)

    try:
        source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    except OSError as exc:
        print(f"produce: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    bad: Counter[str] = Counter()
    by_role: Counter[str] = Counter()
    with source:
        status = _produce_to_kafka(_read_lines(source, bad), args, by_role)
    if bad["lines"]:
        print(f"produce: skipped {bad['lines']:,} bad line(s)", file=sys.stderr)
        return status or 1
    return status


def _read_lines(source: IO[bytes], bad: Counter[str]) -> Iterator[Record]:
    for number, line in enumerate(source, 1):
        try:
            record = decode_line(line)
        except LineError as exc:
            bad["lines"] += 1
            if bad["lines"] <= MAX_REPORTED_ERRORS:
                print(f"produce: line {number}: {exc}", file=sys.stderr)
            elif bad["lines"] == MAX_REPORTED_ERRORS + 1:
                print("produce: more bad lines; only the total is reported from here", file=sys.stderr)
            continue
        if record is not None:
            yield record


def _produce_to_kafka(records: Iterator[Record], args: argparse.Namespace, by_role: Counter[str]) -> int:
    """Send records with the configured Kafka settings; 0, 1 (Kafka failed) or 2 (configuration)."""
    try:
        config = load_config()
        topics = load_topics(args.topics_file or config.topics_file)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"config error: {line}", file=sys.stderr)
        return 2
    except TopicsFileError as exc:
        print(f"produce: {exc}", file=sys.stderr)
        return 2
    bootstrap = args.bootstrap or config.kafka.bootstrap_servers
    quiet = args.quiet
    progress = _Progress(quiet)

    def counted() -> Iterator[Record]:
        for record in records:
            by_role[record.topic_role] += 1
            yield record

    # Every failure ends in one ProduceError line; aiokafka's own retry and connection
    # log lines would only repeat it.
    kafka_logger = logging.getLogger("aiokafka")
    level = kafka_logger.level
    kafka_logger.setLevel(logging.CRITICAL)
    started = time.monotonic()
    try:
        with watch_connections() as failures:
            acked = asyncio.run(
                produce_records(
                    counted(),
                    bootstrap,
                    topics,
                    compression=args.compression,
                    progress=progress.update,
                    **config.kafka.aiokafka_kwargs(),
                )
            )
    except ProduceError as exc:
        progress.done()
        reason = failures.describe(exc, bootstrap) if failures.last else str(exc)
        print(f"produce: {reason} ({progress.acked:,} message(s) acknowledged before)", file=sys.stderr)
        return 1
    finally:
        kafka_logger.setLevel(level)
    progress.done()
    if not quiet:
        elapsed = time.monotonic() - started
        parts = ", ".join(
            f"{by_role[role]:,} to {topics.by_role(role).name}" for role in ("batches", "audiences") if by_role[role]
        )
        print(
            f"produced {acked:,} messages ({parts or 'none'}) to {bootstrap} in {elapsed:.1f} s "
            f"({acked / max(elapsed, 1e-9):,.0f} messages/s)",
            file=sys.stderr,
        )
    return 0


class _Progress:
    """Acknowledged-message count on stderr: redrawn in place on a terminal, a line every 10 s otherwise."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.started = self.last = time.monotonic()
        self.acked = 0
        self.drawn = False

    def update(self, acked: int) -> None:
        self.acked = acked
        if self.quiet:
            return
        now = time.monotonic()
        if now - self.last < (0.25 if self.tty else 10.0):
            return
        self.last = now
        rate = acked / max(now - self.started, 1e-9)
        text = f"produce: {acked:,} messages acknowledged ({rate:,.0f}/s)"
        if self.tty:
            sys.stderr.write("\r" + text)
            self.drawn = True
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1")
    return value


def _positive(text: str) -> int:
    return _integer(text, 1)


def _non_negative(text: str) -> int:
    return _integer(text, 0)


def _integer(text: str, minimum: int) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value
