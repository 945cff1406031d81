"""The processor's pure parts: chunk planning, dead letters, Faust settings, stats, start-up checks.

No broker here; tests/test_processor_kafka.py runs the worker against the real one.
"""

from __future__ import annotations

import json
import ssl
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from helpers_processor import SETTINGS, TOPICS, DictStore, Rec, audience_message, batch, here, partition_for, track
from hypothesis import given, settings
from hypothesis import strategies as st

from cioproc.app import dead_letters
from cioproc.app import plan as plan_module
from cioproc.app.dead_letters import dead_letter_headers, read_dead_letter_headers
from cioproc.app.faust_config import (
    StartupError,
    check_changelog_topic,
    faust_credentials,
    faust_settings,
    store_url,
    table_options,
)
from cioproc.app.plan import plan_chunk
from cioproc.app.plan_records import EMPTY_RECORD, INTERNAL_ERROR, StoreError
from cioproc.app.processor import key_partition
from cioproc.app.startup import topic_problems
from cioproc.app.stats import Counts, ProcessorStats
from cioproc.config import Config, KafkaSettings, parse_config
from cioproc.kafka.topics import ActualTopic, load_topics
from cioproc.mapping import map_audience, map_batch, parse_audience_change, parse_batch
from cioproc.models.commands import CommandKind, decode_record
from cioproc.models.state import UserState, decode_state
from cioproc.observability import metrics

REPO = Path(__file__).resolve().parents[1]


def run(records: list[Rec], store: DictStore | None = None, **kw: Any):
    store = store or DictStore()
    plan = plan_chunk(records, TOPICS, SETTINGS, store.get, partition_for, **kw)
    store.data.update(plan.states)
    return plan


def commands(plan) -> list:
    return [command for out in plan.commands for command in decode_record(out.value, out.headers)]


# ---- planning ---------------------------------------------------------------------------------


def test_batch_becomes_the_mapping_commands_keyed_by_mpid_and_one_state():
    raw = batch(42, track(" Add to Cart ", 1_700_000_001_000, "m1"), track("Search", 1_700_000_002_000, "m2"))
    plan = run([here(42, value=raw)])
    expected = map_batch(parse_batch(raw, 1_700_000_000_000), None, SETTINGS)
    assert commands(plan) == expected.commands
    assert [c.kind for c in commands(plan)] == [CommandKind.IDENTIFY, CommandKind.TRACK, CommandKind.TRACK]
    assert commands(plan)[1].name == "Add_to_Cart"
    assert all(out.key == b"42" and out.topic == TOPICS.commands for out in plan.commands)
    slot = (partition_for(TOPICS.batches, b"42"), b"42")
    assert list(plan.states) == [slot]
    assert decode_state(plan.states[slot]) == expected.state
    assert plan.counts.batches == 1 and plan.counts.events == 2
    assert plan.counts.commands == {"identify": 1, "track": 2}
    assert not plan.dead_letters and not plan.forwards


def test_a_user_is_read_once_and_written_once_per_chunk_with_state_carried_between_records():
    first = batch(7, track("A", 1_700_000_001_000, "a"))
    second = batch(7, track("B", 1_700_000_002_000, "b"), user_attributes={"$FirstName": "Ann", "plan": "silver"})
    store = DictStore()
    plan = run([here(7, 0, first), here(7, 1, second)], store)
    assert store.reads == 1 and len(plan.states) == 1
    one = map_batch(parse_batch(first, 1_700_000_000_000), None, SETTINGS)
    two = map_batch(parse_batch(second, 1_700_000_000_000), one.state, SETTINGS)
    assert commands(plan) == one.commands + two.commands
    assert two.commands[0].kind is CommandKind.IDENTIFY and two.commands[0].attributes == {"plan": "silver"}
    assert decode_state(next(iter(plan.states.values()))) == two.state


def test_state_from_an_earlier_chunk_is_used_and_an_unchanged_state_is_not_rewritten():
    raw = batch(9, track("A", 1_700_000_001_000, "a"))
    store = DictStore()
    run([here(9, 0, raw)], store)
    again = run([here(9, 1, raw)], store)
    assert [c.kind for c in commands(again)] == [CommandKind.TRACK]  # identify already sent
    assert again.states == {}  # same input, same state: nothing to write


