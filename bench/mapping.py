"""Microbenchmark: the mapping alone versus JSON decoding of the same batches.

Run: ``python bench/mapping.py [--batches N] [--repeats R] [--users U]``.

Realistic batches (shaped like mParticle's sample batch: device_info, application_info,
consent, ~8 events with device_current_state, a dozen user attributes) are generated with
a fixed seed and serialised once: each user's first batch, then N batches of random users
in time order per user. Repeated R times, on one core, each batch is decoded and mapped in
turn as the processor does, timing the two steps separately:

- decode: ``orjson.loads`` of the batch (the baseline);
- mapping: validation of the decoded batch plus ``map_batch`` with the user's state carried
  from batch to batch (excludes JSON decoding).

The main figure is the steady state (every user seen before, as in a running processor).
Also shown: the first batch of each user (no state: a full identify), the msgpack encoding
of the commands and states, and mParticle's reference sample batch (only 2 of its 14
events are forwarded, against 5.5 of 7.5 in the generated ones). Prints medians, events
per second and the ratio mapping / decode (target: at most 1.0). The garbage collector is
paused while timing, as ``timeit`` does.

Exit status 1 when the steady-state ratio is over ``--target`` (default 1.0), so that
``make bench-mapping`` fails when the mapping gets slower than the decoding it follows.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from cioproc.mapping import map_batch  # noqa: E402
from cioproc.mapping.batch import batch_from_object  # noqa: E402
from cioproc.models.commands import encode_command  # noqa: E402
from cioproc.models.settings import MappingSettings  # noqa: E402
from cioproc.models.state import UserState, encode_state  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "mapping" / "mparticle-eventsapi-sample.json"
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


def _compact_event(rng: random.Random, event_type: str, ts: int) -> dict:
    """An event as SDKs send most of them: no device state snapshot, session or null fields."""
    data: dict[str, Any] = {
        "timestamp_unixtime_ms": ts,
        "event_id": rng.getrandbits(63),
    }
    if event_type == "custom_event":
        data["event_name"] = rng.choice(EVENT_NAMES)
        data["custom_attributes"] = {
            "product_id": f"SKU-{rng.randint(1000, 9999)}",
            "price": f"{rng.uniform(1, 500):.2f}",
        }
    elif event_type == "screen_view":
        data["screen_name"] = rng.choice(SCREENS)
    elif event_type == "session_end":
        data["session_duration_ms"] = rng.randint(1000, 600_000)
    elif event_type == "opt_out":
        data["is_opted_out"] = True
    return {"event_type": event_type, "data": data}


def realistic_batch(
    rng: random.Random, mpid: int, user: int, start_ms: int, points: int, compact: bool = False
) -> dict[str, Any]:
    """One mParticle outbound batch for user ``user``: ~8 events, a dozen user attributes.

    ``compact``: exactly 8 events without device state snapshots and 14 user attributes
    (about 2.3 KB, the batches of issue 13's benchmark)."""
    platform, os_name = PLATFORMS[user % len(PLATFORMS)]
    session = str(uuid.UUID(int=rng.getrandbits(128))).upper()
    sid = rng.getrandbits(62)
    ts = start_ms
    if compact:
        screens = rng.randint(1, 2)
        kinds = ["session_start"] + ["custom_event"] * (6 - screens) + ["screen_view"] * screens + ["session_end"]
        if rng.random() < 0.01:
            kinds[1] = "opt_out"
    else:
        kinds = ["session_start"] + ["custom_event"] * rng.randint(3, 5)
        kinds += ["screen_view"] * rng.randint(1, 2) + ["session_end"]
        if rng.random() < 0.01:
            kinds.insert(1, "opt_out")
    events = []
    for kind in kinds:
        ts += rng.randint(200, 20_000)
        events.append(_compact_event(rng, kind, ts) if compact else _event(rng, kind, ts, session, sid))
    identities = [{"identity_type": "email", "identity": f"user{user}@example.com",
                   "timestamp_unixtime_ms": start_ms - 86_400_000}]
    if user % 3:
        identities.append({"identity_type": "customer_id", "identity": f"C{user:08d}",
                           "timestamp_unixtime_ms": start_ms - 86_400_000})
    batch = {
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
            "consented": True, "timestamp_unixtime_ms": start_ms - 10**9}}},
        "user_attributes": {
            "$FirstName": f"First{user}", "$LastName": f"Last{user}",
            "$City": CITIES[user % len(CITIES)], "$Country": "US", "$Zip": f"{user % 99999:05d}",
            "$Gender": "fmx"[user % 3], "$Age": str(20 + user % 50),
            "plan": "premium" if user % 4 == 0 else "free",
            "favourite_genres": ["jazz", "rock"] if user % 2 else ["pop"],
            "last_purchase_amount": f"{(user * 7) % 500}.00",
            "loyalty_points": str(points), "newsletter": "true",
            **({"$Mobile": f"+1555{user:07d}", "app_theme": "dark" if user % 2 else "light"} if compact else {}),
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
    if compact:
        del batch["consent_state"]
        batch["device_info"] = {key: batch["device_info"][key] for key in ("platform", "os_version", "device_model")}
    return batch


def generate(batches: int, users: int, seed: int = 7, compact: bool = False) -> tuple[list[bytes], list[bytes]]:
    """Serialised batches: every user's first one, then ``batches`` more of random users.

    Each user's batches follow one another in time (minutes to hours apart); one in ten
    changes an attribute (loyalty points), so some identifies are due. ``compact``: see
    :func:`realistic_batch`.
    """
    rng = random.Random(seed)
    mpids = [rng.getrandbits(63) - (1 << 62) for _ in range(users)]
    clocks = [1_735_689_600_000 - rng.randint(0, 30 * 86_400_000) for _ in range(users)]
    points = [rng.randint(0, 10_000) for _ in range(users)]

    def next_batch(user: int) -> bytes:
        clocks[user] += rng.randint(60_000, 12 * 3_600_000)
        if rng.random() < 0.1:
            points[user] += rng.randint(1, 100)
        return orjson.dumps(realistic_batch(rng, mpids[user], user, clocks[user], points[user], compact))

    first = [next_batch(user) for user in range(users)]
    later = [next_batch(rng.randrange(users)) for _ in range(batches)]
    return first, later


def _paused_gc(function, *args):  # noqa: ANN202
    gc.collect()
    gc.disable()  # as timeit does: collector pauses would land on whichever step runs then
    try:
        return function(*args)
    finally:
        gc.enable()


def _pipeline(
    raws: list[bytes], states: dict[str, UserState], settings: MappingSettings
) -> tuple[float, float, int, dict[str, UserState]]:
    """Decode then map each batch, as the processor does; time the two steps separately.

    Freeing a batch's objects afterwards is left out of both (it is the same either way).
    """
    clock = time.perf_counter
    loads = orjson.loads
    states = dict(states)
    decoding = mapping = 0.0
    commands = 0
    for raw in raws:
        start = clock()
        obj = loads(raw)
        decoded = clock()
        batch = batch_from_object(obj)
        result = map_batch(batch, states.get(batch.mpid), settings)
        mapped = clock()
        states[batch.mpid] = result.state
        commands += len(result.commands)
        decoding += decoded - start
        mapping += mapped - decoded
        obj = batch = result = None
    return decoding, mapping, commands, states


def _encode(raws: list[bytes], states: dict[str, UserState], settings: MappingSettings) -> float:
    results = []
    for raw in raws:
        batch = batch_from_object(orjson.loads(raw))
        result = map_batch(batch, states.get(batch.mpid), settings)
        states[batch.mpid] = result.state
        results.append(result)
    start = time.perf_counter()
    for result in results:
        for command in result.commands:
            encode_command(command)
        encode_state(result.state)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--target", type=float, default=1.0,
                        help="highest steady-state ratio mapping / json decode that passes")
    args = parser.parse_args(argv)
    settings = MappingSettings(send_created_at=True, audience_attribute_per_segment=True)

    first, later = generate(args.batches, args.users)
    objects = [orjson.loads(raw) for raw in later]
    events = sum(len(obj["events"]) for obj in objects)
    first_events = sum(len(orjson.loads(raw)["events"]) for raw in first)
    attributes = sum(len(obj["user_attributes"]) for obj in objects)
    size = sum(len(raw) for raw in later)
    del objects
    known = _paused_gc(_pipeline, first, {}, settings)[3]  # every user seen once

    rows: dict[str, list[float]] = {key: [] for key in ("decode", "map", "new_decode", "new_map",
                                                          "encode")}
    commands = 0
    for _ in range(args.repeats):
        decoding, mapping, commands, _ = _paused_gc(_pipeline, later, known, settings)
        rows["decode"].append(decoding)
        rows["map"].append(mapping)
        decoding, mapping, _, _ = _paused_gc(_pipeline, first, {}, settings)
        rows["new_decode"].append(decoding)
        rows["new_map"].append(mapping)
        rows["encode"].append(_paused_gc(_encode, later, dict(known), settings))

    def line(label: str, samples: list[float], count: int, batches: int) -> str:
        median = statistics.median(samples)
        return (
            f"{label:<40} median {median * 1000:8.1f} ms  "
            f"{count / median:>12,.0f} events/s  {batches / median:>10,.0f} batches/s"
        )

    def ratio(mapped: list[float], decoded: list[float]) -> float:
        return statistics.median(m / d for m, d in zip(mapped, decoded, strict=True))

    print(
        f"{args.batches} batches of {args.users} known users: {events} events "
        f"({events / args.batches:.1f}/batch), {attributes / args.batches:.1f} user "
        f"attributes/batch, {size / args.batches / 1024:.1f} KiB/batch, {commands} commands; "
        f"{args.repeats} repeats, one core"
    )
    print(line("json decode (orjson.loads)", rows["decode"], events, args.batches))
    print(line("mapping (validate + map_batch)", rows["map"], events, args.batches))
    steady = ratio(rows["map"], rows["decode"])
    print(f"ratio mapping / json decode: median {steady:.2f} (target <= {args.target:.2f})")
    print(f"first batch of each of the {args.users} users (no state yet):")
    print(line("  json decode", rows["new_decode"], first_events, args.users))
    print(line("  mapping", rows["new_map"], first_events, args.users))
    print(f"  ratio mapping / json decode: median {ratio(rows['new_map'], rows['new_decode']):.2f}")
    print(line("msgpack encoding of commands and states", rows["encode"], events, args.batches))
    if SAMPLE.exists():  # mParticle's reference batch: 14 events, 2 of them forwarded
        sample = [orjson.dumps(orjson.loads(SAMPLE.read_bytes()))] * args.batches
        sample_events = len(orjson.loads(sample[0])["events"]) * args.batches
        decoded, mapped = [], []
        for _ in range(args.repeats):
            decoding, mapping, _, _ = _paused_gc(_pipeline, sample, {}, settings)
            decoded.append(decoding)
            mapped.append(mapping)
        print(f"mParticle's reference sample batch, {args.batches} times "
              f"({len(sample[0]) / 1024:.1f} KiB, 14 events, 2 forwarded):")
        print(line("  json decode", decoded, sample_events, args.batches))
        print(line("  mapping", mapped, sample_events, args.batches))
        print(f"  ratio mapping / json decode: median {ratio(mapped, decoded):.2f}")
    if steady > args.target:
        print(f"FAIL: steady-state mapping costs {steady:.2f} times the json decoding "
              f"(target <= {args.target:.2f})")
        sys.exit(1)
    print(f"PASS: steady-state ratio {steady:.2f} <= {args.target:.2f}")


if __name__ == "__main__":
    main()
