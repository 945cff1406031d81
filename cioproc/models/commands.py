"""Customer.io commands: what the processor writes to `cio.commands` and the sender delivers.

A command addresses one Customer.io person by one identifier (`id` or `email`) and is one of:

- ``identify``: set person attributes (``attributes``; a ``None`` value removes one: the
  sender sends v2 null or v1 "");
- ``track``: a custom event (``name``, ``event_id``, ``attributes`` = event data);
- ``screen``: a screen view (``name`` = screen name, ``event_id``, ``attributes``);
- ``unsubscribe``: set ``unsubscribed: true`` on the person, keeping the profile;
- ``merge``: merge ``secondary`` (an identifier) into this command's identifier (the primary);
- ``add_device``: add (or update) the push device ``name`` (its token) on the person, with
  ``attributes = {"platform": "ios" | "android"}`` and ``timestamp`` as its ``last_used``;
- ``delete_device``: remove the push device ``name`` (its token) from the person.
- ``erase``: a data subject's erasure (:mod:`cioproc.mapping.erasure`): ``name`` is the
  action (``delete`` or ``suppress``), ``event_id`` the subject request id, and
  ``attributes["identifiers"]`` every ``[id_type, id_value]`` to delete the person by. The
  sender turns it into one ``delete`` / ``suppress`` per identifier and writes the
  request's result once they are settled; it is never sent as it is.
- ``delete`` / ``suppress``: delete the person (and with ``suppress`` block its
  identifiers); the steps of an ``erase``, made by the sender.

Encoding: msgpack array ``[version, kind, mpid, id_type, id_value, timestamp, attributes,
name, event_id, secondary]``; ``secondary`` is ``[id_type, id_value]`` or nil. The device
kinds use the same ten fields, so records written before they existed decode unchanged.

Records on `cio.commands`: a record with the header ``cioproc.format: commands/1`` holds one
user's commands in order, as a msgpack array of the arrays above (:func:`encode_commands`);
the processor writes one such record per input batch (more when one would not fit the
topic's ``max.message.bytes``), so the producer and the sender handle one record per batch,
not one per command. A record without the header holds one command (:func:`encode_command`),
as every record did before the header existed (and as re-driven dead letters do): so a
reader never misreads a record written by an earlier version. :func:`split_record` gives a
record's commands as single-command bytes (what the sender dead-letters, one command each).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple

import msgpack

from cioproc.errors import DataError
from cioproc.names import INPUT_TIMESTAMP, RECORD_FORMAT

COMMAND_VERSION = 1
# Kafka header on a command record: its input record's timestamp (Unix ms, ASCII digits), for the
# sender's end-to-end latency. Not the record timestamp: replayed input would look expired to retention.
INPUT_TIMESTAMP_HEADER = INPUT_TIMESTAMP
# Kafka header on a command record that is not a single command: its format, versioned (ASCII).
RECORD_FORMAT_HEADER = RECORD_FORMAT
COMMAND_LIST_FORMAT = b"commands/1"  # a msgpack array of commands (encode_command's arrays), in order
ID_TYPES = ("id", "email")


class CommandKind(str, Enum):
    IDENTIFY = "identify"
    TRACK = "track"
    SCREEN = "screen"
    UNSUBSCRIBE = "unsubscribe"
    MERGE = "merge"
    ADD_DEVICE = "add_device"
    DELETE_DEVICE = "delete_device"
    ERASE = "erase"
    DELETE = "delete"
    SUPPRESS = "suppress"


_KINDS = frozenset(kind.value for kind in CommandKind)


class CommandDecodeError(DataError):
    """Bytes that are not a command of a version this code understands."""


class _CommandFields(NamedTuple):
    kind: CommandKind
    mpid: str
    id_type: str  # "id" or "email"
    id_value: str
    timestamp: int  # Unix seconds; 0 when unknown (the sender then omits it)
    attributes: dict[str, Any]
    name: str | None
    event_id: str | None  # ULID, for track and screen
    secondary: tuple[str, str] | None  # merge: (id_type, id_value) to merge away


class Command(_CommandFields):
    """One Customer.io operation on one person: an immutable named tuple of the fields above.

    A tuple because the mapping makes one per event: ``tuple.__new__(Command, fields)``
    builds one in a single call, where a frozen dataclass sets each field through
    ``object.__setattr__``. ``attributes`` defaults to a new empty dict; ``name``,
    ``event_id`` and ``secondary`` to None.
    """

    __slots__ = ()

    def __new__(
        cls,
        kind: CommandKind,
        mpid: str,
        id_type: str,
        id_value: str,
        timestamp: int,
        attributes: dict[str, Any] | None = None,
        name: str | None = None,
        event_id: str | None = None,
        secondary: tuple[str, str] | None = None,
    ) -> Command:
        return tuple.__new__(
            cls,
            (
                kind, mpid, id_type, id_value, timestamp,
                {} if attributes is None else attributes, name, event_id, secondary,
            ),
        )

    @property
    def identifier(self) -> dict[str, str]:
        """The person's identifier as Customer.io's v2 API spells it."""
        return {self.id_type: self.id_value}


def _wire_fields(command: Command) -> list[Any]:
    secondary = list(command.secondary) if command.secondary is not None else None
    return [
        COMMAND_VERSION,
        command.kind.value,
        command.mpid,
        command.id_type,
        command.id_value,
        command.timestamp,
        command.attributes,
        command.name,
        command.event_id,
        secondary,
    ]


def encode_command(command: Command) -> bytes:
    """Encode a command as versioned msgpack."""
    packed: bytes = msgpack.packb(_wire_fields(command), use_bin_type=True)
    return packed


def command_prefix(kind: CommandKind) -> bytes:
    """The first bytes of every encoded command of ``kind`` (:func:`encode_command` writes a
    10-element array, the version, then the kind): a kind test without decoding."""
    prefix: bytes = b"\x9a" + msgpack.packb(COMMAND_VERSION) + msgpack.packb(kind.value)
    return prefix


def encode_commands(commands: list[Command]) -> bytes:
    """The value of a ``commands/1`` record: the commands as one msgpack array, in order.

    Byte for byte :func:`join_commands` of each command's :func:`encode_command`, in one call:
    a Command is a tuple in the wire order after the version, and msgpack packs a tuple as an
    array and a ``str`` enum as its string (``tests/test_command_records.py`` checks both)."""
    version = COMMAND_VERSION
    packed: bytes = msgpack.packb([(version, *command) for command in commands], use_bin_type=True)
    return packed


def join_commands(encoded: list[bytes]) -> bytes:
    """The value of a ``commands/1`` record from single commands' bytes (msgpack arrays concatenate)."""
    count = len(encoded)
    if count < 16:
        head = bytes((0x90 | count,))
    elif count < 0x10000:
        head = b"\xdc" + count.to_bytes(2, "big")
    else:
        head = b"\xdd" + count.to_bytes(4, "big")
    return head + b"".join(encoded)