@pytest.mark.parametrize(
    "value, reason",
    [
        (b"not json at all", "not_json"),
        (b"[1, 2, 3]", "not_an_object"),
        (b'{"events": []}', "missing_mpid"),
        (b'{"mpid": 5, "events": 3}', "events_not_a_list"),
        (b"\xff\xfe\x00\x81garbage", "not_utf8"),
        (None, EMPTY_RECORD),
    ],
)
def test_undecodable_input_is_dead_lettered_with_original_bytes_key_and_reason(value, reason):
    record = Rec(TOPICS.batches, 2, 17, b"some-key", value, headers=[("trace", b"1")])
    plan = run([record])
    assert not plan.commands and not plan.states and not plan.forwards
    [letter] = plan.dead_letters
    assert (letter.topic, letter.key, letter.value) == (TOPICS.dead_letters, b"some-key", value)
    info = read_dead_letter_headers(letter.headers)
    assert (info.reason, info.topic, info.partition, info.offset) == (reason, TOPICS.batches, 2, 17)
    assert info.detail
    assert plan.counts.dead_letters == {reason: 1}


def test_a_bad_record_does_not_stop_the_good_ones_around_it():
    good = [here(1, 0), here(2, 2)]
    plan = run([good[0], Rec(TOPICS.batches, 0, 1, None, b"{"), good[1]])
    assert len(plan.dead_letters) == 1
    assert {c.mpid for c in commands(plan)} == {"1", "2"}
    assert plan.counts.batches == 2


def test_missing_key_is_mapped_where_the_mpid_belongs_or_forwarded_there():
    mpids = range(100, 140)
    local = next(m for m in mpids if partition_for(TOPICS.batches, str(m).encode()) == 0)
    remote = next(m for m in mpids if partition_for(TOPICS.batches, str(m).encode()) != 0)
    plan = run([
        Rec(TOPICS.batches, 0, 0, None, batch(local)),
        Rec(TOPICS.batches, 0, 1, None, batch(remote), headers=[("h", b"v")]),
    ])
    assert {c.mpid for c in commands(plan)} == {str(local)}
    assert list(plan.states) == [(0, str(local).encode())]
    [forward] = plan.forwards
    assert forward.topic == TOPICS.batches and forward.key == str(remote).encode()
    assert forward.value == batch(remote) and forward.headers == [("h", b"v")]
    assert forward.partition == partition_for(TOPICS.batches, str(remote).encode())
    assert plan.counts.forwarded == 1


def test_a_key_that_is_not_the_mpid_is_forwarded_under_the_mpid():
    mpid = next(m for m in range(200, 260) if partition_for(TOPICS.batches, str(m).encode()) == 1)
    plan = run([Rec(TOPICS.batches, 3, 0, b"wrong-key", batch(mpid))])
    assert not plan.commands and [f.key for f in plan.forwards] == [str(mpid).encode()]
    assert plan.forwards[0].partition == 1


def test_audience_message_for_several_users_is_split_by_partition():
    mpids = range(300, 400)
    local = next(m for m in mpids if partition_for(TOPICS.audiences, str(m).encode()) == 2)
    remote = next(m for m in mpids if partition_for(TOPICS.audiences, str(m).encode()) != 2)
    value = audience_message((local, 11, "A"), (remote, 12, "B"), (remote, 13, "C"))
    plan = run([Rec(TOPICS.audiences, 2, 5, str(local).encode(), value)])
    expected = map_audience(parse_audience_change(value, 1_700_000_000_000)[0], None, SETTINGS)
    assert commands(plan) == expected.commands
    assert commands(plan)[0].attributes == {"SegmentMembership": "'11'"}
    assert plan.counts.audience_profiles == 1
    [forward] = plan.forwards
    assert forward.key == str(remote).encode() and forward.topic == TOPICS.audiences
    forwarded = orjson.loads(forward.value)
    assert [p["mpid"] for p in forwarded["user_profiles"]] == [str(remote), str(remote)]
    assert forwarded["timestamp_ms"] == 1_700_000_005_000 and forwarded["id"] == "x"


def test_audiences_and_batches_share_the_user_state():
    mpid = 77
    key = str(mpid).encode()
    partition = partition_for(TOPICS.batches, key)
    plan = run([
        Rec(TOPICS.audiences, partition, 0, key, audience_message((mpid, 5, "Five"))),
        Rec(TOPICS.batches, partition, 0, key, batch(mpid)),
    ])
    state = decode_state(plan.states[(partition, key)])
    assert state.audiences == {"5": "Five"} and state.email == "u77@example.com"  # one from each topic


