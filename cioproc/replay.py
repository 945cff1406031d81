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
      resubscribes anyone. Merge of two people already merged is a no-op.
    * A replay cannot undo anything: cioproc never deletes, suppresses or resubscribes a
      person, and a replay only re-sends what the input says.
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
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from cioproc import names
from cioproc.config import ConfigError, load_config
from cioproc.errors import KafkaFailure
from cioproc.kafka.failures import watch_connections
from cioproc.kafka.topics import TopicsFile, TopicsFileError, load_topics
from cioproc.models.commands import RECORD_FORMAT_HEADER, record_format

REDRIVEN_HEADER = names.REDRIVEN  # value: "<dead-letter topic>:<partition>:<offset>"
SOURCE_TOPIC_HEADER = names.SOURCE_TOPIC  # set on both kinds of dead letters
INACTIVE_STATES = ("Empty", "Dead", "")
ASSIGNMENT_TIMEOUT_S = 30.0
REPLAYABLE = {"batches": "re-process the input batches", "audiences": "re-process the audience changes",
              "commands": "re-deliver the commands"}


class ReplayError(KafkaFailure, RuntimeError):
    """A replay that must not or cannot run; the message says why."""


class ForwardMoveRefused(ReplayError):
    """The plan would move offsets forward (skip unprocessed records) and that was not allowed."""

    def __init__(self, plan: ResetResult):
        forward = plan.forward()
        others = {p: o for p, o in sorted(plan.after.items()) if p not in forward}
        offsets = ",".join(f"{p}:{o}" for p, o in others.items())
        hint = f"; to replay only the other partitions: --from-offsets {offsets}" if others else ""
        super().__init__(
            f"refusing to move group '{plan.group}' forward on {plan.topic} partition(s) "
            f"{', '.join(str(p) for p in sorted(forward))}: {plan.skipped()} record(s) it never processed would be "
            f"skipped (the group is behind the start point there, so a replay is not needed for them); "
            f"pass --allow-forward to skip them on purpose{hint}"
        )
        self.plan = plan


# ---- pure decisions ---------------------------------------------------------------------


def parse_time(text: str) -> int:
    """An ISO-8601 time (UTC if no zone) or Unix milliseconds, as Unix milliseconds."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time or Unix milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_offsets(text: str) -> dict[int, int]:
    """``0:120,1:98`` -> {0: 120, 1: 98}."""
    offsets: dict[int, int] = {}
    for part in text.split(","):
        partition, sep, offset = part.strip().partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise argparse.ArgumentTypeError(f"{part!r} is not PARTITION:OFFSET")
        if int(partition) in offsets:
            raise argparse.ArgumentTypeError(f"partition {partition} is given twice")
        offsets[int(partition)] = int(offset)
    return offsets


def consumer_group(role: str, app_id: str) -> str:
    """The consumer group of a worker role (see :func:`cioproc.names.group_id`)."""
    return names.group_id(role, app_id)


def choose_commands_group(app_id: str, has_offsets: Mapping[str, bool]) -> str:
    """The group whose commands-topic offsets a replay moves (see the module docstring).

    ``has_offsets`` says, per candidate group, whether it has committed offsets on the
    commands topic.
    """
    sender, combined = consumer_group("sender", app_id), consumer_group("all", app_id)
    if has_offsets.get(sender) and has_offsets.get(combined):
        raise ReplayError(
            f"both consumer groups '{sender}' (role sender) and '{combined}' (role all) have committed offsets "
            f"on the commands topic: pass --group with the one your senders run in"
        )
    return sender if has_offsets.get(sender) else combined


def start_offsets(
    beginning: Mapping[int, int],
    end: Mapping[int, int],
    *,
    from_beginning: bool = False,
    by_time: Mapping[int, int | None] | None = None,
    from_offsets: Mapping[int, int] | None = None,
) -> dict[int, int]:
    """The offset per partition a replay restarts from (partitions left out keep theirs).

    ``by_time``: the first offset at or after the start time per partition (None: no record
    that late, so nothing of that partition is replayed). ``from_offsets`` are clamped into
    the partition's retained range.
    """
    if from_beginning:
        return dict(beginning)
    if by_time is not None:
        return {p: end[p] if (at := by_time.get(p)) is None else at for p in end}
    wanted = from_offsets or {}
    unknown = sorted(set(wanted) - set(end))
    if unknown:
        raise ReplayError(f"the topic has no partition {unknown[0]} (partitions: 0-{max(end, default=-1)})")
    return {p: min(max(offset, beginning[p]), end[p]) for p, offset in wanted.items()}


def resume_offset(before: int | None, beginning: int) -> int:
    """Where the workers of a group resume on a partition: its commit, else the first retained offset
    (they reset to the earliest; a commit older than what is retained resumes there too)."""
    return beginning if before is None else max(before, beginning)


def forward_moves(
    before: Mapping[int, int | None], beginning: Mapping[int, int], targets: Mapping[int, int]
) -> dict[int, tuple[int, int]]:
    """Partitions whose target lies past where the group would resume: {partition: (resume, target)}."""
    moves = {}
    for p, target in targets.items():
        resume = resume_offset(before.get(p), beginning.get(p, 0))
        if target > resume:
            moves[p] = (resume, target)
    return moves


def redrive_target(headers: Iterable[tuple[str, bytes]], allowed: Iterable[str], default: str) -> str:
    """Where a dead letter goes back to: its source topic when that is one of ``allowed``, else ``default``."""
    names = set(allowed)
    for key, value in headers:
        if key == SOURCE_TOPIC_HEADER and value is not None:
            source = value.decode("utf-8", "replace")
            if source in names:
                return source
    return default


# ---- Kafka ------------------------------------------------------------------------------


@dataclass
class GroupState:
    state: str
    members: int

    @property
    def active(self) -> bool:
        return self.state not in INACTIVE_STATES


async def group_state(bootstrap: str, group: str, **client: Any) -> GroupState:
    """The consumer group's state and member count as the broker reports them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    for response in described:
        for entry in response.groups:
            # (error_code, group_id, state, protocol_type, protocol, members[, authorized ops])
            if entry[1] == group:
                return GroupState(entry[2], len(entry[5]))
    return GroupState("Dead", 0)


