"""The records of the sandbox workspace (:mod:`cioproc.sandbox.workspace`): identifiers, the
operations the Track API asks for, people and events, and Customer.io's reading of values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ID = "id"
EMAIL = "email"
CIO_ID = "cio_id"
IdKind = Literal["id", "email", "cio_id"]
UNSUBSCRIBED = "unsubscribed"


@dataclass(frozen=True, slots=True)
class Identifier:
    """One way to address a person."""

    kind: str  # ID, EMAIL or CIO_ID
    value: str

    def as_dict(self) -> dict[str, str]:
        return {self.kind: self.value}


@dataclass(frozen=True, slots=True)
class IdentifyOp:
    """Set and remove attributes of the person ``target`` (and maybe of identifiers)."""

    target: Identifier
    set: dict[str, Any]
    remove: frozenset[str] = frozenset()
    identifiers: dict[str, str | None] = field(default_factory=dict)  # body id/email; None removes
    update_only: bool = False


@dataclass(frozen=True, slots=True)
class EventOp:
    """Record an event (``type`` event, screen or page) for ``target``."""

    target: Identifier
    name: str
    type: str
    event_id: str | None
    timestamp: int | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MergeOp:
    """Merge ``secondary`` into ``primary`` and delete ``secondary``."""

    primary: Identifier
    secondary: Identifier


@dataclass(frozen=True, slots=True)
class DeviceOp:
    """Add (or update) the device ``token`` of ``target``, or delete it (``delete``)."""

    target: Identifier
    token: str
    delete: bool = False
    platform: str | None = None
    last_used: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeleteOp:
    """Delete the person ``target``; with ``suppress`` also block its identifiers."""

    target: Identifier
    suppress: bool = False


Operation = IdentifyOp | EventOp | MergeOp | DeviceOp | DeleteOp


@dataclass(slots=True)
class Person:
    cio_id: str
    id: str | None = None
    email: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> platform, last_used

    @property
    def unsubscribed(self) -> bool:
        return bool(self.attributes.get(UNSUBSCRIBED, False))

    def identifier(self, kind: str) -> str | None:
        return {ID: self.id, EMAIL: self.email, CIO_ID: self.cio_id}[kind]


@dataclass(slots=True)
class Event:
    event_id: str
    name: str
    type: str
    timestamp: int
    data: dict[str, Any]
    cio_id: str


Outcome = Literal["applied", "failed", "deduplicated"]


def is_unsubscribed(value: Any) -> bool:
    """Customer.io's reading of ``unsubscribed``: true in any case, 1 or "1"."""
    if value is True:
        return True
    if isinstance(value, str):
        return value.lower() == "true" or value == "1"
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 1


def folded(kind: str, value: str) -> str:
    return value.lower() if kind == EMAIL else value


def same_identifier(kind: str, a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.lower() == b.lower() if kind == EMAIL else a == b


class IdentifyFailure(Exception):
    """An identify that Customer.io accepts (200) but does not apply."""

