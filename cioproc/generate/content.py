"""What one generated event, attribute change or device looks like (pass 3 of the generator,
:mod:`cioproc.generate.batches`): custom events, screen views, purchases, attribute values,
device information and push tokens, drawn from a user's random stream."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from cioproc.generate import catalog as C
from cioproc.generate.draw import Weighted, int64, uuid
from cioproc.generate.plan import UserPlan

CUSTOM_EVENTS = Weighted([(event[:3], event[3]) for event in C.CUSTOM_EVENTS])
SCREENS = Weighted(C.SCREENS)


class EventContent:
    """The content builders of :class:`cioproc.generate.batches.UserBatches` (it sets these)."""

    plan: UserPlan
    rng: random.Random
    attributes: dict[str, Any]
    session: tuple[int, str, int]
    spell: Callable[[str], str]
    push_action: tuple[bool, str] | None

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


def push_token(rng: random.Random, kind: str) -> str:
    """An APNs device token (64 hex digits) or an FCM registration token."""
    if kind == "iOS":
        return f"{rng.getrandbits(256):064x}"
    return f"{rng.getrandbits(88):022x}:APA91b{rng.getrandbits(512):0128x}"


def speller(style: str) -> Callable[[str], str]:
    """How a user spells reserved attribute names: $FirstName, $firstname, $FIRSTNAME or $Firstname."""
    if style == "lower":
        return str.lower
    if style == "upper":
        return lambda name: "$" + name[1:].upper()
    if style == "title":
        return lambda name: "$" + name[1:].capitalize()
    return lambda name: name
