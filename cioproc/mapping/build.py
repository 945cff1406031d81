"""Fast construction of :class:`~cioproc.models.commands.Command` on the hot path.

``Command`` is a frozen slots dataclass; its generated ``__init__`` sets each field through
``object.__setattr__``, which costs about four times as much as plain attribute stores.
Here the fields are stored on an instance of a plain class with the very same slots, which
then becomes a ``Command`` by ``__class__`` assignment (Python allows it between classes
of identical layout and checks that it is so). The result is the same object as the
constructor's (same type, fields, equality). If the contract's fields ever change
or the check at import fails, this module falls back to the ordinary constructor.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cioproc.models.commands import Command, CommandKind

__all__ = ["INLINE_OK", "Unfrozen", "command"]

_FIELDS = (
    "kind", "mpid", "id_type", "id_value", "timestamp", "attributes", "name", "event_id",
    "secondary",
)


def _slow(
    kind: CommandKind,
    mpid: str,
    id_type: str,
    id_value: str,
    timestamp: int,
    attributes: dict[str, Any],
    name: str | None = None,
    event_id: str | None = None,
    secondary: tuple[str, str] | None = None,
) -> Command:
    return Command(kind, mpid, id_type, id_value, timestamp, attributes, name, event_id, secondary)


class _Unfrozen:
    """Command's layout without its frozen ``__setattr__``: filled, then made a Command."""

    __slots__ = _FIELDS


def _fast(
    kind: CommandKind,
    mpid: str,
    id_type: str,
    id_value: str,
    timestamp: int,
    attributes: dict[str, Any],
    name: str | None = None,
    event_id: str | None = None,
    secondary: tuple[str, str] | None = None,
) -> Command:
    made = _new(_Unfrozen)
    made.kind = kind
    made.mpid = mpid
    made.id_type = id_type
    made.id_value = id_value
    made.timestamp = timestamp
    made.attributes = attributes
    made.name = name
    made.event_id = event_id
    made.secondary = secondary
    made.__class__ = Command  # type: ignore[assignment]
    return made  # type: ignore[return-value]


_new = object.__new__


def _choose():  # noqa: ANN202
    fields = tuple(f.name for f in dataclasses.fields(Command))
    slots = getattr(Command, "__slots__", ())
    if fields != _FIELDS or tuple(slots) != _FIELDS or hasattr(Command, "__post_init__"):
        return _slow
    args = (CommandKind.MERGE, "1", "id", "a", 2, {"x": 1}, "n", "e", ("email", "b@c"))
    try:
        made = _fast(*args)
    except TypeError:  # layouts differ after all
        return _slow
    expected = _slow(*args)
    if type(made) is not Command or made != expected or repr(made) != repr(expected):
        return _slow
    return _fast


command = _choose()
INLINE_OK = command is _fast
"""Whether a hot loop may write ``_fast``'s body out itself (fields stored on an ``Unfrozen``)."""
Unfrozen = _Unfrozen
