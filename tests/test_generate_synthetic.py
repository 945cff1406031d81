"""The synthetic data generator: reproducible, exact, realistic, and valid mParticle input."""

from __future__ import annotations

import copy
import json
from collections import Counter, defaultdict
from pathlib import Path

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cioproc.generate import Record, Summary, generate
from cioproc.generate.catalog import PLATFORMS
from cioproc.generate.draw import Weighted
from cioproc.generate.plan import WINDOW_MS, split_batches, split_events
from cioproc.generate.synthetic import normalise_event_name

SCHEMA_PATH = Path(__file__).parent / "data" / "generate" / "mparticle-eventsapi-schema.json"
NOW_MS = 1_760_000_000_000
RESERVED = {"$firstname", "$lastname", "$city", "$state", "$zip", "$country", "$gender", "$age", "$mobile"}


@pytest.fixture(scope="module")
def sample() -> tuple[list[Record], Summary]:
    summary = Summary()
    records = list(generate(400, 4000, 11, now_ms=NOW_MS, summary=summary))
    return records, summary


def batches_of(records: list[Record]) -> list[dict]:
    return [r.value for r in records if r.topic_role == "batches"]


def identities(batch: dict) -> dict[str, str]:
    """user_identities in either shape, as a map."""
    raw = batch.get("user_identities")
    if isinstance(raw, list):
        return {i["identity_type"]: i["identity"] for i in raw}
    return dict(raw or {})


def as_inbound(batch: dict) -> dict:
    """An outbound-form batch in the inbound form the JSON schema describes.

    The only differences allowed: ``schema_version`` and ``unique_id`` (outbound-only
    fields), ``user_identities`` as an array, and the MPID as a string.
    """
    batch = dict(batch)
    batch.pop("schema_version", None)
    batch.pop("unique_id", None)
    if isinstance(batch.get("user_identities"), list):
        batch["user_identities"] = {i["identity_type"]: i["identity"] for i in batch["user_identities"]}
    if isinstance(batch.get("mpid"), str):
        batch["mpid"] = int(batch["mpid"])
    return batch


def dumps(records: list[Record]) -> bytes:
    return b"\n".join(orjson.dumps([r.topic_role, r.key, r.value]) for r in records)


# ---------------------------------------------------------------- reproducibility and exactness


def test_same_seed_same_bytes_and_other_seed_other_data():
    first = dumps(list(generate(50, 500, 3, now_ms=NOW_MS)))
    again = dumps(list(generate(50, 500, 3, now_ms=NOW_MS)))
    other = dumps(list(generate(50, 500, 4, now_ms=NOW_MS)))
    assert first == again
    assert first != other


def test_reference_time_shifts_every_timestamp_and_nothing_else():
    later = NOW_MS + 86_400_000
    a = list(generate(20, 200, 5, now_ms=NOW_MS))
    b = list(generate(20, 200, 5, now_ms=later))
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.key == y.key and x.topic_role == y.topic_role
        if x.topic_role == "batches":
            assert [e["data"]["timestamp_unixtime_ms"] + 86_400_000 for e in x.value["events"]] == [
                e["data"]["timestamp_unixtime_ms"] for e in y.value["events"]
            ]
            assert [e["data"]["event_id"] for e in x.value["events"]] == [
                e["data"]["event_id"] for e in y.value["events"]
            ]


@pytest.mark.parametrize(
    "users,events",
    [(1, 0), (1, 1), (1, 15), (1, 16), (1, 1000), (5, 3), (10, 10), (7, 99), (100, 1000), (250, 4321)],
)
def test_event_count_is_exact(users, events):
    summary = Summary()
    batches = batches_of(list(generate(users, events, 1, now_ms=NOW_MS, summary=summary)))
    assert sum(len(b["events"]) for b in batches) == events
    assert summary.events == events and summary.batches == len(batches)
    assert len({b["mpid"] if isinstance(b["mpid"], int) else int(b["mpid"]) for b in batches}) == min(users, events)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(users=st.integers(1, 25), events=st.integers(0, 300), seed=st.integers(-(2**40), 2**40))
def test_property_exact_count_chronology_and_window(users, events, seed):
    records = list(generate(users, events, seed, now_ms=NOW_MS))
    batches = batches_of(records)
    assert sum(len(b["events"]) for b in batches) == events
    last_seen: dict[str, int] = {}
    for record in records:
        if record.topic_role != "batches":
            continue
        times = [e["data"]["timestamp_unixtime_ms"] for e in record.value["events"]]
        assert 1 <= len(times) <= 15
        assert times == sorted(times) and len(set(times)) == len(times)
        assert NOW_MS - WINDOW_MS <= times[0] and times[-1] <= NOW_MS
        assert times[0] > last_seen.get(record.key, -1)  # a user's batches in chronological order
        last_seen[record.key] = times[-1]


