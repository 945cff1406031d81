"""Audience membership changes (mParticle's ``audience_membership_change_request``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cioproc.mapping.batch import decode_json
from cioproc.mapping.person import (
    address,
    choose_identifier,
    fill_identities,
    identify,
    owed_unsubscribe,
    unchanged,
)
from cioproc.mapping.results import Drop, MapResult, Rejection
from cioproc.mapping.segments import audience_attributes, bound_audience_times, join_audience
from cioproc.mapping.values import (
    clean_customer_id,
    clean_email,
    digest,
    mpid_string,
    timestamp_ms,
)
from cioproc.models.settings import MappingSettings
from cioproc.models.state import UserState

__all__ = [
    "ACTIONS",
    "AudienceChange",
    "AudienceProfile",
    "map_audience_unchecked",
    "parse_audience_change",
    "profiles_from_object",
]

MESSAGE_TYPE = "audience_membership_change_request"
# "attribute_update" reports a member whose audience changed (e.g. its name): still a member.
ACTIONS = frozenset({"add", "delete", "attribute_update"})
_CUSTOMER_TYPES = frozenset({"customer", "customer_id"})


@dataclass(frozen=True, slots=True)
class AudienceChange:
    """One audience a profile joins (``add``/``attribute_update``) or leaves (``delete``)."""

    audience_id: str
    audience_name: str | None
    action: str


@dataclass(slots=True)
class AudienceProfile:
    """One user profile of an audience message."""

    mpid: str
    changes: list[AudienceChange]
    customer_id: str | None = None
    email: str | None = None
    timestamp_ms: int | None = None
    drops: list[Drop] = field(default_factory=list)


def _audience_id(value: Any) -> str | None:
    if type(value) is int:
        return str(value)
    if type(value) is str and value.strip() and len(value) <= 64:
        return value.strip()
    return None


def _profile(raw: dict[str, Any], mpid: str, ts: int | None) -> AudienceProfile:
    drops: list[Drop] = []
    customer_id = email = None
    identities = raw.get("user_identities")
    if type(identities) is list:
        for entry in identities:
            if type(entry) is not dict or entry.get("encoding", "raw") != "raw":
                continue  # a hashed identity cannot address a Customer.io person
            kind = entry.get("type")
            if type(kind) is not str:
                continue
            if kind in _CUSTOMER_TYPES:
                customer_id = clean_customer_id(entry.get("value"), drops)
            elif kind == "email":
                email = clean_email(entry.get("value"), drops)
    elif identities is not None:
        drops.append(Drop("invalid_identity", "user_identities is not a list"))
    changes: list[AudienceChange] = []
    audiences = raw.get("audiences")
    if type(audiences) is not list:
        audiences = []
        drops.append(Drop("invalid_audience", "audiences is not a list"))
    for entry in audiences:
        if type(entry) is not dict:
            drops.append(Drop("invalid_audience", "an audience is not an object"))
            continue
        audience_id = _audience_id(entry.get("audience_id"))
        if audience_id is None:
            drops.append(Drop("invalid_audience", "an audience has no usable audience_id"))
            continue
        action = entry.get("action")
        if type(action) is not str or action not in ACTIONS:
            drops.append(Drop("unknown_audience_action", f"action {str(action)[:40]!r}"))
            continue
        name = entry.get("audience_name")
        changes.append(AudienceChange(audience_id, name if type(name) is str else None, action))
    return AudienceProfile(mpid, changes, customer_id, email, ts, drops)


def profiles_from_object(
    obj: Any, default_timestamp_ms: int | None = None
) -> list[AudienceProfile] | Rejection:
    """Validate a decoded audience message: one profile per user it names."""
    if type(obj) is not dict:
        return Rejection("not_an_object", f"an audience message is an object, not {type(obj)}")
    kind = obj.get("type")
    if kind is not None and kind != MESSAGE_TYPE:
        return Rejection("not_audience_change", f"type is {str(kind)[:60]!r}")
    profiles = obj.get("user_profiles")
    if type(profiles) is not list:
        return Rejection("no_user_profiles", "user_profiles is missing or not a list")
    ts = timestamp_ms(obj.get("timestamp_ms"))
    if ts is None and default_timestamp_ms is not None:
        ts = timestamp_ms(default_timestamp_ms)
    parsed = []
    for index, raw in enumerate(profiles):
        if type(raw) is not dict:
            return Rejection("invalid_user_profile", f"user profile {index} is not an object")
        mpid = mpid_string(raw.get("mpid"))
        if mpid is None:
            return Rejection("invalid_user_profile", f"user profile {index} has no valid mpid")
        parsed.append(_profile(raw, mpid, ts))
    return parsed


def parse_audience_change(
    raw: bytes | str, default_timestamp_ms: int | None = None
) -> list[AudienceProfile] | Rejection:
    """Decode and validate one audience message; never raises."""
    try:
        obj = decode_json(raw)
        if type(obj) is Rejection:
            return obj
        return profiles_from_object(obj, default_timestamp_ms)
    except Exception as exc:  # a bug must not stop the stream: the input goes to the DLQ
        return Rejection("internal_error", f"{type(exc).__name__}: {exc}"[:200])


def map_audience_unchecked(
    profile: AudienceProfile, state: UserState | None, settings: MappingSettings
) -> MapResult:
    """What :func:`cioproc.mapping.map_audience` does (it calls this)."""
    state = state.copy() if state is not None else UserState()
    drops = list(profile.drops)
    previous_email = state.email
    when = profile.timestamp_ms or 0
    fill_identities(state, profile.customer_id, profile.email)
    removed: dict[str, str | None] = {}
    renamed: list[str] = []  # names an audience had before this message renamed it
    changed_ms = state.audience_ms  # (state.copy() gave this input its own maps)
    for change in profile.changes:
        audience_id = change.audience_id
        if when < changed_ms.get(audience_id, 0):
            drops.append(
                Drop("stale_audience_change", f"audience {audience_id[:40]} changed later")
            )
            continue
        name = change.audience_name
        known = state.audiences.get(audience_id)
        if change.action == "delete":
            state.audiences.pop(audience_id, None)
            removed[audience_id] = name or known
        else:
            join_audience(state.audiences, audience_id, name, drops)
            if audience_id not in state.audiences:  # a cap refused it (a counted drop)
                continue
            if known and name and name != known:
                renamed.append(known)
            removed.pop(audience_id, None)
        changed_ms[audience_id] = when
    bound_audience_times(changed_ms, state.audiences)
    if state.id_type is not None and state.id_value is not None:
        identifier: tuple[str, str] | None = (state.id_type, state.id_value)  # who the person is: not ours to change
    else:
        identifier = choose_identifier(settings, state.customer_id, state.email)
    if identifier is None:
        mode = settings.user_id_type.value
        drops.append(Drop("no_identity", f"no identity for user id type {mode}; audiences kept"))
        return MapResult([], state, drops)
    owed = None
    if state.unsubscribe_pending:
        owed = owed_unsubscribe(state, identifier[0], identifier[1], profile.mpid)
    addressing = address(state, identifier, previous_email, settings.merge_people)
    per_segment = settings.audience_attribute_per_segment
    inputs = digest(
        ("audiences", state.email, state.audiences, removed, per_segment)
        + ((renamed,) if renamed else ())
    )
    if unchanged(state, addressing, inputs):
        return MapResult([owed] if owed else [], state, drops)
    desired: dict[str, Any] = {}
    if state.email is not None:
        desired["email"] = state.email
    audience_attributes(state.audiences, per_segment, desired, drops, removed, renamed)
    commands = identify(
        state, addressing, desired, inputs, None, profile.mpid, when // 1000, drops
    )
    if owed:
        commands.append(owed)
    return MapResult(commands, state, drops)