async def topic_partitions(bootstrap: str, topic: str, **client: Any) -> list[int]:
    """The topic's partition numbers; ReplayError when it does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            raise ReplayError(f"topic '{topic}' does not exist: check the topics file (or run `cioproc topics apply`)")
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for t in described if t["topic"] == topic for p in t["partitions"])


async def committed_offsets(bootstrap: str, group: str, topic: str, **client: Any) -> dict[int, int]:
    """The group's committed offsets on ``topic`` (partitions without one left out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


async def resolve_commands_group(bootstrap: str, topic: str, app_id: str, **client: Any) -> str:
    candidates = (consumer_group("sender", app_id), consumer_group("all", app_id))
    has = {g: bool(await committed_offsets(bootstrap, g, topic, **client)) for g in candidates}
    return choose_commands_group(app_id, has)


@dataclass
class ResetResult:
    """The plan of an offset reset, and whether it was executed."""

    group: str
    topic: str
    before: dict[int, int | None]  # committed offset per partition before (None: none)
    after: dict[int, int]  # the offsets to set
    end: dict[int, int]
    beginning: dict[int, int] = field(default_factory=dict)
    executed: bool = False

    def forward(self) -> dict[int, tuple[int, int]]:
        return forward_moves(self.before, self.beginning, self.after)

    def skipped(self) -> int:
        """Records never processed that the plan skips (forward moves)."""
        return sum(target - resume for resume, target in self.forward().values())

    def to_reprocess(self) -> int:
        return sum(self.end[p] - offset for p, offset in self.after.items())


async def reset_offsets(
    topic: str,
    group: str,
    bootstrap: str,
    *,
    from_time: int | None = None,
    from_offsets: dict[int, int] | None = None,
    from_beginning: bool = False,
    execute: bool = False,
    allow_forward: bool = False,
    **client: Any,
) -> ResetResult:
    """The plan to move the group's offsets on ``topic`` back to the start point, committed only if ``execute``.

    ReplayError while the group is active; ForwardMoveRefused (nothing committed) when the plan
    moves a partition forward and ``allow_forward`` is false.
    """
    state = await group_state(bootstrap, group, **client)
    if state.active:
        raise ReplayError(
            f"consumer group '{group}' is active ({state.state}, {state.members} member(s)): stop the workers "
            f"of this group first; a running worker would overwrite the replayed offsets with its next commit "
            f"(a killed worker stays a member until its session times out)"
        )
    partitions = await topic_partitions(bootstrap, topic, **client)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, **client)
    await consumer.start()
    try:
        tps = {p: TopicPartition(topic, p) for p in partitions}
        consumer.assign(list(tps.values()))
        beginning = {tp.partition: o for tp, o in (await consumer.beginning_offsets(list(tps.values()))).items()}
        end = {tp.partition: o for tp, o in (await consumer.end_offsets(list(tps.values()))).items()}
        by_time = None
        if from_time is not None:
            found = await consumer.offsets_for_times({tp: from_time for tp in tps.values()})
            by_time = {tp.partition: (meta.offset if meta is not None else None) for tp, meta in found.items()}
        targets = start_offsets(beginning, end, from_beginning=from_beginning, by_time=by_time,
                                from_offsets=from_offsets)
        before = {p: await consumer.committed(tps[p]) for p in tps}
        plan = ResetResult(group, topic, before, targets, end, beginning)
        if plan.forward() and not allow_forward:
            raise ForwardMoveRefused(plan)
        if execute and targets:
            if (await group_state(bootstrap, group, **client)).active:  # a worker joined meanwhile
                raise ReplayError(f"consumer group '{group}' became active: nothing was changed, stop its workers")
            await consumer.commit({tps[p]: offset for p, offset in targets.items()})
            plan.executed = True
        return plan
    finally:
        await consumer.stop()