def test_invalid_sizes_are_refused():
    with pytest.raises(ValueError):
        generate(0, 10, 1)
    with pytest.raises(ValueError):
        generate(1, -1, 1)


@pytest.mark.parametrize("users,events", [(1, 0), (3, 2), (10, 10), (10, 11), (1000, 123_457)])
def test_split_events_sums_exactly(users, events):
    import random

    counts = split_events(random.Random(1), users, events)
    assert len(counts) == users and sum(counts) == events
    assert all(c >= (1 if events >= users else 0) for c in counts)


@pytest.mark.parametrize("count", [1, 2, 7, 15, 16, 31, 100, 2500])
def test_split_batches_sizes_are_1_to_15(count):
    import random

    rng = random.Random(count)
    for _ in range(50):
        sizes = split_batches(rng, count, at_least=2)
        assert sum(sizes) == count and all(1 <= s <= 15 for s in sizes)
        assert len(sizes) >= min(2, count)


def test_weighted_pick_follows_weights_and_never_picks_zero_weight():
    import random

    rng = random.Random(2)
    picks = Counter(Weighted([("a", 3.0), ("never", 0.0), ("b", 1.0)]).pick(rng) for _ in range(20_000))
    assert "never" not in picks
    assert 2.7 < picks["a"] / picks["b"] < 3.3
    with pytest.raises(ValueError):
        Weighted([("x", 0.0)])


# ---------------------------------------------------------------- realism: every feature is present


def test_records_are_in_time_order_and_in_the_window(sample):
    records, _ = sample
    times = [
        r.value["events"][0]["data"]["timestamp_unixtime_ms"] if r.topic_role == "batches" else r.value["timestamp_ms"]
        for r in records
    ]
    assert times == sorted(times)
    assert NOW_MS - WINDOW_MS <= times[0] and times[-1] <= NOW_MS


def test_batches_carry_the_required_fields(sample):
    records, _ = sample
    for record in records:
        if record.topic_role != "batches":
            continue
        batch = record.value
        assert record.key == str(batch["mpid"]) and int(record.key) != 0
        for field in (
            "source_request_id",
            "environment",
            "batch_id",
            "timestamp_unixtime_ms",
            "device_info",
            "application_info",
        ):
            assert field in batch
        assert batch["timestamp_unixtime_ms"] >= batch["events"][-1]["data"]["timestamp_unixtime_ms"]
        assert PLATFORMS[batch["device_info"]["platform"]][0] == batch["application_info"]["os"]
        if isinstance(batch["user_identities"], list):
            assert batch["schema_version"] == 2 and "unique_id" in batch


def test_ids_are_unique_and_well_formed(sample):
    records, _ = sample
    events = [e["data"] for b in batches_of(records) for e in b["events"]]
    message_ids = [e["source_message_id"] for e in events]
    event_ids = [e["event_id"] for e in events]
    assert len(set(message_ids)) == len(message_ids)
    assert len(set(event_ids)) == len(event_ids)
    assert all(-(2**63) <= i < 2**63 for i in event_ids)
    assert len({b["batch_id"] for b in batches_of(records)}) == len(batches_of(records))
    assert len({b["source_request_id"] for b in batches_of(records)}) == len(batches_of(records))


def test_device_types_span_mobile_web_and_living_room(sample):
    records, summary = sample
    platforms = Counter(b["device_info"]["platform"] for b in batches_of(records))
    assert {"iOS", "Android", "web"} <= set(platforms)
    assert len(platforms) >= 6
    assert summary.multi_device_users > 0


def test_first_run_is_in_the_first_batch_of_each_device_type_only(sample):
    records, _ = sample
    seen: set[tuple[str, str]] = set()
    for batch in batches_of(records):
        device = (str(batch["mpid"]), batch["device_info"]["platform"])
        first_runs = [e for e in batch["events"] if e["event_type"] == "first_run"]
        assert len(first_runs) == (0 if device in seen else 1)
        seen.add(device)


def test_event_types_and_names_that_need_normalising(sample):
    records, _ = sample
    types = Counter(e["event_type"] for b in batches_of(records) for e in b["events"])
    for kind in ("custom_event", "screen_view", "session_start", "session_end", "first_run", "opt_out",
                 "user_attribute_change", "user_identity_change", "commerce_event"):  # fmt: skip
        assert types[kind] > 0, kind
    assert types["custom_event"] > types["screen_view"] > types["opt_out"]
    names = {
        e["data"]["event_name"] for b in batches_of(records) for e in b["events"] if e["event_type"] == "custom_event"
    }
    assert any(n != n.strip() for n in names)  # leading or trailing spaces
    assert any(" " in n.strip() for n in names)  # inner spaces
    assert "Add_to_Cart" in {normalise_event_name(n) for n in names}
    assert normalise_event_name("  Add to Cart ") == "Add_to_Cart"


