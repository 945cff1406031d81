"""Audience membership as Customer.io person attributes (mParticle's audience forwarding).

``SegmentMembership`` holds the user's audience ids as single-quoted, comma-separated values
(``'11034','11036'``), sorted by id so that the same set always gives the same value (and
so no needless update); with "Create One User Attribute per Segment" each audience also
sets ``In <audience name>`` to true while the user is a member and false once it leaves.

The audiences remembered per user are capped (:func:`join_audience`): at most
:data:`MAX_AUDIENCES`, and ids plus names at most :data:`MAX_AUDIENCE_BYTES` in all (a user
state stays under 64 KB). A join past either cap is not kept, and dropped as
``too_many_audiences``; leaving an audience makes room again. The times of the last change
per audience (``audience_ms``) are kept for members, and for at most as many audiences left
again, the most recent (:func:`bound_audience_times`).
"""

from __future__ import annotations

from typing import Any

from cioproc.mapping.attributes import MAX_NAME_BYTES, MAX_VALUE_BYTES
from cioproc.mapping.results import Drop
from cioproc.mapping.values import utf8_len

__all__ = [
    "MAX_AUDIENCES",
    "MAX_AUDIENCE_BYTES",
    "MEMBERSHIP",
    "audience_attributes",
    "bound_audience_times",
    "join_audience",
    "membership_value",
]

MEMBERSHIP = "SegmentMembership"
MAX_AUDIENCES = 200  # SegmentMembership (1000 bytes) holds ~150 short ids anyway
MAX_AUDIENCE_BYTES = 12_000  # UTF-8 bytes of the remembered ids and names together


def _order(audience_id: str) -> tuple[int, int, str]:
    digits = audience_id[1:] if audience_id[:1] == "-" else audience_id
    if digits.isdigit() and digits.isascii() and len(digits) < 20:
        return (0, int(audience_id), "")
    return (1, 0, audience_id)


def membership_value(audience_ids: Any, drops: list[Drop]) -> str:
    """``'id1','id2',...`` sorted by id, cut after the last whole id that fits 1000 bytes."""
    value = ",".join(f"'{audience_id}'" for audience_id in sorted(audience_ids, key=_order))
    if len(value) * 4 <= MAX_VALUE_BYTES or utf8_len(value) <= MAX_VALUE_BYTES:
        return value
    kept = utf8_len(value)
    parts = value.split(",")
    while parts and kept > MAX_VALUE_BYTES:
        kept -= utf8_len(parts.pop()) + 1
    drops.append(Drop("attribute_value_too_long", f"{MEMBERSHIP} cut to {len(parts)} audiences"))
    return ",".join(parts)


def _flag_name(audience_name: str | None, drops: list[Drop]) -> str | None:
    if not audience_name:
        drops.append(Drop("missing_audience_name", "an audience has no name for In <name>"))
        return None
    name = "In " + audience_name
    if len(name) * 4 > MAX_NAME_BYTES and utf8_len(name) > MAX_NAME_BYTES:
        drops.append(Drop("attribute_name_too_long", f"{name[:40]!r}... is over 150 bytes"))
        return None
    return name


def audience_attributes(
    audiences: dict[str, str],
    per_segment: bool,
    out: dict[str, Any],
    drops: list[Drop],
    removed: dict[str, str | None] | None = None,
    renamed: list[str] | None = None,
) -> None:
    """Add ``SegmentMembership`` (and ``In <name>`` flags) for ``audiences`` to ``out``;
    ``removed`` audiences (id -> name) and the ``renamed`` audiences' old names get false."""
    out[MEMBERSHIP] = membership_value(audiences, drops)
    if not per_segment:
        return
    if renamed:
        for old_name in renamed:
            name = _flag_name(old_name, drops)
            if name is not None:
                out[name] = False  # an audience still named so sets it true below
    if removed:
        for audience_id, audience_name in removed.items():
            if audience_id not in audiences:
                name = _flag_name(audience_name, drops)
                if name is not None:
                    out[name] = False
    for audience_name in audiences.values():
        name = _flag_name(audience_name, drops)
        if name is not None:
            out[name] = True


def join_audience(audiences: dict[str, str], audience_id: str, audience_name: str | None, drops: list[Drop]) -> None:
    """Remember a membership (or a member's new name) in ``audiences`` unless a cap forbids it."""
    name = audience_name or audiences.get(audience_id) or ""
    known = audiences.get(audience_id)
    if known == name:
        return
    if known is None and len(audiences) >= MAX_AUDIENCES:
        drops.append(Drop("too_many_audiences", f"audience {audience_id[:40]!r}: {MAX_AUDIENCES} kept already"))
        return
    used = sum(utf8_len(key) + utf8_len(value) for key, value in audiences.items())
    if known is not None:
        used -= utf8_len(audience_id) + utf8_len(known)
    if used + utf8_len(audience_id) + utf8_len(name) > MAX_AUDIENCE_BYTES:
        drops.append(Drop("too_many_audiences", f"audience {audience_id[:40]!r}: over {MAX_AUDIENCE_BYTES} bytes"))
        return
    audiences[audience_id] = name


def bound_audience_times(times: dict[str, int], audiences: dict[str, str]) -> None:
    """Forget the oldest times of audiences the user is not in, past :data:`MAX_AUDIENCES`
    of them or :data:`MAX_AUDIENCE_BYTES` of their ids: ``times`` may only grow by leaving."""
    others = [(ms, key) for key, ms in times.items() if key not in audiences]
    size = sum(utf8_len(key) for _, key in others)
    if len(others) <= MAX_AUDIENCES and size <= MAX_AUDIENCE_BYTES:
        return
    others.sort()  # oldest first: a change older than a forgotten time can apply again
    count = len(others)
    for _, key in others:
        if count <= MAX_AUDIENCES and size <= MAX_AUDIENCE_BYTES:
            break
        del times[key]
        count -= 1
        size -= utf8_len(key)