def record_format(headers: Any) -> bytes | None:
    """A command record's ``cioproc.format`` header, None without one (a single command)."""
    for key, value in headers or ():
        if key == RECORD_FORMAT_HEADER:
            return bytes(value) if value is not None else b""
    return None


def split_record(value: bytes | None, record_format: bytes | None) -> list[bytes]:
    """A command record's commands, each as a single command's bytes, in order (not decoded).

    Without a format, the value is one command (returned as it is, decodable or not). A
    ``commands/1`` value that is not a msgpack array of arrays, or an unknown format, raises
    CommandDecodeError: the record as a whole cannot be read.
    """
    if record_format is None:
        return [value or b""]
    if record_format != COMMAND_LIST_FORMAT:
        raise CommandDecodeError(f"unknown command record format {record_format!r}")
    data = value or b""
    unpacker = msgpack.Unpacker(max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    try:
        count = unpacker.read_array_header()
        parts: list[bytes] = []
        start = unpacker.tell()
        for _ in range(count):
            if data[start] & 0xF0 != 0x90 and data[start] not in (0xDC, 0xDD):
                raise CommandDecodeError(f"element {len(parts)} of the command list is not an array")
            unpacker.skip()
            end = unpacker.tell()
            parts.append(data[start:end])
            start = end
    except CommandDecodeError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types (and IndexError past the end)
        raise CommandDecodeError(f"not a msgpack array of commands: {type(exc).__name__}: {exc}") from None
    if start != len(data):
        raise CommandDecodeError(f"{len(data) - start} bytes after the command list")
    return parts


def decode_record(value: bytes | None, headers: Any) -> list[Command]:
    """Every command of a command record, in order; CommandDecodeError when one does not decode."""
    return [decode_command(part) for part in split_record(value, record_format(headers))]


def decode_command(data: bytes) -> Command:
    """Decode bytes written by :func:`encode_command`; raise CommandDecodeError otherwise.

    Every field is checked for its type, so a decoded command never makes the sender raise
    anything but PayloadError (a wrong ``secondary`` once crashed the worker with TypeError).
    """
    try:
        fields = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise CommandDecodeError(f"not msgpack: {exc}") from None
    if not isinstance(fields, list) or not fields or fields[0] != COMMAND_VERSION:
        raise CommandDecodeError(f"not a command of version {COMMAND_VERSION}")
    if len(fields) != 10:
        raise CommandDecodeError(f"command has {len(fields)} fields, expected 10")
    _, kind, mpid, id_type, id_value, timestamp, attributes, name, event_id, secondary = fields
    if type(kind) is not str or kind not in _KINDS:
        raise CommandDecodeError(f"unknown command kind {kind!r}")
    command_kind = CommandKind(kind)
    if type(id_type) is not str or id_type not in ID_TYPES or type(id_value) is not str or type(mpid) is not str:
        raise CommandDecodeError("bad identifier")
    if type(timestamp) is not int or type(attributes) is not dict:
        raise CommandDecodeError("bad timestamp or attributes")
    if not (name is None or type(name) is str) or not (event_id is None or type(event_id) is str):
        raise CommandDecodeError("bad name or event id")
    if secondary is not None and not (type(secondary) is list and all(type(part) is str for part in secondary)):
        raise CommandDecodeError("bad secondary identifier")
    return Command(
        kind=command_kind,
        mpid=mpid,
        id_type=id_type,
        id_value=id_value,
        timestamp=timestamp,
        attributes=attributes,
        name=name,
        event_id=event_id,
        secondary=tuple(secondary) if secondary is not None else None,
    )
