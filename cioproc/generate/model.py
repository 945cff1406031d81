"""What the generator yields: :class:`Record`, and the :class:`Summary` of a generation."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

INPUT_ROLES = ("batches", "audiences", "erasures")


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka message to be: ``topic_role`` names the topic by its role in topics.yaml."""

    topic_role: str  # "batches", "audiences" or "erasures"
    key: str  # the MPID as a decimal string
    value: dict[str, Any]


@dataclass
class Summary:
    """What a generation contains, counted while its records are consumed.

    ``forwardable_events_by_type`` counts events in batches that carry a customer id or an
    e-mail: the ones the integration may forward (the processor may still drop some, for
    example those of opted-out users). ``users_by_identity`` uses the categories of
    :mod:`cioproc.generate.plan`.
    """

    users_requested: int = 0
    users: int = 0  # users with at least one batch
    batches: int = 0
    events: int = 0
    events_by_type: Counter[str] = field(default_factory=Counter)
    forwardable_events_by_type: Counter[str] = field(default_factory=Counter)
    users_by_identity: Counter[str] = field(default_factory=Counter)
    devices_by_platform: Counter[str] = field(default_factory=Counter)  # a user's device types
    multi_device_users: int = 0
    # "map" (inbound), "array" (outbound), "null"
    batches_by_identity_shape: Counter[str] = field(default_factory=Counter)
    string_mpid_batches: int = 0
    names_needing_normalisation: int = 0  # custom events whose name changes when normalised
    opted_out_users: int = 0
    opted_back_in_users: int = 0
    users_with_list_attributes: int = 0
    batches_with_deleted_attributes: int = 0
    audience_messages: int = 0
    audience_profiles: int = 0
    multi_profile_audience_messages: int = 0
    audience_profiles_without_raw_identity: int = 0
    audience_actions: Counter[str] = field(default_factory=Counter)
    erasure_requests: int = 0  # data subject erasures, after every batch
    first_event_ms: int | None = None
    last_event_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, counters as sorted dicts."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = dict(sorted(value.items())) if isinstance(value, Counter) else value
        return out


def normalise_event_name(name: str) -> str:
    """The integration's rule: trim leading/trailing spaces, replace spaces with "_"."""
    return name.strip(" ").replace(" ", "_")
