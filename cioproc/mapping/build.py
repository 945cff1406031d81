"""Fast construction of :class:`~cioproc.models.commands.Command` on the hot path.

``Command`` is a frozen slots dataclass; its generated ``__init__`` sets each field through
``object.__setattr__``, which costs about twice as much as writing the slots directly. The
result is the same object (same fields, equal, hashable the same). If the contract's fields
ever change, this module falls back to the ordinary constructor.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cioproc.models.commands import Command, CommandKind

__all__ = ["command"]

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


def _fast_factory():  # noqa: ANN202 - returns the constructor below
    setters = tuple(Command.__dict__[name].__set__ for name in _FIELDS)
    s0, s1, s2, s3, s4, s5, s6, s7, s8 = setters
    new = object.__new__

    def fast(
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
        made = new(Command)
        s0(made, kind)
        s1(made, mpid)
        s2(made, id_type)
        s3(made, id_value)
        s4(made, timestamp)
        s5(made, attributes)
        s6(made, name)
        s7(made, event_id)
        s8(made, secondary)
        return made

    return fast


def _choose():  # noqa: ANN202
    fields = tuple(f.name for f in dataclasses.fields(Command))
    slots = getattr(Command, "__slots__", ())
    if fields == _FIELDS and tuple(slots) == _FIELDS and not hasattr(Command, "__post_init__"):
        return _fast_factory()
    return _slow


command = _choose()
