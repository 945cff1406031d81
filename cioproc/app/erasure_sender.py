"""The sender's part of a data subject erasure: an ``erase`` command in a partition's chunk.

The processor writes one ``erase`` command per erasure request, keyed by the MPID, so it
sits in the commands topic after every command produced for that user before it, and before
every command produced after it. In a chunk (one partition's part of a fetch) the sender

1. does not send the commands of that MPID that come before the erase in the chunk: they
   are acked with the chunk and counted (``cioproc_drops{reason="erased_before_delivery"}``),
   never delivered;
2. sends the erase in its place as one ``delete`` (or ``suppress``) per identifier
   (:func:`cioproc.mapping.erasure.erase_steps`), in the user's lane, so after the user's
   earlier commands of previous chunks (delivered before this chunk started) and before
   the user's later commands;
3. once the steps are settled, writes the request's result to ``erasure_results``
   (and counts the erase once in ``cioproc_commands_delivered{type="erase"}``):
   ``completed`` when Customer.io accepted every step, else ``failed`` with the reasons (and
   the erase record goes to the commands dead-letter topic, from where it can be replayed).
   Results and dead letters are acknowledged before the chunk is acked.

Several erases of one MPID in a chunk are all sent (each request gets its result).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faust.types import Message

from cioproc.mapping.erasure import erase_result, erase_steps
from cioproc.models.commands import Command, CommandKind, command_prefix, decode_command
from cioproc.observability import metrics
from cioproc.sender.payloads import encode_v2_entry

if TYPE_CHECKING:  # pragma: no cover
    from cioproc.app.sender_agent import Sender
    from cioproc.app.sender_chunk import DeadLetter, PreparedChunk

ERASE_PREFIX = command_prefix(CommandKind.ERASE)
SUPERSEDED = "erased_before_delivery"


@dataclass(slots=True)
class Erasure:
    """An erase command of a chunk and the positions of its steps in the chunk's outcomes."""

    message: Message
    command: Command
    steps: list[int]


def erasure_positions(records: Sequence[Message]) -> dict[int, Command]:
    """Positions of the erase commands in a chunk (a prefix test per record, then a decode)."""
    found: dict[int, Command] = {}
    for index, message in enumerate(records):
        value = message.value
        if value is not None and value.startswith(ERASE_PREFIX):
            try:
                command = decode_command(value)
            except Exception:  # CommandDecodeError, or anything else these bytes provoke
                continue  # the usual path dead-letters it
            found[index] = command
    return found


def superseded_positions(keys: Sequence[bytes | None], erasing: Sequence[int]) -> set[int]:
    """Positions of records (not erases) whose key is erased by an erase later in the chunk."""
    later = set(erasing)
    erased_after: set[bytes | None] = set()
    superseded: set[int] = set()
    for index in range(len(keys) - 1, -1, -1):
        if index in later:
            erased_after.add(keys[index])
        elif keys[index] is not None and keys[index] in erased_after:
            superseded.add(index)
    return superseded


def prepare_erasures(sender: Sender, chunk: PreparedChunk, erasing: dict[int, Command]) -> PreparedChunk:
    """Fill ``chunk`` like :meth:`Sender.add_records`, with the erases expanded in place and
    the records they supersede left out (acked with the chunk, not sent)."""
    records = chunk.records
    superseded = superseded_positions([message.key for message in records], list(erasing))
    if superseded:
        metrics.DROPS.labels(reason=SUPERSEDED).inc(len(superseded))
    v1 = sender.sender_config.transport != "v2"
    run: list[Message] = []
    for index, message in enumerate(records):
        command = erasing.get(index)
        if command is None:
            if index not in superseded:
                run.append(message)
            continue
        if run:
            sender.add_records(chunk, run)
            run = []
        try:
            steps = erase_steps(command)
            entries = [] if v1 else [encode_v2_entry(step) for step in steps]
        except Exception as exc:  # CommandDecodeError, PayloadError, or anything else: never raised
            chunk.dead.append((message, "undecodable_command", None, str(exc)))
            continue
        first = len(chunk.sources)
        for position, step in enumerate(steps):
            chunk.kinds.append(step.kind.value)
            chunk.sources.append(message)
            if v1:
                chunk.commands.append(step)
            else:
                chunk.mpids.append(step.mpid)
                chunk.entries.append(entries[position])
        chunk.erasures.append(Erasure(message, command, list(range(first, len(chunk.sources)))))
        chunk.erase_sources.add(id(message))
    if run:
        sender.add_records(chunk, run)
    return chunk


def settle_erasures(
    chunk: PreparedChunk, outcomes: Sequence[Any], dead: list[DeadLetter]
) -> list[tuple[bytes, bytes, str]]:
    """The result records ``(MPID key, value, status)`` of the chunk's erases; a failed
    erase's record is added to ``dead`` once."""
    now_ms = int(time.time() * 1000)
    results: list[tuple[bytes, bytes, str]] = []
    for erasure in chunk.erasures:
        failed = [outcomes[i] for i in erasure.steps if not outcomes[i].delivered]
        reasons = [f"{o.reason or 'rejected'} (HTTP {o.http_status or '-'})" for o in failed]
        value = erase_result(erasure.command, reasons, now_ms)
        if failed:
            first = failed[0]
            dead.append((erasure.message, first.reason or "rejected", first.http_status, first.error))
        results.append((erasure.command.mpid.encode(), value, "failed" if failed else "completed"))
    return results
