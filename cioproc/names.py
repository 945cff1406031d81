"""Names the project declares once: record headers and consumer groups.

Topic names come from ``topics.yaml`` (by role, :mod:`cioproc.kafka.topics`); the users
table's changelog is named by Faust after the processors' group and the table
(:func:`cioproc.app.faust_config.changelog_topic_name`: ``<app id>-users-changelog``).
"""

from __future__ import annotations

__all__ = [
    "DETAIL",
    "ERROR",
    "HTTP_STATUS",
    "INPUT_TIMESTAMP",
    "RECORD_FORMAT",
    "REASON",
    "REDRIVEN",
    "SOURCE_INDEX",
    "SOURCE_OFFSET",
    "SOURCE_PARTITION",
    "SOURCE_TOPIC",
    "USERS_TABLE",
    "VALUE_TRUNCATED",
    "group_id",
]

# Dead-letter headers (UTF-8 text values); both dead-letter topics carry the first four.
REASON = "cioproc.reason"  # why the record was dead-lettered
SOURCE_TOPIC = "cioproc.source.topic"  # where it came from ...
SOURCE_PARTITION = "cioproc.source.partition"
SOURCE_OFFSET = "cioproc.source.offset"  # ... and at which offset
DETAIL = "cioproc.detail"  # input dead letters: what exactly was wrong
HTTP_STATUS = "cioproc.http_status"  # command dead letters: Customer.io's answer
ERROR = "cioproc.error"  # command dead letters: Customer.io's error text
VALUE_TRUNCATED = "cioproc.value.truncated"  # the original value's size, when cut to fit
REDRIVEN = "cioproc.redriven"  # on a re-driven record: "<dead-letter topic>:<partition>:<offset>"
INPUT_TIMESTAMP = "cioproc.input.ts"  # on a command record: its input record's timestamp (Unix ms)
RECORD_FORMAT = "cioproc.format"  # on a command record holding several commands: "commands/1"
SOURCE_INDEX = "cioproc.source.index"  # command dead letters: the command's place in its record

USERS_TABLE = "users"  # the Faust table keyed by MPID


def group_id(role: str, app_id: str) -> str:
    """The consumer group (and Faust app id) of a role.

    ``processor`` and ``all`` share ``<app id>``; senders get ``<app id>-sender`` (a group
    whose members subscribe to different topics would let Faust's assignor hand processor
    partitions to senders); the dead-letter re-drive commits in ``<app id>-dlq-redrive``.
    """
    if role in ("processor", "all"):
        return app_id
    if role in ("sender", "dlq-redrive"):
        return f"{app_id}-{role}"
    raise ValueError(f"unknown role {role!r}")

