"""Audience membership as Customer.io person attributes (mParticle's audience forwarding).

``SegmentMembership`` holds the user's audience ids as single-quoted, comma-separated values
(``'11034','11036'``), sorted by id so that the same set always gives the same value (and
so no needless update); with "Create One User Attribute per Segment" each audience also
sets ``In <audience name>`` to true while the user is a member and false once it leaves.
"""

from __future__ import annotations

from typing import Any

from cioproc.mapping.attributes import MAX_NAME_BYTES, MAX_VALUE_BYTES
from cioproc.mapping.results import Drop
from cioproc.mapping.values import utf8_len

__all__ = ["MEMBERSHIP", "audience_attributes", "membership_value"]

MEMBERSHIP = "SegmentMembership"


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
