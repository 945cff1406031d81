"""`cioproc inspect commands|dlq`: records of the commands topic or a dead-letter topic, as JSON lines.

A command is printed as its fields (kind, mpid, identifier, timestamp, attributes, name,
event id, merge secondary), with where it is (partition, offset, its index in the record,
record time) and, from the ``cioproc.input.ts`` header, when its input was written: one line
per command, so a record holding several commands (``cioproc.format: commands/1``) prints
several lines. A dead letter of one command of such a record says its index there
(``source_index``); a record dead-lettered whole prints its commands as a list. A dead letter is printed with its
reason, source topic, partition and offset, the HTTP status Customer.io answered and the
error, and its value: the command's fields (commands dead-letter topic) or the input's JSON
(batches dead-letter topic; text when it is not JSON).

Where to read: ``--key MPID`` reads only the MPID's partition (the one Kafka's key
partitioner gives it) and prints only that MPID's records; ``--partition P`` one partition,
``--offset O`` from that offset in it; ``--from-time T`` from the first record at or after T;
by default from the beginning. It reads up to the end each partition had when it started, and
at most ``--limit`` records. Nothing is committed: no consumer group is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from cioproc.config import load_config
from cioproc.errors import CioprocError
from cioproc.kafka import client_id
from cioproc.kafka.topics import load_topics
from cioproc.models.commands import (
    INPUT_TIMESTAMP_HEADER,
    CommandDecodeError,
    decode_command,
    record_format,
    split_record,
)
from cioproc.names import (  # as cioproc.app.sender_agent writes them
    DETAIL,
    ERROR,
    HTTP_STATUS,
    REASON,
    SOURCE_INDEX,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
)
from cioproc.ops import describe_error, quiet_client_logs
from cioproc.ops.check import KAFKA_TIMEOUT_S


class InspectError(CioprocError):
    """A request that cannot be served; the message is one line."""


def _iso(ms: int | None) -> str | None:
    if ms is None or ms < 0:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def command_fields(value: bytes | None) -> dict[str, Any]:
    """A command record's value as its fields, or ``{"error": ...}`` when it is not a command (pure)."""
    try:
        command = decode_command(value or b"")
    except CommandDecodeError as exc:
        return {"error": f"undecodable command: {exc}"}
    return {
        "kind": command.kind.value,
        "mpid": command.mpid,
        "identifier": {command.id_type: command.id_value},
        "timestamp": command.timestamp,
        "attributes": command.attributes,
        "name": command.name,
        "event_id": command.event_id,
        "secondary": dict([command.secondary]) if command.secondary else None,
    }