def test_sessions_are_consistent(sample):
    records, _ = sample
    for batch in batches_of(records):
        for event in batch["events"]:
            data = event["data"]
            if event["event_type"] == "session_start":
                assert data["session_start_unixtime_ms"] == data["timestamp_unixtime_ms"]
            if event["event_type"] == "session_end":
                assert (
                    data["session_duration_ms"]
                    == data["timestamp_unixtime_ms"] - data["session_start_unixtime_ms"]
                    >= 0
                )


def test_identity_categories_and_upgrades(sample):
    records, summary = sample
    by_user: dict[str, list[dict]] = defaultdict(list)
    for batch in batches_of(records):
        by_user[str(batch["mpid"])].append(batch)
    upgraded = neither = email_only = 0
    for batches in by_user.values():
        ids = [identities(b) for b in batches]
        has_cid = [("customer_id" in i) for i in ids]
        has_email = [("email" in i) for i in ids]
        if not any(has_cid) and not any(has_email):
            neither += 1
        if any(has_cid) and not has_cid[0]:
            # an upgrade: e-mail throughout, the customer id from one batch on, announced by an event
            upgraded += 1
            assert all(has_email)
            switch = has_cid.index(True)
            assert all(has_cid[switch:])
            changes = [e for e in batches[switch]["events"] if e["event_type"] == "user_identity_change"]
            assert changes and changes[0]["data"]["new"]["identity"] == ids[switch]["customer_id"]
        if all(has_email) and not any(has_cid):
            email_only += 1
    assert upgraded == summary.users_by_identity["email_then_customer_id"] > 0
    assert neither == summary.users_by_identity["no_identity"] > 0
    assert email_only == summary.users_by_identity["email_only"] > 0
    assert summary.users_by_identity["customer_id_and_email"] > summary.users_by_identity["no_identity"]
    # anonymous users come in every form: no field value, an empty map or array, or other identities only
    shapes = {
        repr(b["user_identities"])[:1] if not identities(b) else "other"
        for b in batches_of(records)
        if not ({"customer_id", "email"} & set(identities(b)))
    }
    assert {"N", "{", "[", "other"} <= shapes


def test_both_identity_shapes_and_string_mpids(sample):
    records, summary = sample
    shapes = Counter(type(b["user_identities"]).__name__ for b in batches_of(records))
    assert shapes["dict"] > 0 and shapes["list"] > 0
    array_items = [
        i for b in batches_of(records) if isinstance(b["user_identities"], list) for i in b["user_identities"]
    ]
    assert array_items and all(set(i) >= {"identity_type", "identity", "timestamp_unixtime_ms"} for i in array_items)
    string_mpids = [b for b in batches_of(records) if isinstance(b["mpid"], str)]
    assert string_mpids and len(string_mpids) == summary.string_mpid_batches
    assert all("schema_version" in b for b in string_mpids)  # outbound form only


def test_opt_out_and_back_in(sample):
    records, summary = sample
    history: dict[str, list[bool]] = defaultdict(list)
    for batch in batches_of(records):
        for event in batch["events"]:
            if event["event_type"] == "opt_out":
                history[str(batch["mpid"])].append(event["data"]["is_opted_out"])
    assert len(history) == summary.opted_out_users > 0
    assert all(h[0] is True for h in history.values())
    assert sum(h == [True, False] for h in history.values()) == summary.opted_back_in_users > 0


def test_user_attributes_reserved_spellings_lists_and_deletions(sample):
    records, summary = sample
    keys = Counter(k for b in batches_of(records) for k in b["user_attributes"])
    reserved = [k for k in keys if k.lower() in RESERVED]
    assert {"$FirstName", "$firstname"} <= set(reserved)  # canonical and mParticle's lower-case example
    assert any(k not in ("$FirstName", "$firstname") and k.lower() == "$firstname" for k in reserved)
    assert any(isinstance(v, list) for b in batches_of(records) for v in b["user_attributes"].values())
    assert summary.users_with_list_attributes > 0
    deleted = [b for b in batches_of(records) if b["deleted_user_attributes"]]
    assert deleted and len(deleted) == summary.batches_with_deleted_attributes
    for batch in deleted:
        for name in batch["deleted_user_attributes"]:
            assert name not in batch["user_attributes"]
            assert any(
                e["event_type"] == "user_attribute_change"
                and e["data"]["deleted"]
                and e["data"]["user_attribute_name"] == name
                for e in batch["events"]
            )


