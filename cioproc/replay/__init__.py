"""`cioproc replay`: recover by re-running a topic, or re-drive a dead-letter topic.

Two operations, with different safety rules:

``replay batches|audiences|commands --from-time T | --from-offsets P:O,... | --from-beginning [--execute]``
    Moves the committed offsets of the consuming group on that topic back to the start
    point (``batches`` and ``audiences``: the processor's group, the app id; ``commands``:
    the sender's, see below). Nothing is read or written by the command itself: the workers,
    when started, re-process everything from there to the end of the topic, in order.

    Like Kafka's own ``kafka-consumer-groups --reset-offsets``, it shows the plan (each
    partition's offset before and after) and changes nothing unless ``--execute`` is given
    (``--dry-run``, the default, says so explicitly).

    It never moves an offset forward, past where the group would resume (its committed
    offset, or the first retained offset where it has none: the workers start at the
    earliest): that would skip records the group never processed, for example a lagging
    group at 1000 sent to 1200. Such a plan is refused (exit 1, nothing changed) unless
    ``--allow-forward`` is given.

    ``replay commands`` first reads the records the group would read again (from the start
    point to where it would resume) and counts the merge and erase (delete, suppress)
    commands among them: those act again in Customer.io (a merge takes away a secondary
    person created since; an erase deletes a person who came back). The plan shows the
    count, and ``--execute`` is refused (exit 1, nothing changed) unless
    ``--allow-irreversible`` is given. Replaying ``batches`` never merges or erases again.

    It refuses (exit 1) while the group has active members: a running worker would
    overwrite the moved offsets with its next commit. Stop the workers of that group first
    (a SIGKILLed worker stays a member until its session times out, 10 s for cioproc's
    workers; a SIGTERMed one leaves at once).
    The app id is ``CIOPROC_APP_ID``, read as the workers read it (environment, ``.env``).

    A replay always runs to the end of the topic. It has no end time on purpose: stopping
    part-way would leave the user table and Customer.io at the state of that time while the
    topic holds newer input, and the next records would be mapped against the wrong state.

    The commands topic's group: ``<app id>`` for workers of role ``all`` and
    ``<app id>-sender`` for workers of role ``sender``. Without ``--group``, ``replay
    commands`` uses whichever of the two has committed offsets on the commands topic (the
    one that has been delivering), ``<app id>`` when neither has, and refuses when both
    have (a deployment that changed roles: pass ``--group``).

``replay dlq --source batches|commands [--from-time T] [--to-time T] [--limit N]``
    Re-drives dead-lettered records after their cause is fixed: the original key and value
    bytes go back to their original topic (a batches dead letter to the input topic named
    in its ``cioproc.source.topic`` header, batches or audiences; a command to the commands
    topic) with a ``cioproc.redriven`` header naming the dead letter. It reads the
    dead-letter topic as a member of its own consumer group (``<app id>-dlq-redrive``), from
    that group's committed offsets (the start of the topic the first time, ``--from-time``
    to choose), up to the end the topic had when it started (``--to-time`` stops earlier),
    and commits after each produced and acknowledged chunk: each dead letter is re-driven
    once, and an interrupted re-drive continues where it stopped. It is safe while workers
    run: re-driven records are new input for them, like any other.

Effect on Customer.io
    * Track and screen events carry ids derived from the input (the batch's
      ``source_message_id``/``event_id`` or the event's place), so a replayed event has the
      id it had the first time and Customer.io records it once (the sandbox does the same).
    * An identify sets the attributes it carries: replaying the input re-sends the
      identifies in their original order, so each person passes through older attribute
      values and ends at those of their latest batch, as before the replay. The workspace's
      final state is unchanged; people's attribute histories (``updated_at``, activity
      logs, campaigns triggered by attribute changes) may see the intermediate values again.
    * Unsubscribe is an identify with ``unsubscribed: true``: a replay repeats it and never
      resubscribes anyone.
    * A replay cannot undo anything, and replayed input merges and erases no one again
      (identities carry the time they were set); a commands replay re-delivers the merges
      and erasures of its range only with ``--allow-irreversible``.
    * A re-driven command is delivered after whatever the sender delivered since it was
      refused. For events that changes nothing but their arrival; a re-driven identify sets
      the values it carries, which are older than any identify of the same person delivered
      in between (re-process the input instead when that matters: ``replay batches``).
    * Replaying ``commands`` re-sends what the processor produced; replaying ``batches``
      maps the input again against the current user table (the table is not rewound):
      attributes are compared with what the table says was last sent, so an identify is
      re-sent where the replayed batch differs from that, events are always re-sent
      (and deduplicated by id).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from aiokafka.errors import KafkaError

from cioproc.config import ConfigError, load_config
from cioproc.kafka.failures import watch_connections
from cioproc.kafka.topics import TopicsFile, TopicsFileError, load_topics
from cioproc.replay.offsets import (
    GroupState,
    ResetResult,
    committed_offsets,
    group_state,
    reset_offsets,
    resolve_commands_group,
    topic_partitions,
)
from cioproc.replay.plan import (
    ASSIGNMENT_TIMEOUT_S,
    INACTIVE_STATES,
    REDRIVEN_HEADER,
    REPLAYABLE,
    SOURCE_TOPIC_HEADER,
    ForwardMoveRefused,
    IrreversibleReplayRefused,
    ReplayError,
    choose_commands_group,
    consumer_group,
    describe_irreversible,
    forward_moves,
    parse_offsets,
    parse_time,
    redrive_target,
    resume_offset,
    start_offsets,
)
from cioproc.replay.redrive import RedriveResult, redrive_dlq

__all__ = [
    "ASSIGNMENT_TIMEOUT_S", "INACTIVE_STATES", "REDRIVEN_HEADER", "REPLAYABLE", "SOURCE_TOPIC_HEADER",
    "ForwardMoveRefused", "GroupState", "IrreversibleReplayRefused", "RedriveResult", "ReplayError", "ResetResult",
    "build_parser",
    "choose_commands_group", "committed_offsets", "consumer_group", "forward_moves", "group_state", "main",
    "parse_offsets", "parse_time", "redrive_dlq", "redrive_sources", "redrive_target", "reset_offsets",
    "resolve_commands_group", "resume_offset", "start_offsets", "topic_partitions",
]


# ---- CLI --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cioproc replay", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    for name, text in REPLAYABLE.items():
        q = sub.add_parser(name, help=f"{text} from a point to the end of the topic")
        start = q.add_mutually_exclusive_group(required=True)
        start.add_argument("--from-time", type=parse_time, help="ISO-8601 time or Unix ms")
        start.add_argument("--from-offsets", type=parse_offsets, help="PARTITION:OFFSET[,...]")
        start.add_argument("--from-beginning", action="store_true")
        q.add_argument("--group", help="consumer group (default: the workers', see `cioproc replay --help`)")
        mode = q.add_mutually_exclusive_group()
        mode.add_argument("--execute", action="store_true", help="set the offsets (without it: only show the plan)")
        mode.add_argument("--dry-run", action="store_true", help="only show the plan (the default)")
        q.add_argument("--allow-forward", action="store_true",
                       help="allow moving a partition past where the group would resume, skipping its records")
        if name == "commands":
            q.add_argument("--allow-irreversible", action="store_true",
                           help="allow re-delivering merge and erase commands (they act again in Customer.io)")
    q = sub.add_parser("dlq", help="re-drive dead-lettered records to their original topic")
    q.add_argument("--source", choices=("batches", "commands"), required=True)
    q.add_argument("--from-time", type=parse_time, help="start at the dead letters of this time (default: where "
                                                        "the last re-drive stopped)")
    q.add_argument("--to-time", type=parse_time, help="stop before the dead letters of this time")
    q.add_argument("--limit", type=int, default=None, help="stop after this many records")
    q.add_argument("--group", help="consumer group (default: <app id>-dlq-redrive)")
    q.add_argument("--dry-run", action="store_true", help="count what would be re-driven, commit nothing")
    for q in sub.choices.values():
        q.add_argument("--bootstrap", help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)")
        q.add_argument("--topics-file", help="topics file (default $CIOPROC_TOPICS_FILE)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # failures are reported below, one line
    try:
        config = load_config()
        topics = load_topics(args.topics_file or config.topics_file)
    except (ConfigError, TopicsFileError) as exc:
        for line in getattr(exc, "problems", [str(exc)]):
            print(f"error: {line}", file=sys.stderr)
        return 2
    bootstrap = args.bootstrap or config.kafka.bootstrap_servers
    client = config.kafka.aiokafka_kwargs()
    with watch_connections() as failures:
        try:
            if args.what == "dlq":
                return _redrive(args, topics, bootstrap, client, config.app_id)
            return _reset(args, topics, bootstrap, client, config.app_id)
        except (ForwardMoveRefused, IrreversibleReplayRefused) as exc:
            _print_plan(exc.plan, args.what)
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KafkaError as exc:  # (a ReplayError goes to the command line, which prints it)
            reason = (
                failures.describe(exc, bootstrap) if failures.last
                else f"Kafka at {bootstrap}: {type(exc).__name__}: {exc}"
            )
            print(f"error: {reason}", file=sys.stderr)
            return 1


def _reset(args: argparse.Namespace, topics: TopicsFile, bootstrap: str, client: dict[str, Any], app_id: str) -> int:
    topic = topics.by_role(args.what).name
    group = args.group
    if group is None:
        if args.what == "commands":
            group = asyncio.run(resolve_commands_group(bootstrap, topic, app_id, **client))
        else:
            group = consumer_group("processor", app_id)
    from cioproc.ops.progress import Progress

    commands = args.what == "commands"
    bar = Progress("scanning the re-delivered commands for merges and erasures")
    try:
        result = asyncio.run(
            reset_offsets(topic, group, bootstrap, from_time=args.from_time, from_offsets=args.from_offsets,
                          from_beginning=args.from_beginning, execute=args.execute, allow_forward=args.allow_forward,
                          check_irreversible=commands, allow_irreversible=commands and args.allow_irreversible,
                          progress=bar.update, **client)
        )
    finally:
        if bar.tty:
            bar.finish()
    _print_plan(result, args.what)
    return 0


def _print_plan(plan: ResetResult, what: str) -> None:
    """Each partition's offset before and after, what that re-runs or skips, and whether it was applied."""
    verb = "set" if plan.executed else "would set"
    forward = plan.forward()
    for partition, offset in sorted(plan.after.items()):
        before = plan.before.get(partition)
        shown = f"none (resumes at {plan.beginning.get(partition, 0)})" if before is None else before
        if partition in forward:
            resume, target = forward[partition]
            effect = f"skips {target - resume} record(s) never processed"
        else:
            effect = f"runs {plan.end[partition] - offset} record(s) again or for the first time"
        print(f"{verb} {plan.topic}[{partition}] offset of group '{plan.group}': {shown} -> {offset} "
              f"(end {plan.end[partition]}; {effect})")
    print(f"{plan.to_reprocess()} record(s) to {'re-deliver' if what == 'commands' else 're-process'}"
          + ("; start the workers to run them to the end of the topic" if plan.executed
             else "; dry run: nothing changed, add --execute to set these offsets"))
    if plan.irreversible:
        print(f"the replayed range re-delivers {describe_irreversible(plan.irreversible)}, which act again in "
              f"Customer.io" + ("" if plan.executed else "; --execute needs --allow-irreversible for them"))


