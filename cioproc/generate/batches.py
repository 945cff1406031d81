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
from collections.abc import Callable, Iterator
from typing import Any

from cioproc.generate import catalog as C
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
CUSTOM_EVENTS = Weighted([(event[:3], event[3]) for event in C.CUSTOM_EVENTS])
SCREENS = Weighted(C.SCREENS)
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


class UserBatches:
    """A user's evolving state while their batches are built, one at a time."""

    def __init__(self, plan: UserPlan, rng: random.Random, now_ms: int):
        self.plan = plan
        self.rng = rng
        self.now_ms = now_ms
        self.spell = _speller(SPELLINGS.pick(rng))
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
            action = (True, _push_token(rng, kind))
        elif token is None:  # turned off for good
            return
        else:
            roll = rng.random()
            if roll < PUSH_OFF_SHARE:
                action = (False, token)
            elif roll < PUSH_OFF_SHARE + TOKEN_ROTATION_SHARE:
                action = (True, _push_token(rng, kind))
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

    def _event(self, event_type: str, t: int, b: int, deleted: list[str]) -> dict[str, Any]:
        rng = self.rng
        session_id, session_uuid, session_start = self.session
        data: dict[str, Any] = {
            "timestamp_unixtime_ms": t,
            "event_id": int64(rng),
            "source_message_id": uuid(rng),
            "session_id": session_id,
            "session_uuid": session_uuid,
            "session_start_unixtime_ms": session_start,
            "custom_attributes": None,
        }
        if event_type == "custom_event":
            name, custom_type, attribute_kind = CUSTOM_EVENTS.pick(rng)
            data["event_name"] = name
            data["custom_event_type"] = custom_type
            data["custom_attributes"] = self._event_attributes(attribute_kind)
        elif event_type == "screen_view":
            data["screen_name"] = SCREENS.pick(rng)
            data["activity_type"] = "activity_started"
            if rng.random() < 0.3:
                data["custom_attributes"] = {"referrer": rng.choice(("push", "deeplink", "organic", "email"))}
        elif event_type == "session_end":
            data["session_duration_ms"] = t - session_start
        elif event_type == "opt_out":
            data["is_opted_out"] = b == self.plan.opt_out_at
        elif event_type == "user_identity_change":
            identity = {"identity_type": "customer_id", "identity": self.plan.customer_id}
            data["new"] = {**identity, "timestamp_unixtime_ms": t, "created_this_batch": True}
            data["old"] = None
        elif event_type == "user_attribute_change":
            data.update(self._change_attribute(deleted))
        elif event_type == "commerce_event":
            data.update(self._purchase())
        elif event_type == "push_registration" and self.push_action is not None:
            data["register"], data["registration_token"] = self.push_action
        elif event_type == "application_state_transition":
            data["application_transition_type"] = rng.choice(("application_background", "application_foreground"))
            data["is_first_run"] = False
        return {"event_type": event_type, "data": data}

    def _purchase(self) -> dict[str, Any]:
        rng = self.rng
        sku, product, category, price = rng.choice(C.PRODUCTS)
        quantity = rng.randint(1, 3)
        return {
            "event_name": "eCommerce - Purchase",
            "custom_event_type": "purchase",
            "currency_code": "USD",
            "product_action": {
                "action": "purchase",
                "transaction_id": f"T-{rng.getrandbits(32):08x}",
                "total_amount": round(float(price) * quantity, 2),
                "products": [
                    {"id": sku, "name": product, "category": category, "price": float(price), "quantity": quantity}
                ],
            },
        }

    def _event_attributes(self, kind: str) -> dict[str, str] | None:
        rng = self.rng
        if kind == "product":
            sku, name, category, price = rng.choice(C.PRODUCTS)
            return {"product_id": sku, "product_name": name, "category": category, "price": price}
        if kind == "search":
            return {"query": rng.choice(C.SEARCH_TERMS), "results": str(rng.randint(0, 120))}
        if kind == "cart":
            return {"items": str(rng.randint(1, 6)), "cart_value": f"{rng.uniform(10, 400):.2f}"}
        if kind == "order":
            order_id = f"O-{rng.randint(100000, 999999)}"
            return {"order_id": order_id, "revenue": f"{rng.uniform(10, 400):.2f}", "currency": "USD"}
        if kind == "video":
            return {"title": rng.choice(C.VIDEOS), "position_s": str(rng.randint(0, 600))}
        if kind == "level":
            return {"level": str(rng.randint(1, 40)), "score": str(rng.randint(0, 99999))}
        if kind == "pref":
            return {"push_enabled": rng.choice(("true", "false"))}
        if kind == "place":
            return {"store_id": f"S{rng.randint(100, 999)}", "distance_km": f"{rng.uniform(0.2, 25):.1f}"}
        return None

    def _change_attribute(self, deleted: list[str]) -> dict[str, Any]:
        """Change, add or delete one attribute; a deletion is also listed in ``deleted``."""
        rng, attrs = self.rng, self.attributes
        choice = rng.random()
        new: Any
        if choice < 0.2 and ("app_theme" in attrs or "loyalty_points" in attrs):
            name = "app_theme" if "app_theme" in attrs else "loyalty_points"
            old = attrs.pop(name)
            deleted.append(name)
            return {"user_attribute_name": name, "new": None, "old": old, "deleted": True, "is_new_attribute": False}
        if choice < 0.45:
            name, new = "favorite_categories", rng.sample(C.CATEGORIES, rng.randint(1, 4))
        elif choice < 0.7:
            name, new = "plan_tier", rng.choice(C.PLAN_TIERS)
        elif choice < 0.85:
            name, new = self.spell("$City"), rng.choice(C.PLACES)[0]
        else:
            name, new = "last_purchase_category", rng.choice(C.CATEGORIES)
        old = attrs.get(name)
        attrs[name] = new
        return {
            "user_attribute_name": name,
            "new": list(new) if isinstance(new, list) else new,
            "old": list(old) if isinstance(old, list) else old,
            "deleted": False,
            "is_new_attribute": old is None,
        }

    # ------------------------------------------------------------ set up once per user

    def _initial_attributes(self) -> dict[str, Any]:
        rng, plan, spell = self.rng, self.plan, self.spell
        city, state, zip_code, country = rng.choice(C.PLACES)
        attrs: dict[str, Any] = {spell("$FirstName"): plan.first_name, spell("$LastName"): plan.last_name}
        if rng.random() < 0.8:
            attrs[spell("$City")] = city
            if state:
                attrs[spell("$State")] = state
            attrs[spell("$Zip")] = zip_code
            attrs[spell("$Country")] = country
        if rng.random() < 0.6:
            attrs[spell("$Gender")] = rng.choice(("F", "M", "X"))
        if rng.random() < 0.5:
            attrs[spell("$Age")] = str(rng.randint(18, 79))
        if rng.random() < 0.25:
            attrs[spell("$Mobile")] = f"+1555{rng.randint(1_000_000, 9_999_999)}"
        attrs["plan_tier"] = rng.choice(C.PLAN_TIERS)
        if rng.random() < 0.6:
            attrs["favorite_categories"] = rng.sample(C.CATEGORIES, rng.randint(1, 3))
        attrs["newsletter_opt_in"] = rng.choice(("true", "false"))
        if rng.random() < 0.4:
            attrs["app_theme"] = rng.choice(C.THEMES)
        if rng.random() < 0.3:
            attrs["loyalty_points"] = str(rng.randint(0, 5000))
        return attrs

    def _device_info(self, kind: str) -> dict[str, Any]:
        rng = self.rng
        manufacturer, models, versions = C.DEVICES[kind]
        model = rng.choice(models)
        info: dict[str, Any] = {
            "platform": kind,
            "device": model,
            "device_model": model,
            "device_manufacturer": manufacturer or None,
            "os_version": rng.choice(versions),
            "locale_language": "en",
            "locale_country": "US",
            "timezone_offset": rng.choice((-8, -5, 0, 1, 10)),
            "is_tablet": model.startswith("iPad"),
        }
        device_id = self.plan.device_ids[kind]
        if kind in ("iOS", "tvOS"):
            info["ios_idfv"] = device_id
            info["att_authorization_status"] = rng.choice(("authorized", "denied", "not_determined"))
        elif kind == "Android":
            info["android_uuid"] = device_id.replace("-", "")[:16]
            info["android_advertising_id"] = device_id
        elif kind == "web":
            info["http_header_user_agent"] = rng.choice(C.USER_AGENTS)
        elif kind == "roku":
            info["roku_advertising_id"] = device_id
        elif kind == "fire_tv":
            info["fire_advertising_id"] = device_id
        return info


def _push_token(rng: random.Random, kind: str) -> str:
    """An APNs device token (64 hex digits) or an FCM registration token."""
    if kind == "iOS":
        return f"{rng.getrandbits(256):064x}"
    return f"{rng.getrandbits(88):022x}:APA91b{rng.getrandbits(512):0128x}"


def _shape(identities: Any) -> str:
    return "array" if isinstance(identities, list) else "map" if isinstance(identities, dict) else "null"


def _speller(style: str) -> Callable[[str], str]:
    """How a user spells reserved attribute names: $FirstName, $firstname, $FIRSTNAME or $Firstname."""
    if style == "lower":
        return str.lower
    if style == "upper":
        return lambda name: "$" + name[1:].upper()
    if style == "title":
        return lambda name: "$" + name[1:].capitalize()
    return lambda name: name
