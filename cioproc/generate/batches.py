"""Pass 3 of the generator: build one user's event batches, in order, from their plan.

:class:`UserBatches` carries what evolves between a user's batches (user attributes,
the current session, which device types have been seen) and builds one batch at a time,
so only the users' current state is ever in memory.

A batch lists its events in time order: ``session_start`` (when it opens a session),
``first_run`` (a device type's first batch), ``user_identity_change`` (the identity upgrade), then custom events,
screen views and the rest with an ``opt_out`` among them if planned, and ``session_end``.
Half the batches use the inbound form (``user_identities`` as a map), half the outbound
form (an array of ``{identity_type, identity, timestamp_unixtime_ms}``, plus
``schema_version`` and ``unique_id``, and in a third of them the MPID as a string).

Push devices (``push_share`` > 0, off by default so the default output never changes): that
share of iOS and Android devices registers for push in its first batch (a
``push_registration`` in place of a custom event or screen view), then carries the token
as ``device_info.push_token``; now and then a device's token rotates (a new registration)
or the user turns push off (``register: false``, no token any more). Those choices come
from a random stream of their own.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from cioproc.generate import catalog as C
from cioproc.generate.content import EventContent, push_token, speller
from cioproc.generate.draw import Weighted, int64, uuid
from cioproc.generate.model import Record, Summary, normalise_event_name
from cioproc.generate.plan import NO_IDENTITY, UPGRADE, UserPlan

FILLERS = Weighted(
    [
        ("custom_event", 0.56),
        ("screen_view", 0.32),
        ("commerce_event", 0.03),
        ("application_state_transition", 0.03),
        ("user_attribute_change", 0.06),
    ]
)
SPELLINGS = Weighted(C.SPELLING_STYLES)
NEW_SESSION_SHARE = 0.55  # a later batch on the same device opens a new session
_IP_PREFIXES = ("192.0.2", "198.51.100", "203.0.113")  # documentation ranges


PUSH_PLATFORMS = ("iOS", "Android")
TOKEN_ROTATION_SHARE = 0.05  # of a registered device's later batches
PUSH_OFF_SHARE = 0.02


def user_batches(
    plan: UserPlan, seed: int, now_ms: int, summary: Summary, push_share: float = 0.0
) -> Iterator[Record]:
    """The user's batches, in order; ``summary`` counts each as it is built."""
    user = UserBatches(plan, random.Random(f"{seed}:{plan.index}:events"), now_ms)
    if push_share > 0:
        user.enable_push(random.Random(f"{seed}:{plan.index}:push"), push_share)
    for b in range(len(plan.sizes)):
        yield user.batch(b, summary)


