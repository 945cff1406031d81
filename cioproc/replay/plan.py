"""The pure decisions of `cioproc replay` (see :mod:`cioproc.replay`): start times and
offsets, which group moves, which moves are forward, which re-delivered commands are
irreversible, where a dead letter goes back to."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cioproc import names
from cioproc.errors import KafkaFailure
from cioproc.models.commands import CommandDecodeError, CommandKind, command_prefix, record_format, split_record

if TYPE_CHECKING:
    from cioproc.replay.offsets import ResetResult

REDRIVEN_HEADER = names.REDRIVEN  # value: "<dead-letter topic>:<partition>:<offset>"
SOURCE_TOPIC_HEADER = names.SOURCE_TOPIC  # set on both kinds of dead letters
INACTIVE_STATES = ("Empty", "Dead", "")
ASSIGNMENT_TIMEOUT_S = 30.0
REPLAYABLE = {"batches": "re-process the input batches", "audiences": "re-process the audience changes",
              "commands": "re-deliver the commands"}
# Commands that act again in Customer.io when re-delivered and cannot be undone there.
IRREVERSIBLE = (CommandKind.MERGE, CommandKind.ERASE, CommandKind.DELETE, CommandKind.SUPPRESS)
_IRREVERSIBLE_PREFIXES = tuple((command_prefix(kind), kind.value) for kind in IRREVERSIBLE)


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


class IrreversibleReplayRefused(ReplayError):
    """The plan re-delivers merge or erase commands and that was not allowed."""

    def __init__(self, plan: ResetResult):
        super().__init__(
            f"refusing to re-deliver {describe_irreversible(plan.irreversible)} on {plan.topic} (group "
            f"'{plan.group}'): they act again in Customer.io (a merge takes away a secondary person created since, "
            f"an erase deletes or suppresses a person who came back); pass --allow-irreversible to re-deliver them "
            f"on purpose, or replay batches instead (replayed input never merges or erases again)"
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


def replayed_ranges(
    before: Mapping[int, int | None], beginning: Mapping[int, int], targets: Mapping[int, int], end: Mapping[int, int]
) -> dict[int, tuple[int, int]]:
    """What a reset makes the group read again, not for the first time: {partition: (target, resume)}."""
    ranges = {}
    for p, target in targets.items():
        resume = min(resume_offset(before.get(p), beginning.get(p, 0)), end.get(p, 0))
        if target < resume:
            ranges[p] = (target, resume)
    return ranges


def irreversible_kinds(value: bytes | None, headers: Any) -> list[str]:
    """The kinds of the irreversible commands in one command record, in order (a prefix test, no
    decoding); none in a record that does not decode (the sender dead-letters those)."""
    try:
        parts = split_record(value, record_format(headers))
    except CommandDecodeError:
        return []
    return [kind for part in parts for prefix, kind in _IRREVERSIBLE_PREFIXES if part.startswith(prefix)]


def describe_irreversible(counts: Mapping[str, int]) -> str:
    """``1 merge and 2 erase command(s)``, in the order of :data:`IRREVERSIBLE`."""
    parts = [f"{counts[kind.value]} {kind.value}" for kind in IRREVERSIBLE if counts.get(kind.value)]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{listed} command(s)"


def redrive_target(headers: Iterable[tuple[str, bytes]], allowed: Iterable[str], default: str) -> str:
    """Where a dead letter goes back to: its source topic when that is one of ``allowed``, else ``default``."""
    names = set(allowed)
    for key, value in headers:
        if key == SOURCE_TOPIC_HEADER and value is not None:
            source = value.decode("utf-8", "replace")
            if source in names:
                return source
    return default

