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
"""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple

import msgpack

from cioproc.errors import DataError
from cioproc.names import INPUT_TIMESTAMP

COMMAND_VERSION = 1
# Kafka header on a command record: its input record's timestamp (Unix ms, ASCII digits), for the
# sender's end-to-end latency. Not the record timestamp: replayed input would look expired to retention.
INPUT_TIMESTAMP_HEADER = INPUT_TIMESTAMP
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


def encode_command(command: Command) -> bytes:
    """Encode a command as versioned msgpack."""
    secondary = list(command.secondary) if command.secondary is not None else None
    packed: bytes = msgpack.packb(
        [
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
        ],
        use_bin_type=True,
    )
    return packed


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
