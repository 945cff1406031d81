"""Microbenchmark: the mapping alone versus JSON decoding of the same batches.

Run: ``python bench/mapping.py [--batches N] [--repeats R] [--users U]``.

Realistic batches (shaped like mParticle's sample batch: device_info, application_info,
consent, ~8 events with device_current_state, a dozen user attributes) are generated with
a fixed seed and serialised once. Then, repeated R times, on one core, each batch is
decoded and mapped in turn as the processor does, timing the two steps separately:

- decode: ``orjson.loads`` of the batch (the baseline);
- mapping: validation of the decoded batch plus ``map_batch`` with the user's state carried
  from batch to batch (excludes JSON decoding).

For comparison it also times decoding all batches in a row, mapping all pre-decoded batches
in a row (their objects no longer in the CPU cache: a worst case) and msgpack encoding of
the commands and states. Prints medians, events per second and the ratio mapping / decode
(target: at most 1.0). The garbage collector is paused while timing, as ``timeit`` does.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cioproc.mapping import map_batch  # noqa: E402
from cioproc.mapping.batch import batch_from_object  # noqa: E402
from cioproc.models.commands import encode_command  # noqa: E402
from cioproc.models.settings import MappingSettings  # noqa: E402
from cioproc.models.state import UserState, encode_state  # noqa: E402

EVENT_NAMES = [
    "Add To Cart", "View Product", "Search", "Checkout Started", "Share", "Play Video",
    "  Rate App ", "Open Notification", "Apply Coupon", "Wishlist Add",
]
SCREENS = ["Home", "Product Detail", "Cart", "Settings", "Search Results", "Profile"]
PLATFORMS = [("iOS", "IOS"), ("Android", "Android"), ("web", "MobileWeb")]
CITIES = ["Berlin", "Lisbon", "Austin", "Osaka", "Lagos", "Lima"]


def _device_state(rng: random.Random) -> dict[str, Any]:
    return {
        "time_since_start_ms": rng.randint(100, 90_000),
        "battery_level": rng.random(),
        "data_connection_type": rng.choice(["wifi", "mobile", "offline"]),
        "data_connection_type_detail": None,
        "gps_state": False,
        "total_system_memory_usage_bytes": rng.randint(10**9, 4 * 10**9),
        "disk_space_free_bytes": rng.randint(10**8, 10**11),
        "external_disk_space_free_bytes": 0,
        "cpu": str(rng.randint(1, 200)),
        "system_memory_available_bytes": rng.randint(10**7, 10**9),
        "system_memory_low": False,
        "system_memory_threshold_bytes": 150994944,
        "application_memory_available_bytes": rng.randint(10**6, 10**7),
        "application_memory_max_bytes": 402653184,
        "application_memory_total_bytes": rng.randint(10**6, 10**8),
        "device_orientation": "portrait",
        "status_bar_orientation": "portrait",
    }


def _event(rng: random.Random, event_type: str, ts: int, session: str, sid: int) -> dict:
    data: dict[str, Any] = {
        "timestamp_unixtime_ms": ts,
        "event_id": rng.getrandbits(63),
        "source_message_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "session_id": sid,
        "session_uuid": session,
        "session_start_unixtime_ms": ts - rng.randint(0, 60_000),
        "event_start_unixtime_ms": ts,
        "custom_attributes": None,
        "device_current_state": _device_state(rng),
        "is_goal_defined": False,
        "lifetime_value_change": 0,
        "lifetime_value_attribute_name": None,
        "data_connection_type": None,
        "event_num": 0,
        "view_controller": None,
        "is_main_thread": True,
        "canonical_name": None,
        "event_system_notification_info": None,
    }
    if event_type == "custom_event":
        data["event_name"] = rng.choice(EVENT_NAMES)
        data["custom_event_type"] = rng.choice(["navigation", "transaction", "other"])
        data["custom_flags"] = {}
        data["custom_attributes"] = {
            "product_id": f"SKU-{rng.randint(1000, 9999)}",
            "price": f"{rng.uniform(1, 500):.2f}",
            "category": rng.choice(["shoes", "books", "games", "music"]),
            "quantity": str(rng.randint(1, 5)),
        }
    elif event_type == "screen_view":
        data["screen_name"] = rng.choice(SCREENS)
        data["activity_type"] = "activity_started"
        data["custom_flags"] = {}
        data["custom_attributes"] = {"referrer": rng.choice(SCREENS)}
    elif event_type == "session_end":
        data["session_duration_ms"] = rng.randint(1000, 600_000)
    elif event_type == "opt_out":
        data["is_opted_out"] = True
    return {"event_type": event_type, "data": data}


def realistic_batch(rng: random.Random, mpid: int, user: int, now_ms: int) -> dict[str, Any]:
    """One mParticle outbound batch for user ``user``: ~8 events, a dozen user attributes."""
    platform, os_name = PLATFORMS[user % len(PLATFORMS)]
    session = str(uuid.UUID(int=rng.getrandbits(128))).upper()
    sid = rng.getrandbits(62)
    ts = now_ms - rng.randint(0, 3_600_000)
    kinds = ["session_start"] + ["custom_event"] * rng.randint(3, 5)
    kinds += ["screen_view"] * rng.randint(1, 2) + ["session_end"]
    if rng.random() < 0.01:
        kinds.insert(1, "opt_out")
    events = []
    for kind in kinds:
        ts += rng.randint(200, 20_000)
        events.append(_event(rng, kind, ts, session, sid))
    identities = [{"identity_type": "email", "identity": f"user{user}@example.com",
                   "timestamp_unixtime_ms": now_ms - 86_400_000}]
    if user % 3:
        identities.append({"identity_type": "customer_id", "identity": f"C{user:08d}",
                           "timestamp_unixtime_ms": now_ms - 86_400_000})
    return {
        "events": events,
        "device_info": {
            "platform": platform, "os_version": "17.2", "device_model": "x86_64",
            "device_manufacturer": "Apple" if platform == "iOS" else "Google",
            "screen_height": 2732, "screen_width": 2048, "locale_language": "en",
            "locale_country": "US", "timezone_offset": -4, "is_tablet": False,
            "ios_idfv": str(uuid.UUID(int=rng.getrandbits(128))), "limit_ad_tracking": False,
            "http_header_user_agent": "Mozilla/5.0 (iPad; CPU OS 17_2 like Mac OS X)",
        },
        "application_info": {
            "application_name": "Shop", "application_version": "4.2.1",
            "package": "com.example.shop", "os": os_name,
        },
        "consent_state": {"gdpr": {}, "ccpa": {"data_sale_opt_out": {
            "consented": True, "timestamp_unixtime_ms": now_ms - 10**9}}},
        "user_attributes": {
            "$FirstName": f"First{user}", "$LastName": f"Last{user}",
            "$City": CITIES[user % len(CITIES)], "$Country": "US", "$Zip": f"{user % 99999:05d}",
            "$Gender": "fmx"[user % 3], "$Age": str(20 + user % 50),
            "plan": "premium" if user % 4 == 0 else "free",
            "favourite_genres": ["jazz", "rock"] if user % 2 else ["pop"],
            "last_purchase_amount": f"{(user * 7) % 500}.00",
            "loyalty_points": str((user * 13) % 10_000), "newsletter": "true",
        },
        "deleted_user_attributes": [],
        "user_identities": identities,
        "environment": "production",
        "source_info": {"channel": "native", "is_historical": False},
        "mp_deviceid": str(uuid.UUID(int=rng.getrandbits(128))),
        "timestamp_unixtime_ms": ts + 500,
        "batch_id": rng.getrandbits(62),
        "mpid": mpid,
        "sdk_version": "8.20.0",
    }


def generate(batches: int, users: int, seed: int = 7) -> list[bytes]:
    """``batches`` serialised batches for ``users`` users (several batches per user)."""
    rng = random.Random(seed)
    mpids = [rng.getrandbits(63) - (1 << 62) for _ in range(users)]
    now_ms = 1_735_689_600_000
    out = []
    for i in range(batches):
        user = rng.randrange(users)
        out.append(orjson.dumps(realistic_batch(rng, mpids[user], user, now_ms + i * 1000)))
    return out


def _paused_gc(function, *args):  # noqa: ANN202
    gc.collect()
    gc.disable()  # as timeit does: collector pauses would land on whichever step runs then
    try:
        return function(*args)
    finally:
        gc.enable()


def _pipeline(raws: list[bytes], settings: MappingSettings) -> tuple[float, float, list]:
    """Decode then map each batch, as the processor does; time the two steps separately."""
    clock = time.perf_counter
    loads = orjson.loads
    states: dict[str, UserState] = {}
    results = []
    decoding = mapping = 0.0
    for raw in raws:
        start = clock()
        obj = loads(raw)
        decoded = clock()
        batch = batch_from_object(obj)
        result = map_batch(batch, states.get(batch.mpid), settings)
        states[batch.mpid] = result.state
        mapped = clock()
        decoding += decoded - start
        mapping += mapped - decoded
        results.append(result)
    return decoding, mapping, results


def _timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def _decode(raws: list[bytes]) -> None:
    loads = orjson.loads
    for raw in raws:
        loads(raw)


def _map(objects: list[Any], settings: MappingSettings) -> None:
    states: dict[str, UserState] = {}
    for obj in objects:
        batch = batch_from_object(obj)
        result = map_batch(batch, states.get(batch.mpid), settings)
        states[batch.mpid] = result.state


def _encode(results: list) -> None:
    for result in results:
        for command in result.commands:
            encode_command(command)
        encode_state(result.state)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--users", type=int, default=300)
    args = parser.parse_args(argv)
    settings = MappingSettings(send_created_at=True, audience_attribute_per_segment=True)

    raws = generate(args.batches, args.users)
    objects = [orjson.loads(raw) for raw in raws]
    events = sum(len(obj["events"]) for obj in objects)
    attributes = sum(len(obj["user_attributes"]) for obj in objects)
    size = sum(len(raw) for raw in raws)

    decode, mapping, decode_only, cold, encode = [], [], [], [], []
    commands = 0
    for _ in range(args.repeats):
        decoding, mapped, results = _paused_gc(_pipeline, raws, settings)
        decode.append(decoding)
        mapping.append(mapped)
        decode_only.append(_paused_gc(_timed, _decode, raws))
        cold.append(_paused_gc(_timed, _map, objects, settings))
        encode.append(_paused_gc(_timed, _encode, results))
        commands = sum(len(r.commands) for r in results)

    def line(label: str, samples: list[float]) -> str:
        median = statistics.median(samples)
        return (
            f"{label:<34} median {median * 1000:8.1f} ms  "
            f"{events / median:>12,.0f} events/s  {args.batches / median:>10,.0f} batches/s"
        )

    print(
        f"{args.batches} batches, {events} events ({events / args.batches:.1f}/batch), "
        f"{attributes / args.batches:.1f} user attributes/batch, "
        f"{size / args.batches / 1024:.1f} KiB/batch, {args.users} users, "
        f"{commands} commands; {args.repeats} repeats, one core"
    )
    print(line("json decode (orjson.loads)", decode))
    print(line("mapping (validate + map_batch)", mapping))
    ratio = statistics.median(m / d for m, d in zip(mapping, decode, strict=True))
    print(f"ratio mapping / json decode: median {ratio:.2f} (target <= 1.00)")
    print("for comparison, each over all batches in a row:")
    print(line("  json decode alone", decode_only))
    print(line("  mapping of pre-decoded batches", cold))
    print(line("  msgpack encoding of the results", encode))
    cold_ratio = statistics.median(m / d for m, d in zip(cold, decode_only, strict=True))
    print(f"  ratio (pre-decoded objects are cache-cold: a worst case): median {cold_ratio:.2f}")


if __name__ == "__main__":
    main()
