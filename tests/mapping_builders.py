"""Builders of mParticle inputs for the mapping tests (a helper module, not a pytest conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from cioproc.mapping import (
    AudienceProfile,
    Batch,
    MapResult,
    Rejection,
    map_audience,
    map_batch,
    parse_audience_change,
    parse_batch,
)
from cioproc.models.settings import MappingSettings
from cioproc.models.state import UserState

DATA = Path(__file__).parent / "data" / "mapping"
SAMPLE_BATCH = DATA / "mparticle-eventsapi-sample.json"
SAMPLE_AUDIENCE = DATA / "mparticle-audience-membership-change.json"

T0 = 1_700_000_000_000  # ms: 2023-11-14T22:13:20Z
DEFAULT = MappingSettings()


def event(event_type: str, ts: int | None = T0, **data: Any) -> dict[str, Any]:
    """One mParticle event; ``ts`` in milliseconds (None: no timestamp)."""
    body: dict[str, Any] = dict(data)
    if ts is not None:
        body["timestamp_unixtime_ms"] = ts
    return {"event_type": event_type, "data": body}


def custom(name: Any, ts: int | None = T0, attrs: Any = None, **data: Any) -> dict[str, Any]:
    """A logEvent (custom_event)."""
    return event(
        "custom_event", ts, event_name=name, custom_event_type="other",
        custom_attributes=attrs, **data,
    )


def screen(name: Any, ts: int | None = T0, attrs: Any = None, **data: Any) -> dict[str, Any]:
    """A logScreen (screen_view)."""
    return event("screen_view", ts, screen_name=name, custom_attributes=attrs, **data)


def opt_out(opted_out: Any, ts: int | None = T0) -> dict[str, Any]:
    return event("opt_out", ts, is_opted_out=opted_out)


def batch(
    events: list[Any] | None = None,
    *,
    mpid: Any = 42,
    customer_id: str | None = "cust-1",
    email: str | None = None,
    attributes: dict[str, Any] | None = None,
    deleted: list[str] | None = None,
    os: str | None = None,
    platform: str | None = None,
    outbound: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """A batch object; identities in the inbound map form unless ``outbound``."""
    obj: dict[str, Any] = {"mpid": mpid, "events": [] if events is None else events}
    if outbound:
        obj["user_identities"] = [
            {"identity_type": kind, "identity": value, "timestamp_unixtime_ms": T0}
            for kind, value in (("customer_id", customer_id), ("email", email))
            if value is not None
        ]
    else:
        identities = {}
        if customer_id is not None:
            identities["customer_id"] = customer_id
        if email is not None:
            identities["email"] = email
        obj["user_identities"] = identities
    if attributes is not None:
        obj["user_attributes"] = attributes
    if deleted is not None:
        obj["deleted_user_attributes"] = deleted
    if os is not None:
        obj["application_info"] = {"os": os}
    if platform is not None:
        obj["device_info"] = {"platform": platform}
    obj.update(extra)
    return obj


def parsed(obj: Any) -> Batch:
    result = parse_batch(orjson.dumps(obj))
    assert isinstance(result, Batch), result
    return result


def run(
    obj: Any, state: UserState | None = None, settings: MappingSettings = DEFAULT
) -> MapResult:
    """Parse and map one batch object; fail the test on a rejection or an internal error."""
    result = map_batch(parsed(obj), state, settings)
    assert "internal_error" not in reasons(result), result.drops
    return result


def run_all(
    objs: list[Any], state: UserState | None = None, settings: MappingSettings = DEFAULT
) -> tuple[list[MapResult], UserState | None]:
    """Map batches one after the other, carrying the state."""
    results = []
    for obj in objs:
        result = run(obj, state, settings)
        results.append(result)
        state = result.state
    return results, state


def audience_message(*profiles: dict[str, Any], ts: int = T0) -> dict[str, Any]:
    return {
        "type": "audience_membership_change_request",
        "id": "msg-1",
        "timestamp_ms": ts,
        "user_profiles": list(profiles),
    }


def profile(
    mpid: Any = 42,
    audiences: list[tuple[Any, str | None, str]] = (),
    customer_id: str | None = "cust-1",
    email: str | None = None,
    encoding: str = "raw",
) -> dict[str, Any]:
    identities = []
    if customer_id is not None:
        identities.append({"type": "customer", "encoding": encoding, "value": customer_id})
    if email is not None:
        identities.append({"type": "email", "encoding": encoding, "value": email})
    return {
        "mpid": mpid,
        "user_identities": identities,
        "audiences": [
            {"audience_id": audience_id, "audience_name": name, "action": action}
            for audience_id, name, action in audiences
        ],
    }


def audience_profiles(obj: Any) -> list[AudienceProfile]:
    result = parse_audience_change(orjson.dumps(obj))
    assert not isinstance(result, Rejection), result
    return result


def run_audience(
    obj: Any, state: UserState | None = None, settings: MappingSettings = DEFAULT
) -> MapResult:
    """Map the single profile of an audience message object."""
    (only,) = audience_profiles(obj)
    result = map_audience(only, state, settings)
    assert "internal_error" not in reasons(result), result.drops
    return result


def kinds(result: MapResult) -> list[str]:
    return [command.kind.value for command in result.commands]


def reasons(result: MapResult) -> list[str]:
    return [drop.reason for drop in result.drops]


def of_kind(result: MapResult, kind: str) -> list:
    return [command for command in result.commands if command.kind.value == kind]


def identify_attributes(result: MapResult) -> dict[str, Any]:
    """All attributes the result's identify commands set, merged."""
    merged: dict[str, Any] = {}
    for command in of_kind(result, "identify"):
        merged.update(command.attributes)
    return merged