def test_user_without_the_selected_identity_is_counted_not_dead_lettered():
    raw = orjson.dumps({"mpid": 8, "events": [track("A", 1_700_000_001_000, "a")], "user_identities": {}})
    plan = run([here(8, value=raw)])
    assert not plan.commands and not plan.dead_letters
    assert plan.counts.drops["no_identity"] == 1 and plan.counts.batches == 1
    assert plan.states  # identities may come later: the state (devices) is kept


def test_unreadable_stored_state_starts_the_user_afresh_and_is_reported():
    store = DictStore()
    key = b"31"
    store.data[(partition_for(TOPICS.batches, key), key)] = b"\x00not msgpack state"
    seen = []
    plan = run([here(31)], store, on_state_reset=lambda k, exc: seen.append(k))
    assert seen == [key] and plan.counts.state_resets == 1
    assert commands(plan)[0].kind is CommandKind.IDENTIFY


def test_an_exception_while_planning_dead_letters_only_that_record(monkeypatch):
    real = plan_module.map_batch

    def flaky(parsed, state, settings):
        if parsed.mpid == "13":
            raise RuntimeError("boom")
        return real(parsed, state, settings)

    monkeypatch.setattr(plan_module, "map_batch", flaky)
    plan = run([here(12, 0), here(13, 1), here(14, 2)])
    assert {c.mpid for c in commands(plan)} == {"12", "14"}
    [letter] = plan.dead_letters
    info = read_dead_letter_headers(letter.headers)
    assert info.reason == INTERNAL_ERROR and "RuntimeError: boom" in info.detail
    assert (partition_for(TOPICS.batches, b"13"), b"13") not in plan.states


def test_a_failing_store_fails_the_chunk():
    def broken(partition: int, key: bytes) -> bytes | None:
        raise OSError("disk gone")

    with pytest.raises(StoreError, match="disk gone"):
        plan_chunk([here(1)], TOPICS, SETTINGS, broken, partition_for)


def test_a_record_from_another_topic_is_a_programming_error():
    with pytest.raises(ValueError, match="does not read"):
        run([Rec("elsewhere", 0, 0, b"1", batch(1))])


# ---- properties ---------------------------------------------------------------------------------

USERS = [101, 202, 303, 404, 505]


@st.composite
def user_batches(draw) -> list[Rec]:
    """Batches of a few users, in per-user time order, each in its user's partition."""
    records = []
    clock = 1_700_000_000_000
    for i in range(draw(st.integers(1, 14))):
        mpid = draw(st.sampled_from(USERS))
        clock += draw(st.integers(1, 10**6))
        attributes = {"$FirstName": "Ann", "plan": draw(st.sampled_from(["gold", "free"]))}
        platform = draw(st.sampled_from([("iOS", "IOS"), ("Android", "Android")]))
        events = [
            track(draw(st.sampled_from(["A", " B c", "D"])), clock + k, f"{i}-{k}")
            for k in range(draw(st.integers(0, 3)))
        ]
        if draw(st.booleans()):
            events.insert(0, {"event_type": "first_run", "data": {"timestamp_unixtime_ms": clock - 5}})
        value = batch(mpid, *events, user_attributes=attributes, device_info={"platform": platform[0]},
                      application_info={"os": platform[1]})
        records.append(here(mpid, i, value))
    return records


@settings(max_examples=60, deadline=None)
@given(records=user_batches(), cuts=st.lists(st.integers(0, 14), max_size=4))
def test_chunk_boundaries_do_not_change_commands_or_final_states(records, cuts):
    """One chunk or several (state carried through the store) give the same output."""
    whole_store = DictStore()
    whole = run(records, whole_store)
    bounds = sorted({0, len(records), *(c for c in cuts if c < len(records))})
    pieces_store = DictStore()
    piece_commands = []
    for start, end in pairwise(bounds):
        piece_commands += commands(run(records[start:end], pieces_store))
    assert piece_commands == commands(whole)
    assert pieces_store.data == whole_store.data