@dataclass
class RedriveResult:
    redriven: int = 0
    by_target: dict[str, int] = field(default_factory=dict)


class _Bounds(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka's class is untyped (Any) to mypy
    """On assignment: seek to the start time (if any) and note where each partition ends."""

    def __init__(self, consumer: AIOKafkaConsumer, from_time: int | None):
        self.consumer = consumer
        self.from_time = from_time
        self.end: dict[TopicPartition, int] = {}

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        assigned = list(assigned)
        if not assigned:
            return
        ends = await self.consumer.end_offsets(assigned)
        for tp in assigned:
            self.end.setdefault(tp, ends[tp])  # fixed at the first assignment: later records are not re-driven
        if self.from_time is not None:
            found = await self.consumer.offsets_for_times({tp: self.from_time for tp in assigned})
            for tp in assigned:
                self.consumer.seek(tp, found[tp].offset if found.get(tp) is not None else self.end[tp])


async def redrive_dlq(
    dlq_topic: str,
    targets: Iterable[str],
    default_target: str,
    group: str,
    bootstrap: str,
    *,
    from_time: int | None = None,
    to_time: int | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **client: Any,
) -> RedriveResult:
    """Send dead-lettered records (key and value as dead-lettered) back to their source topic;
    ``progress(re-driven, re-driven + still to read)`` after each chunk."""
    allowed = tuple(targets)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
        **client,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **client)
    bounds = _Bounds(consumer, from_time)
    result = RedriveResult()
    await consumer.start()
    await producer.start()
    try:
        consumer.subscribe([dlq_topic], listener=bounds)
        deadline = time.monotonic() + ASSIGNMENT_TIMEOUT_S
        stopped: set[TopicPartition] = set()  # reached --to-time
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            sends, positions = [], {}
            for tp, records in batch.items():
                for record in records:
                    if tp in stopped or record.offset >= bounds.end.get(tp, 1 << 62):
                        break
                    if to_time is not None and record.timestamp >= to_time:
                        stopped.add(tp)
                        consumer.pause(tp)
                        break
                    if limit is not None and result.redriven >= limit:
                        break
                    target = redrive_target(record.headers, allowed, default_target)
                    if not dry_run:
                        marker = f"{record.topic}:{record.partition}:{record.offset}".encode()
                        headers = [(REDRIVEN_HEADER, marker)]
                        whole = record_format(record.headers)
                        if whole is not None:  # a multi-command record dead-lettered whole: read it the same way
                            headers.append((RECORD_FORMAT_HEADER, whole))
                        sends.append(await producer.send(target, record.value, key=record.key, headers=headers))
                    result.redriven += 1
                    result.by_target[target] = result.by_target.get(target, 0) + 1
                    positions[tp] = record.offset + 1
            if sends:
                await asyncio.gather(*sends)  # acknowledged before the dead-letter offsets move on
            if positions and not dry_run:
                await consumer.commit(positions)
            assigned = consumer.assignment()
            if progress is not None and assigned:
                ahead = sum([max(0, bounds.end.get(tp, 0) - await consumer.position(tp)) for tp in assigned])
                progress(result.redriven, result.redriven + ahead)
            if not assigned:
                if time.monotonic() > deadline:
                    raise ReplayError(f"no partition of '{dlq_topic}' was assigned to group '{group}' "
                                      f"within {ASSIGNMENT_TIMEOUT_S:.0f}s (another re-drive running?)")
                continue
            if limit is not None and result.redriven >= limit:
                break
            if await _caught_up(consumer, assigned, bounds.end, stopped):
                break
        return result
    finally:
        await producer.stop()
        await consumer.stop()


async def _caught_up(consumer: AIOKafkaConsumer, assigned: Iterable[TopicPartition],
                     end: Mapping[TopicPartition, int], stopped: set[TopicPartition]) -> bool:
    for tp in assigned:
        if tp in stopped:
            continue
        if tp not in end or await consumer.position(tp) < end[tp]:
            return False
    return True


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
        except ForwardMoveRefused as exc:
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
    result = asyncio.run(
        reset_offsets(topic, group, bootstrap, from_time=args.from_time, from_offsets=args.from_offsets,
                      from_beginning=args.from_beginning, execute=args.execute, allow_forward=args.allow_forward,
                      **client)
    )
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