def _headers(headers: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    return {key: value.decode("utf-8", "replace") for key, value in headers or () if value is not None}


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def describe_commands(partition: int, offset: int, timestamp: int, key: bytes | None, value: bytes | None,
                      headers: Iterable[tuple[str, bytes]] | None) -> list[dict[str, Any]]:
    """The JSON lines of a commands-topic record, one per command (pure)."""
    info = _headers(headers)
    where = {
        "partition": partition, "offset": offset, "index": 0, "record_time": _iso(timestamp),
        "input_time": _iso(_int(info.get(INPUT_TIMESTAMP_HEADER))),
    }
    try:
        parts = split_record(value, record_format(headers))
    except CommandDecodeError as exc:
        return [{**where, "error": f"undecodable command record: {exc}"}]
    return [{**where, "index": index, **command_fields(part)} for index, part in enumerate(parts)]


def _record_fields(value: bytes | None, headers: Iterable[tuple[str, bytes]] | None) -> Any:
    """A commands-topic value: one command's fields, or a list of them for a multi-command record."""
    whole = record_format(headers)
    if whole is None:
        return command_fields(value)
    try:
        return [command_fields(part) for part in split_record(value, whole)]
    except CommandDecodeError as exc:
        return {"error": f"undecodable command record: {exc}"}


def describe_dead_letter(partition: int, offset: int, timestamp: int, key: bytes | None, value: bytes | None,
                         headers: Iterable[tuple[str, bytes]] | None, commands: bool) -> dict[str, Any]:
    """One JSON line for a dead letter (pure): why, from where, Customer.io's answer, and the value."""
    info = _headers(headers)
    if commands:
        content: Any = _record_fields(value, headers)
    else:
        try:
            content = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            content = (value or b"").decode("utf-8", "replace")
    return {
        "partition": partition, "offset": offset, "record_time": _iso(timestamp),
        "key": key.decode("utf-8", "replace") if key is not None else None,
        "reason": info.get(REASON),
        "source_topic": info.get(SOURCE_TOPIC),
        "source_partition": _int(info.get(SOURCE_PARTITION)),
        "source_offset": _int(info.get(SOURCE_OFFSET)),
        "source_index": _int(info.get(SOURCE_INDEX)),
        "http_status": _int(info.get(HTTP_STATUS)),
        "error": info.get(ERROR) or info.get(DETAIL),
        "value": content,
    }


def parse_time_ms(text: str) -> int:
    """Unix milliseconds from digits, or from an ISO 8601 time (UTC when no zone is given)."""
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InspectError(f"--from-time {text!r} is neither Unix milliseconds nor an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


async def read(args: argparse.Namespace, bootstrap: str, topic: str, security: dict[str, Any]) -> list[dict[str, Any]]:
    """The records ``args`` select, described (see the module docstring)."""
    from cioproc.app.processor import key_partition

    commands = args.what == "commands" or args.source == "commands"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id("inspect"), group_id=None,
                                auto_offset_reset="earliest",  # only for an --offset before the log start
                                enable_auto_commit=False, request_timeout_ms=int(KAFKA_TIMEOUT_S * 1000), **security)
    try:
        await asyncio.wait_for(consumer.start(), KAFKA_TIMEOUT_S)
        found = consumer.partitions_for_topic(topic)
        if not found:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka's only way
            found = consumer.partitions_for_topic(topic)
        if not found:
            raise InspectError(f"topic '{topic}' does not exist (run `cioproc topics apply`)")
        numbers = sorted(found)
        key = args.key.encode() if args.key is not None else None
        if args.partition is not None:
            if args.partition not in numbers:
                raise InspectError(f"topic '{topic}' has no partition {args.partition} (it has {len(numbers)})")
            numbers = [args.partition]
        elif key is not None:
            numbers = [key_partition(key, len(numbers))]
        tps = [TopicPartition(topic, n) for n in numbers]
        end = await consumer.end_offsets(tps)
        if args.offset is not None:
            start = {tps[0]: args.offset}
        elif args.from_time is not None:
            found_at = await consumer.offsets_for_times({tp: parse_time_ms(args.from_time) for tp in tps})
            start = {tp: found_at[tp].offset if found_at.get(tp) is not None else end[tp] for tp in tps}
        else:
            start = await consumer.beginning_offsets(tps)
        # Assign and seek with no await in between: the fetcher cannot reset a position first.
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp])
        remaining = {tp for tp in tps if await consumer.position(tp) < end[tp]}
        out: list[dict[str, Any]] = []
        while remaining and len(out) < args.limit:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=500)
            for tp, records in batches.items():
                for r in records:
                    if r.offset >= end[tp]:
                        break
                    if key is not None and r.key != key:
                        continue
                    if args.what == "commands":
                        out.extend(describe_commands(r.partition, r.offset, r.timestamp, r.key, r.value, r.headers))
                        if len(out) >= args.limit:
                            return out[:args.limit]
                        continue
                    else:
                        out.append(describe_dead_letter(r.partition, r.offset, r.timestamp, r.key, r.value,
                                                        r.headers, commands))
                    if len(out) >= args.limit:
                        return out
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return out
    finally:
        await consumer.stop()


def main(args: argparse.Namespace) -> int:
    """Print the selected records as JSON lines; the exit status."""
    quiet_client_logs()
    if args.offset is not None and args.partition is None:
        print("error: --offset needs --partition", file=sys.stderr)
        return 2
    if args.limit < 1:
        print("error: --limit must be at least 1", file=sys.stderr)
        return 2
    config = load_config()  # a CioprocError goes to the command line, which prints it
    topics = load_topics(config.topics_file)
    role = "commands" if args.what == "commands" else f"{args.source}_dlq"
    spec = topics.by_role(role)
    try:
        lines = asyncio.run(read(args, config.kafka.bootstrap_servers, spec.name, config.kafka.aiokafka_kwargs()))
    except InspectError:
        raise  # the command line prints it (one line, exit 1)
    except Exception as exc:  # a broker that is down or refuses: one line
        detail = describe_error(exc)
        print(f"error: cannot read '{spec.name}' from Kafka at {config.kafka.bootstrap_servers}: {detail}",
              file=sys.stderr)
        return 1
    for record in lines:
        sys.stdout.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    return 0
