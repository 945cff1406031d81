"""Synthetic mParticle traffic, reproducible by seed: event batches and audience membership changes.

:func:`generate` yields :class:`Record` values (topic role, MPID key, JSON-ready value) in
time order. The same ``(users, events, seed, now_ms)`` always yields the same records;
nothing here reads the clock or touches Kafka.

Three passes:

1. :mod:`~cioproc.generate.plan` plans every user (O(batches)): MPID, identity category,
   a heavy-tailed share of ``events`` (so the total is exact), batches of 1-15 events,
   the device type and start time of each batch (all in the 48 hours before ``now_ms``,
   each user's in order), where identity upgrades, opt-outs and opt-ins fall.
2. :mod:`~cioproc.generate.audiences` plans audience membership changes from the plans.
3. :mod:`~cioproc.generate.batches` builds a user's batch only when it is next in time,
   so memory stays O(users) whatever the event count.

Every user draws from their own ``random.Random`` seeded by ``(seed, user index)``, so the
interleaving of users cannot change any user's data.

What the data contains, on purpose (the processor must handle each):

* device types iOS, Android, web (MobileWeb), alexa, tvOS, roku, fire_tv, smart_tv with
  matching ``device_info.platform`` / ``application_info.os``; some users use two or three;
* ``first_run`` in a user's first batch on each device type; sessions; ``custom_event``
  names that need normalising ("  Add to Cart ", "Video  Played"); ``screen_view``; a few
  ``commerce_event`` and ``application_state_transition`` events (not forwarded);
* ``user_attributes`` with reserved names in one spelling per user (``$FirstName``,
  ``$firstname``, ``$FIRSTNAME``, ``$Firstname``), custom attributes, list values;
  ``user_attribute_change`` events, deletions listed in ``deleted_user_attributes``;
* identities: customer id and e-mail (most users); e-mail first and a customer id from a
  later batch on, with a ``user_identity_change`` event (identity upgrade); e-mail only;
  customer id only; neither (sometimes with a phone number or another id instead);
* both ``user_identities`` shapes (inbound map, outbound array). Inbound-form batches
  validate against mParticle's JSON schema as they are; outbound-form ones add
  ``schema_version`` and ``unique_id`` and sometimes carry the MPID as a string;
* ``opt_out`` events (``is_opted_out`` true; for some users false again later);
* ``audience_membership_change_request`` messages with add and delete actions, several
  profiles in some messages, keyed by the first profile's MPID;
* with ``erasures``: that many data subject erasure requests of identified users, after
  every batch (:mod:`~cioproc.generate.erasures`).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from cioproc.generate.audiences import count_audience, plan_audiences
from cioproc.generate.batches import user_batches
from cioproc.generate.erasures import plan_erasures
from cioproc.generate.model import INPUT_ROLES, Record, Summary, normalise_event_name
from cioproc.generate.plan import plan_users

__all__ = ["DEFAULT_NOW_MS", "INPUT_ROLES", "Record", "Summary", "generate", "normalise_event_name"]

DEFAULT_NOW_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z; the CLI passes the current time


def generate(
    users: int,
    events: int,
    seed: int,
    *,
    now_ms: int = DEFAULT_NOW_MS,
    summary: Summary | None = None,
    push_share: float = 0.0,
    erasures: int = 0,
) -> Iterator[Record]:
    """Yield the batches of up to ``users`` users holding exactly ``events`` events, and audience changes.

    Records come in time order (a batch at its first event's time, an audience message at
    its ``timestamp_ms``); each user's batches are in chronological order. When fewer
    events than users are asked for, only ``events`` users appear. ``summary``, if given,
    is filled in as the records are consumed. ``push_share``: the share of iOS and Android
    devices that register for push (see :mod:`cioproc.generate.batches`; 0: none).
    """
    if users < 1:
        raise ValueError("users must be at least 1")
    if events < 0:
        raise ValueError("events must not be negative")
    if erasures < 0:
        raise ValueError("erasures must not be negative")
    summary = summary if summary is not None else Summary()
    summary.users_requested = users
    if not 0.0 <= push_share <= 1.0:
        raise ValueError("push_share must be between 0 and 1")
    return _merge(users, events, seed, now_ms, summary, push_share, erasures)


def _merge(
    users: int, events: int, seed: int, now_ms: int, summary: Summary, push_share: float = 0.0, erasures: int = 0
) -> Iterator[Record]:
    plans = plan_users(users, events, seed, now_ms)
    for plan in plans:
        kinds = set(plan.devices)
        summary.users += 1
        summary.users_by_identity[plan.identity] += 1
        summary.devices_by_platform.update(kinds)
        summary.multi_device_users += len(kinds) > 1
        summary.opted_out_users += plan.opt_out_at >= 0
        summary.opted_back_in_users += plan.opt_in_at >= 0
    audiences = plan_audiences(plans, seed, now_ms)

    # A heap of (time, source): source >= 0 is a position in plans, -1 the audience list.
    # Ties go to audiences first, then to the lower user index: a total, reproducible order.
    streams = [user_batches(plan, seed, now_ms, summary, push_share) for plan in plans]
    taken = [0] * len(plans)
    heap = [(plan.starts[0], i) for i, plan in enumerate(plans)]
    if audiences:
        heap.append((audiences[0][0], -1))
    heapq.heapify(heap)
    next_audience = 0
    while heap:
        _time, source = heapq.heappop(heap)
        if source < 0:
            record = audiences[next_audience][1]
            count_audience(record, summary)
            yield record
            next_audience += 1
            if next_audience < len(audiences):
                heapq.heappush(heap, (audiences[next_audience][0], -1))
            continue
        yield next(streams[source])
        taken[source] += 1
        starts = plans[source].starts
        if taken[source] < len(starts):
            heapq.heappush(heap, (starts[taken[source]], source))
        else:
            streams[source] = None  # type: ignore[call-overload]  # free the finished user
    for record in plan_erasures(plans, erasures, seed, now_ms) if erasures else ():
        summary.erasure_requests += 1
        yield record
