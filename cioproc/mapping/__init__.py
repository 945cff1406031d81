"""The mapping core: mParticle batches and audience changes -> Customer.io commands.

Pure functions (no Kafka, no HTTP). The processor calls::

    parse_batch(raw, default_timestamp_ms=None) -> Batch | Rejection
    map_batch(batch, state, settings) -> MapResult(commands, state, drops)
    parse_audience_change(raw, default_timestamp_ms=None) -> list[AudienceProfile] | Rejection
    map_audience(profile, state, settings) -> MapResult(commands, state, drops)

The parse functions never raise. The map functions raise only on a bug in this package
(never on any input): the caller dead-letters that input (the processor as
``internal_error``), so a bug is never a silent drop. ``default_timestamp_ms`` (e.g. the Kafka
record's timestamp) stands in for the time of an input that carries none; a command whose
time is unknown even so has ``timestamp == 0`` (the sender should then omit it and let
Customer.io use receive time).
The state given to a map function is never changed: the result holds a new one (compare
it with ``==`` to know whether to store it; ``encode_state``/``decode_state`` turn it into
the bytes of the Faust table and back).

What a batch becomes, in delivery order:

1. identify (person attributes that changed since last sent; always the first time a person
   is addressed by an identifier, so it exists before its events), then, with
   ``merge_people``, a merge when the identifier genuinely changed in a way Customer.io
   cannot attach by itself (see ``person``: identities never go backwards), then an
   unsubscribe owed from an opt-out seen before the user could be addressed;
2. one command per forwarded event, in batch order: ``custom_event`` -> track,
   ``screen_view`` -> screen, ``opt_out`` with ``is_opted_out: true`` -> unsubscribe (once;
   opting back in never resubscribes). A ``user_attribute_change`` with ``deleted: true``
   removes that attribute (as ``deleted_user_attributes`` does); other event types only
   feed created_at;
3. with ``forward_devices``, add_device / delete_device for the batch's push registrations
   (see ``push``).

A batch whose ``events`` is missing, null or an empty list is valid (the schema allows it)
and may still produce an identify (user attributes, identities); any other non-list is
rejected. A user without the
identity the "User ID Type" needs is not forwarded (a ``no_identity`` drop, not an error);
their state (identities, devices, audiences) is still kept.

Rejection reasons (whole input to the dead-letter queue):

- ``not_utf8``: bytes that are not UTF-8; ``not_json``: not a JSON document;
- ``not_an_object``: JSON, but not an object;
- ``missing_mpid`` / ``invalid_mpid``: no ``mpid``, or not a 64-bit integer (or its string);
- ``events_not_a_list``: ``events`` neither a list nor null;
- ``not_audience_change``: an audience message whose ``type`` is another one;
- ``no_user_profiles``: audience message without a ``user_profiles`` list;
- ``invalid_user_profile``: a profile that is not an object or has no valid ``mpid``;
- ``internal_error``: a bug in this package (the detail names the exception).

Drop reasons (part of an input not forwarded, or cut to fit; the rest goes on). Drops
about person attributes are reported when those attributes are evaluated, i.e. when the
user's attributes changed since the last identify, not again for every batch:

- ``no_identity``: no customer id / email as the User ID Type requires;
- ``invalid_identity``: an identity of the wrong type, or an email without ``@``;
- ``identifier_too_long``: a customer id or email over Customer.io's 150 bytes;
- ``invalid_timestamp``: an event (or batch) time that is not plausible: below 10^12 and a
  plausible time in seconds (read as seconds), or before 2001 or more than a day after the
  Kafka record's time, or not a number (replaced by the record's time); such times never
  set created_at;
- ``invalid_event``: an event that is not an object, lacks ``event_type``/``data``, or an
  opt_out without a boolean ``is_opted_out``;
- ``missing_event_name``: custom_event/screen_view without a string name;
- ``empty_event_name``: a name that is empty once trimmed (the event is dropped);
- ``event_name_truncated``: a name cut to 100 bytes (the event is sent);
- ``invalid_event_attributes``: ``custom_attributes`` not an object (sent without data);
- ``event_data_too_large``: event data over one Customer.io entry; largest values left out;
- ``unsupported_attribute_value``: an object (or a list of non-scalars) as user attribute
  value, or an event data value nested too deep to encode in a request (~250 levels);
- ``invalid_user_attributes`` / ``invalid_deleted_attributes``: not an object / not a list;
- ``null_attribute_value``: a user attribute without a value (an mParticle user tag);
- ``empty_attribute_name``, ``attribute_name_too_long`` (over 150 bytes),
  ``reserved_attribute_name`` (``id``, ``email``, ``created_at``, ``unsubscribed``, ... are
  set by this mapping only);
- ``attribute_value_truncated``: a string value cut to 1000 bytes (sent cut);
- ``attribute_value_too_long``: a list value over 1000 bytes (left out), or a
  ``SegmentMembership`` cut after the last audience id that fits;
- ``too_many_attributes``: the person already has 300 attributes;
- ``invalid_audience``, ``unknown_audience_action``, ``missing_audience_name`` (no name for
  ``In <audience name>``);
- ``stale_identity``: identities older than the user's (a replay, a lagging batch): the
  user keeps the newer ones;
- ``stale_audience_change``: an audience change older than the last one applied to that
  audience (audience changes apply in their own ``timestamp_ms`` order);
- ``too_many_audiences``: a join not remembered: the user has 200 audiences, or their ids
  and names fill 12,000 bytes (the state's cap; see ``segments``).
- ``unknown_push_token``: an ``uninstall`` without ``device_info.push_token`` and no token
  known for that device (``CIO_FORWARD_DEVICES``; see ``push``);
- ``unsupported_push_platform``: a push token of a platform other than iOS or Android;
- ``stale_push_registration``: a registration older than the token's deletion or
  replacement, or an unregistration older than its registration (nothing changes);
- ``push_token_forgotten``: more push tokens than a user's state keeps: the oldest is no
  longer tracked;
"""

from __future__ import annotations

from cioproc.mapping.audience import (
    AudienceChange,
    AudienceProfile,
    map_audience_unchecked,
    parse_audience_change,
)
from cioproc.mapping.batch import Batch, parse_batch
from cioproc.mapping.mapper import map_batch_unchecked
from cioproc.mapping.results import DROP_REASONS, REJECTION_REASONS, Drop, MapResult, Rejection
from cioproc.models.settings import MappingSettings, UserIdType
from cioproc.models.state import StateDecodeError, UserState, decode_state, encode_state

__all__ = [
    "DROP_REASONS",
    "REJECTION_REASONS",
    "AudienceChange",
    "AudienceProfile",
    "Batch",
    "Drop",
    "MapResult",
    "MappingSettings",
    "Rejection",
    "StateDecodeError",
    "UserIdType",
    "UserState",
    "decode_state",
    "encode_state",
    "map_audience",
    "map_batch",
    "parse_audience_change",
    "parse_batch",
]


def map_batch(batch: Batch, state: UserState | None, settings: MappingSettings) -> MapResult:
    """Map one parsed batch with the user's state (see the module docstring); raises only on a bug."""
    return map_batch_unchecked(batch, state, settings)


def map_audience(
    profile: AudienceProfile, state: UserState | None, settings: MappingSettings
) -> MapResult:
    """Map one audience profile with the user's state; raises only on a bug."""
    return map_audience_unchecked(profile, state, settings)