@settings(max_examples=60, deadline=None)
@given(records=user_batches())
def test_commands_equal_mapping_each_user_in_order(records):
    """The plan is the mapping core applied to each user's batches in order; users do not mix."""
    states: dict[str, UserState | None] = {}
    expected_by_user: dict[str, list] = {}
    for record in records:
        parsed = parse_batch(record.value, int(record.timestamp * 1000))
        result = map_batch(parsed, states.get(parsed.mpid), SETTINGS)
        states[parsed.mpid] = result.state
        expected_by_user.setdefault(parsed.mpid, []).extend(result.commands)
    got_by_user: dict[str, list] = {}
    for command in commands(run(records)):
        got_by_user.setdefault(command.mpid, []).append(command)
    assert got_by_user == {k: v for k, v in expected_by_user.items() if v}


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.none(),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                max_leaves=8,
            ).map(lambda v: json.dumps(v).encode()),
            st.builds(
                lambda m, e: json.dumps({"mpid": m, "events": e}).encode(),
                st.integers(-(2**63), 2**63),
                st.lists(st.dictionaries(st.text(max_size=5), st.integers()), max_size=2),
            ),
        ),
        max_size=8,
    ),
    audience=st.booleans(),
)
def test_every_record_is_mapped_dead_lettered_or_forwarded_never_an_exception(values, audience):
    topic = TOPICS.audiences if audience else TOPICS.batches
    records = [Rec(topic, 1, offset, b"k", value) for offset, value in enumerate(values)]
    plan = run(records)
    letters = sum(plan.counts.dead_letters.values())
    assert INTERNAL_ERROR not in plan.counts.dead_letters
    if audience:
        assert letters <= len(records)
    else:
        assert plan.counts.batches + letters + plan.counts.forwarded == len(records)
    for letter in plan.dead_letters:
        info = read_dead_letter_headers(letter.headers)
        assert records[info.offset].value == letter.value


# ---- dead letters, partitioning -------------------------------------------------------------------


def test_dead_letter_headers_round_trip_and_cut_long_details_on_a_character():
    headers = dead_letter_headers("not_json", "é" * 800, "t", 3, 99)
    assert dict(headers)[dead_letters.DETAIL] == ("é" * 500).encode()  # 1000 bytes, whole characters
    info = read_dead_letter_headers(headers)
    assert (info.reason, info.topic, info.partition, info.offset) == ("not_json", "t", 3, 99)
    with pytest.raises(ValueError, match="not a cioproc dead letter"):
        read_dead_letter_headers([("other", b"x")])


@pytest.mark.parametrize(
    "key, java_murmur2",  # Kafka's own test vectors (clients/.../utils/UtilsTest.java)
    [(b"21", -973932308), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536),
     (b"a-little-bit-longer-string", -1486304829), (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
     (b"abc", 479470107)],
)
def test_key_partition_is_kafkas_default_partitioner(key, java_murmur2):
    for n in (1, 3, 8, 12):
        expected = (java_murmur2 & 0x7FFFFFFF) % n
        assert key_partition(key, n) == expected
        assert DefaultPartitioner()(key, list(range(n)), list(range(n))) == expected


# ---- Faust settings ---------------------------------------------------------------------------------


def test_changelog_name_must_match_the_app_id():
    topics = load_topics(REPO / "topics.yaml")
    check_changelog_topic("cioproc", topics)
    with pytest.raises(StartupError) as failure:
        check_changelog_topic("other", topics)
    message = str(failure.value)
    assert "\n" not in message
    assert "'cioproc-users-changelog'" in message and "'other-users-changelog'" in message


def _kafka(**env: str) -> KafkaSettings:
    return parse_config({"CIOPROC_ENV_FILE": "/dev/null/none", **env}).kafka


@pytest.fixture
def tls_files(tmp_path):
    """A self-signed certificate and its key (openssl), usable as CA, certificate and key files."""
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=cioproc-test"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.mark.parametrize(
    "env",
    [
        {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN",
         "KAFKA_SASL_USERNAME": "svc", "KAFKA_SASL_PASSWORD": "pw-123456"},
        {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
         "KAFKA_SASL_USERNAME": "svc", "KAFKA_SASL_PASSWORD": "pw-123456"},
    ],
)
def test_sasl_settings_reach_faust_as_aiokafka_would_get_them(env):
    kafka = _kafka(**env)
    auth = credentials_to_aiokafka_auth(faust_credentials(kafka))
    direct = kafka.aiokafka_kwargs()
    for name in ("security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
        assert auth[name] == direct[name]


def test_tls_settings_reach_faust(tls_files):
    cert, key = tls_files
    ssl_only = _kafka(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CAFILE=str(cert))
    auth = credentials_to_aiokafka_auth(faust_credentials(ssl_only))
    assert auth["security_protocol"] == "SSL" and isinstance(auth["ssl_context"], ssl.SSLContext)
    sasl_ssl = _kafka(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
                      KAFKA_SASL_USERNAME="svc", KAFKA_SASL_PASSWORD="pw-123456", KAFKA_SSL_CAFILE=str(cert),
                      KAFKA_SSL_CERTFILE=str(cert), KAFKA_SSL_KEYFILE=str(key))
    auth = credentials_to_aiokafka_auth(faust_credentials(sasl_ssl))
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "SCRAM-SHA-256"
    assert auth["sasl_plain_password"] == "pw-123456" and isinstance(auth["ssl_context"], ssl.SSLContext)


def test_plaintext_needs_no_credentials_and_oauth_is_refused():
    assert faust_credentials(KafkaSettings()) is None
    gssapi = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="GSSAPI")
    assert credentials_to_aiokafka_auth(faust_credentials(gssapi))["sasl_mechanism"] == "GSSAPI"
    oauth = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER")
    with pytest.raises(StartupError, match="OAUTHBEARER"):
        faust_credentials(oauth)