class UserBatches(EventContent):
    """A user's evolving state while their batches are built, one at a time."""

    def __init__(self, plan: UserPlan, rng: random.Random, now_ms: int):
        self.plan = plan
        self.rng = rng
        self.now_ms = now_ms
        self.spell = speller(SPELLINGS.pick(rng))
        self.attributes = self._initial_attributes()
        self.device_info = {kind: self._device_info(kind) for kind in plan.device_ids}
        self.seen_devices: set[str] = set()
        self.session: tuple[int, str, int] = (0, "", 0)  # (id, uuid, start ms)
        self.next_opens_session = True
        self.ip = f"{rng.choice(_IP_PREFIXES)}.{rng.randint(1, 254)}"
        self.push_rng: random.Random | None = None
        self.push_devices: set[str] = set()  # device types that will register for push
        self.push_tokens: dict[str, str | None] = {}  # device type -> its current push token
        self.push_action: tuple[bool, str] | None = None  # this batch's registration, if any

    def enable_push(self, rng: random.Random, share: float) -> None:
        """Let ``share`` of this user's iOS and Android devices register for push."""
        self.push_rng = rng
        self.push_devices = {kind for kind in sorted(self.plan.device_ids) if kind in PUSH_PLATFORMS
                             and rng.random() < share}

    # ------------------------------------------------------------ one batch

    def batch(self, b: int, summary: Summary) -> Record:
        rng, plan = self.rng, self.plan
        size = plan.sizes[b]
        kind = plan.devices[b]
        order, opens_session = self._event_types(b, size, kind)

        t = plan.starts[b]
        if opens_session:
            self.session = (int64(rng), uuid(rng), t)
        deleted: list[str] = []
        events = []
        gap = plan.gap_ms
        for position, event_type in enumerate(order):
            if position:
                t += 1 + int(rng.random() * gap)
            events.append(self._event(event_type, t, b, deleted))
        if len(events) != size or t > self.now_ms:
            raise AssertionError("batch does not match its plan")  # an invariant of plan.py

        outbound = rng.random() < 0.5
        bound = plan.starts[b + 1] if b + 1 < len(plan.sizes) else self.now_ms
        platform_os, _share, channel = C.PLATFORMS[kind]
        value: dict[str, Any] = {
            "events": events,
            "device_info": self._device_info_now(kind),
            "application_info": {
                "application_name": C.APPLICATION_NAME,
                "application_version": "4.12.0",
                "application_build_number": "4120",
                "package": C.APPLICATION_PACKAGE,
                "os": platform_os,
            },
            "user_attributes": {k: list(v) if isinstance(v, list) else v for k, v in self.attributes.items()},
            "deleted_user_attributes": deleted or None,
            "user_identities": self._identities(b, outbound),
            "source_request_id": uuid(rng),
            "environment": "production",
            "ip": self.ip,
            "source_info": {"channel": channel, "is_historical": False},
            "mp_deviceid": plan.device_ids[kind],
            "sdk_version": "8.27.1" if channel == "native" else "2.30.0",
            "timestamp_unixtime_ms": max(t, min(bound, t + rng.randint(20, 1500))),  # received at
            "batch_id": int64(rng),
            "mpid": plan.mpid,
        }
        string_mpid = False
        if outbound:
            value["schema_version"] = 2
            value["unique_id"] = uuid(rng)
            if rng.random() < 0.33:
                value["mpid"] = str(plan.mpid)
                string_mpid = True
        self._count(summary, b, order, events, t, deleted, _shape(value["user_identities"]), string_mpid)
        return Record("batches", str(plan.mpid), value)

    def _event_types(self, b: int, size: int, kind: str) -> tuple[list[str], bool]:
        """The event types of batch ``b`` in order (exactly ``size``), and whether it opens a session."""
        rng, plan = self.rng, self.plan
        # A session spans one or more batches of one device; whether the next batch opens
        # a new one is decided now, so this batch knows whether to close its session.
        opens = self.next_opens_session
        last = b + 1 == len(plan.sizes)
        self.next_opens_session = not last and (plan.devices[b + 1] != kind or rng.random() < NEW_SESSION_SHARE)
        closes = self.next_opens_session or (last and rng.random() < 0.6)

        first_run = kind not in self.seen_devices
        self.seen_devices.add(kind)
        upgrade = b == plan.upgrade_at
        opt = b in (plan.opt_out_at, plan.opt_in_at)
        room = size - first_run - upgrade - opt  # plan.py guarantees room >= 0
        start = opens and room > 0
        room -= start
        end = closes and room > 0
        room -= end
        fillers = []
        changed = False
        for _ in range(room):
            filler = FILLERS.pick(rng)
            if filler == "user_attribute_change":  # at most one per batch
                filler = "custom_event" if changed else filler
                changed = True
            fillers.append(filler)
        if opt:
            fillers.insert(rng.randint(0, len(fillers)), "opt_out")
        order = ["session_start"] if start else []
        if first_run:
            order.append("first_run")
        if upgrade:
            order.append("user_identity_change")
        order += fillers
        if end:
            order.append("session_end")
        self._plan_push(kind, order)
        return order, opens

    def _plan_push(self, kind: str, order: list[str]) -> None:
        """Put this batch's push registration, if any, in place of a custom event or screen view."""
        self.push_action = None
        rng = self.push_rng
        if rng is None or kind not in self.push_devices:
            return
        slots = [i for i, event_type in enumerate(order) if event_type in ("custom_event", "screen_view")]
        if not slots:
            return
        token = self.push_tokens.get(kind, "")
        if token == "":  # never registered: register now
            action = (True, push_token(rng, kind))
        elif token is None:  # turned off for good
            return
        else:
            roll = rng.random()
            if roll < PUSH_OFF_SHARE:
                action = (False, token)
            elif roll < PUSH_OFF_SHARE + TOKEN_ROTATION_SHARE:
                action = (True, push_token(rng, kind))
            else:
                return
        order[slots[0]] = "push_registration"
        self.push_action = action
        self.push_tokens[kind] = action[1] if action[0] else None

    def _device_info_now(self, kind: str) -> dict[str, Any]:
        info = dict(self.device_info[kind])
        token = self.push_tokens.get(kind)
        if token:
            info["push_token"] = token
        return info

    def _count(self, summary: Summary, b: int, order: list[str], events: list[dict[str, Any]], t: int,
               deleted: list[str], shape: str, string_mpid: bool) -> None:  # fmt: skip
        plan = self.plan
        summary.batches += 1
        summary.events += len(order)
        summary.events_by_type.update(order)
        if plan.has_customer_id(b) or plan.has_email():
            summary.forwardable_events_by_type.update(order)
        first = plan.starts[b]
        summary.first_event_ms = first if summary.first_event_ms is None else min(summary.first_event_ms, first)
        summary.last_event_ms = t if summary.last_event_ms is None else max(summary.last_event_ms, t)
        if b == 0 and any(isinstance(v, list) for v in self.attributes.values()):
            summary.users_with_list_attributes += 1
        summary.batches_with_deleted_attributes += bool(deleted)
        for event in events:
            if event["event_type"] == "custom_event":
                name = event["data"]["event_name"]
                summary.names_needing_normalisation += normalise_event_name(name) != name
        summary.batches_by_identity_shape[shape] += 1
        summary.string_mpid_batches += string_mpid

    # ------------------------------------------------------------ parts of a batch

    def _identities(self, b: int, outbound: bool) -> Any:
        plan = self.plan
        pairs: list[tuple[str, str, int]] = []  # (identity type, value, since ms)
        if plan.has_customer_id(b):
            since = plan.starts[plan.upgrade_at] if plan.identity == UPGRADE else plan.starts[0]
            pairs.append(("customer_id", plan.customer_id, since))
        if plan.has_email():
            pairs.append(("email", plan.email, plan.starts[0]))
        if plan.identity == NO_IDENTITY:
            style = plan.index % 4  # stable per user: empty, null, a phone number, another id
            if style == 1:
                return None
            if style == 2:
                pairs.append(("mobile_number", f"+1555{plan.index % 10_000_000:07d}", plan.starts[0]))
            elif style == 3:
                pairs.append(("other", f"anon-{plan.device_ids[plan.devices[0]][:8]}", plan.starts[0]))
        if not outbound:
            return {kind: value for kind, value, _ in pairs}
        return [
            {
                "identity_type": kind,
                "identity": value,
                "timestamp_unixtime_ms": since,
                "created_this_batch": since == plan.starts[b],
            }
            for kind, value, since in pairs
        ]


def _shape(identities: Any) -> str:
    return "array" if isinstance(identities, list) else "map" if isinstance(identities, dict) else "null"

