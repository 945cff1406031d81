"""What mapping returns: commands with the new state, drops, and rejections (with reasons)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

from cioproc.models.commands import Command
from cioproc.models.state import UserState

__all__ = ["DROP_REASONS", "REJECTION_REASONS", "Drop", "MapResult", "Rejection"]

# Whole input refused (goes to the dead-letter queue). See the package docstring.
REJECTION_REASONS = frozenset(
    {
        "not_utf8",
        "not_json",
        "not_an_object",
        "missing_mpid",
        "invalid_mpid",
        "events_not_a_list",
        "not_audience_change",
        "no_user_profiles",
        "invalid_user_profile",
        "internal_error",
    }
)

# Part of an input not forwarded (counted, not an error). See the package docstring.
DROP_REASONS = frozenset(
    {
        "no_identity",
        "invalid_identity",
        "identifier_too_long",
        "invalid_event",
        "invalid_timestamp",
        "missing_event_name",
        "empty_event_name",
        "event_name_truncated",
        "invalid_event_attributes",
        "event_data_too_large",
        "unsupported_attribute_value",
        "invalid_user_attributes",
        "invalid_deleted_attributes",
        "null_attribute_value",
        "empty_attribute_name",
        "attribute_name_too_long",
        "reserved_attribute_name",
        "attribute_value_truncated",
        "attribute_value_too_long",
        "too_many_attributes",
        "invalid_audience",
        "unknown_audience_action",
        "missing_audience_name",
        "stale_identity",
        "stale_audience_change",
        "too_many_audiences",
        "unknown_push_token",
        "unsupported_push_platform",
        "stale_push_registration",
        "push_token_forgotten",
    }
)


@final  # no subclasses: callers test ``type(x) is Rejection`` (fast), and mypy narrows on it
@dataclass(frozen=True, slots=True)
class Rejection:
    """An input that cannot be mapped at all; ``reason`` is a stable snake_case slug."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Drop:
    """A part of an input that was not forwarded (or was cut to fit), and why."""

    reason: str
    detail: str


@dataclass(slots=True)
class MapResult:
    """Commands to deliver, in order, for one user; the user's new state; what was dropped."""

    commands: list[Command]
    state: UserState
    drops: list[Drop]