def test_audience_messages(sample):
    records, summary = sample
    messages = [r for r in records if r.topic_role == "audiences"]
    mpids = {r.key for r in records if r.topic_role == "batches"}
    assert len(messages) == summary.audience_messages > 0
    membership: dict[tuple[str, int], bool] = {}
    multi = 0
    for record in messages:
        message = record.value
        assert message["type"] == "audience_membership_change_request"
        profiles = message["user_profiles"]
        assert record.key == profiles[0]["mpid"]
        assert len({p["mpid"] for p in profiles}) == len(profiles)
        multi += len(profiles) > 1
        for profile in profiles:
            assert profile["mpid"] in mpids
            for identity in profile["user_identities"]:
                assert identity["encoding"] in ("raw", "md5", "sha256") and identity["type"] in ("email", "customer")
            for action in profile["audiences"]:
                key = (profile["mpid"], action["audience_id"])
                if action["action"] == "delete":
                    assert membership.get(key) is True  # only leave an audience one is in
                membership[key] = action["action"] == "add"
                assert action["audience_name"]
    assert multi == summary.multi_profile_audience_messages > 0
    assert summary.audience_actions["add"] > 0 and summary.audience_actions["delete"] > 0
    assert summary.audience_profiles_without_raw_identity > 0


def test_summary_agrees_with_the_records(sample):
    records, summary = sample
    batches = batches_of(records)
    types = Counter(e["event_type"] for b in batches for e in b["events"])
    forwardable = Counter(
        e["event_type"] for b in batches if {"customer_id", "email"} & set(identities(b)) for e in b["events"]
    )
    names = [e["data"]["event_name"] for b in batches for e in b["events"] if e["event_type"] == "custom_event"]
    assert summary.events == 4000 and summary.batches == len(batches)
    assert summary.events_by_type == types
    assert summary.forwardable_events_by_type == forwardable
    assert summary.names_needing_normalisation == sum(normalise_event_name(n) != n for n in names)
    assert summary.users == len({b["mpid"] if isinstance(b["mpid"], int) else int(b["mpid"]) for b in batches})
    assert summary.batches_by_identity_shape == Counter(
        {list: "array", dict: "map", type(None): "null"}[type(b["user_identities"])] for b in batches
    )
    assert json.loads(json.dumps(summary.as_dict()))["events"] == 4000


# ---------------------------------------------------------------- the reference JSON schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.fixture(scope="module")
def dispatching_validator() -> jsonschema.Draft7Validator:
    """The same schema with the events' ``oneOf`` replaced by a dispatch on ``event_type``.

    Equivalent for these events (each event definition pins one ``event_type``, so at most
    one branch of the ``oneOf`` can match) and about five times faster, so a larger sample
    can be checked.
    """
    schema = copy.deepcopy(json.loads(SCHEMA_PATH.read_text()))
    refs = schema["properties"]["events"]["items"]["oneOf"]
    kinds = [schema["definitions"][r["$ref"].rsplit("/", 1)[1]]["properties"]["event_type"]["enum"][0] for r in refs]
    schema["properties"]["events"]["items"] = {
        "required": ["event_type"],
        "properties": {"event_type": {"enum": kinds}},
        "allOf": [
            {"if": {"properties": {"event_type": {"const": k}}}, "then": r} for k, r in zip(kinds, refs, strict=True)
        ],
    }
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


def _errors(validator: jsonschema.Draft7Validator, batch: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(batch)]


def test_inbound_form_batches_validate_against_the_unchanged_schema(validator):
    batches = batches_of(list(generate(40, 400, 21, now_ms=NOW_MS)))
    inbound = [b for b in batches if isinstance(b.get("user_identities"), dict) or b.get("user_identities") is None]
    assert len(inbound) >= 20
    for batch in inbound:
        assert "schema_version" not in batch and isinstance(batch["mpid"], int)
        assert _errors(validator, batch) == []
    for batch in batches:
        if batch not in inbound:
            assert _errors(validator, as_inbound(batch)) == []


def test_every_batch_of_the_feature_sample_validates(sample, dispatching_validator, validator):
    records, _ = sample
    batches = batches_of(records)
    for batch in batches:
        assert _errors(dispatching_validator, as_inbound(batch)) == [], batch["mpid"]
    # the dispatching validator is as strict as the original on a broken batch
    broken = as_inbound(batches[0])
    broken["events"] = broken["events"] + [{"event_type": "custom_event", "data": {"event_name": "x"}}]
    assert _errors(validator, broken) and _errors(dispatching_validator, broken)
    broken["events"] = [{"event_type": "no_such_type", "data": {}}]
    assert _errors(validator, broken) and _errors(dispatching_validator, broken)