def test_faust_settings_follow_the_config():
    config = parse_config(
        {"KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2", "CIOPROC_STORE": "rocksdb", "CIOPROC_DATA_DIR": "/srv/c"}
    )
    conf = faust_settings(config, "app-1")
    assert conf["id"] == "app-1" and conf["broker"] == ["kafka://a:1", "kafka://b:2"]
    assert conf["store"] == "rocksdb://" and conf["datadir"] == "/srv/c/app-1"
    assert conf["env"] == {} and conf["topic_allow_declare"] is False and conf["broker_credentials"] is None
    assert table_options(config) == {"driver": "rocksdict"}
    assert store_url(Config()) == "memory://" and table_options(Config()) is None


# ---- stats ----------------------------------------------------------------------------------------------


def test_counts_add_up_and_summarise_by_reason():
    a = Counts(batches=2, events=9)
    a.drops["no_identity"] += 2
    a.commands["track"] += 5
    b = Counts(batches=1, events=3, forwarded=1)
    b.drops["no_identity"] += 1
    b.dead_letters["not_json"] += 1
    a.add(b)
    assert (a.batches, a.events, a.forwarded) == (3, 12, 1)
    line = a.summary()
    assert "batches=3 events=12" in line and "drops=3 (no_identity=3)" in line
    assert "dead_letters=1 (not_json=1)" in line and "commands=5 (track=5)" in line and "forwarded=1" in line


def test_stats_feed_prometheus_and_report_only_changes():
    stats = ProcessorStats("dlq.topic")
    sample = metrics.REGISTRY.get_sample_value
    before = sample("cioproc_drops_total", {"reason": "stats_test_reason"}) or 0.0
    counts = Counts(batches=1, events=4)
    counts.drops["stats_test_reason"] += 2
    counts.dead_letters["stats_test_dlq"] += 1
    counts.commands["screen"] += 3
    stats.record(counts)
    assert sample("cioproc_drops_total", {"reason": "stats_test_reason"}) == before + 2
    assert sample("cioproc_dlq_writes_total", {"topic": "dlq.topic", "reason": "stats_test_dlq"}) >= 1
    first = stats.summary_if_changed()
    assert first is not None and "stats_test_reason=2" in first
    assert stats.summary_if_changed() is None
    stats.record(Counts(batches=1))
    assert "batches=2" in stats.summary_if_changed()


# ---- start-up checks ------------------------------------------------------------------------------------


def _actual(topics, **partitions_by_role) -> dict[str, ActualTopic]:
    result = {}
    for spec in topics.topics:
        n = partitions_by_role.get(spec.role, spec.partitions)
        result[spec.name] = ActualTopic(spec.name, n, spec.replication_factor, dict(spec.config))
    return result


def test_start_up_refuses_missing_topics_and_broken_co_partitioning_but_only_warns_on_other_drift():
    topics = load_topics(REPO / "topics.yaml")
    assert topic_problems(topics, "processor", _actual(topics)) == ([], [])
    actual = _actual(topics)
    del actual["mparticle.batches.dlq"]
    fatal, _ = topic_problems(topics, "processor", actual)
    assert fatal == ["topic 'mparticle.batches.dlq' (batches_dlq) does not exist: run `cioproc topics apply`"]
    fatal, _ = topic_problems(topics, "processor", _actual(topics, audiences=4))
    assert len(fatal) == 1 and "co-partitioned" in fatal[0]
    assert topic_problems(topics, "sender", _actual(topics, audiences=4)) == ([], [])
    actual = _actual(topics)
    actual["cio.commands"].config["retention.ms"] = "1"
    fatal, warnings = topic_problems(topics, "all", actual)
    assert not fatal and len(warnings) == 1 and "retention.ms" in warnings[0]