def redrive_sources(topics: TopicsFile, source: str) -> tuple[str, ...]:
    """The topics a dead letter of ``source`` ("batches" or "commands") may go back to; the first is the default."""
    if source == "batches":  # the batches DLQ takes the processor's dead letters of all its inputs
        return tuple(topics.by_role(role).name for role in ("batches", "audiences", "erasures"))
    return (topics.by_role("commands").name,)


def _redrive(args: argparse.Namespace, topics: TopicsFile, bootstrap: str, client: dict[str, Any], app_id: str) -> int:
    if args.limit is not None and args.limit < 1:
        print("error: --limit must be at least 1", file=sys.stderr)
        return 2
    dlq = topics.by_role(f"{args.source}_dlq").name
    allowed = redrive_sources(topics, args.source)
    group = args.group or consumer_group("dlq-redrive", app_id)
    from cioproc.ops.progress import Progress

    bar = Progress("re-drive")
    result = asyncio.run(
        redrive_dlq(dlq, allowed, allowed[0], group, bootstrap, from_time=args.from_time, to_time=args.to_time,
                    limit=args.limit, dry_run=args.dry_run, progress=bar.update, **client)
    )
    bar.finish()
    verb = "would re-drive" if args.dry_run else "re-drove"
    where = ", ".join(f"{n} to {t}" for t, n in sorted(result.by_target.items())) or "nothing"
    print(f"{verb} {result.redriven} record(s) from {dlq}: {where}")
    return 0
