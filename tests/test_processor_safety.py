"""Processing-plan safety (issue 11, items 5-7): mapping bugs reach the dead-letter queue, every
produced record fits its topic's ``max.message.bytes``, a user's state stays bounded, and an
audience message for many users is split in linear time.

Pure tests of :func:`cioproc.app.plan.plan_chunk`; tests/test_processor_kafka.py runs the same
against the real broker.
"""

from __future__ import annotations

import types

import orjson
from helpers_processor import SETTINGS, TOPICS, DictStore, Rec, audience_message, batch, here, partition_for, track

from cioproc.app import plan_builder as plan_builder_module
from cioproc.app.dead_letters import SOURCE_OFFSET, VALUE_TRUNCATED, read_dead_letter_headers, record_size
from cioproc.app.plan import plan_chunk
from cioproc.app.plan_records import INTERNAL_ERROR, RECORD_TOO_LARGE, STATE_TOO_LARGE, PlanTopics
from cioproc.mapping import audience as audience_module
from cioproc.mapping import mapper as mapper_module
from cioproc.models.commands import decode_record
from cioproc.models.state import MAX_STATE_BYTES, UserState, decode_state, encode_state

TOPICS_WITH_CHANGELOG = PlanTopics(
    TOPICS.batches, TOPICS.audiences, TOPICS.commands, TOPICS.dead_letters, "out.changelog"
)


def run(records, store=None, limits=None):
    store = store or DictStore()
    plan = plan_chunk(records, TOPICS_WITH_CHANGELOG, SETTINGS, store.get, partition_for, max_record_bytes=limits)
    store.data.update(plan.states)
    return plan


def reasons(plan) -> list[str]:
    return [read_dead_letter_headers(letter.headers).reason for letter in plan.dead_letters]


# ---- item 5: a mapping bug dead-letters its input ------------------------------------------------


def test_a_bug_inside_the_batch_mapping_dead_letters_the_input_with_its_offset(monkeypatch):
    real = mapper_module._map

    def buggy(parsed, state, settings, size_each):
        if parsed.mpid == "13":
            raise KeyError("bug")
        return real(parsed, state, settings, size_each)

    monkeypatch.setattr(mapper_module, "_map", buggy)
    plan = run([here(12, 0), here(13, 7), here(14, 8)])
    assert {command.mpid for c in plan.commands for command in decode_record(c.value, c.headers)} == {"12", "14"}
    [letter] = plan.dead_letters
    info = read_dead_letter_headers(letter.headers)
    assert (info.reason, info.offset, info.topic) == (INTERNAL_ERROR, 7, TOPICS.batches)
    assert "KeyError" in info.detail and letter.value == batch(13) and letter.key == b"13"
    assert plan.counts.dead_letters[INTERNAL_ERROR] == 1 and not plan.counts.drops.get(INTERNAL_ERROR)
    assert (partition_for(TOPICS.batches, b"13"), b"13") not in plan.states


def local_mpids(partition: int, count: int, start: int = 300) -> list[int]:
    found = [m for m in range(start, start + 400) if partition_for(TOPICS.audiences, str(m).encode()) == partition]
    return found[:count]


def test_a_bug_mapping_one_profile_dead_letters_the_whole_audience_message(monkeypatch):
    """Taken whole or not at all: no command, state or forward for the other profiles either."""
    real = audience_module.choose_identifier

    def buggy(settings, customer_id, email):
        if customer_id == "c-broken":
            raise TypeError("bug")
        return real(settings, customer_id, email)

    monkeypatch.setattr(audience_module, "choose_identifier", buggy)
    good, bad = local_mpids(2, 2)
    remote = next(m for m in range(300, 400) if partition_for(TOPICS.audiences, str(m).encode()) != 2)
    message = orjson.loads(audience_message((good, 1, "A"), (bad, 2, "B"), (remote, 3, "C")))
    message["user_profiles"][1]["user_identities"][0]["value"] = "c-broken"
    value = orjson.dumps(message)
    plan = run([Rec(TOPICS.audiences, 2, 4, str(good).encode(), value)])
    assert reasons(plan) == [INTERNAL_ERROR] and plan.dead_letters[0].value == value
    assert not plan.commands and not plan.states and not plan.forwards
    assert plan.counts.audience_profiles == 0


# ---- item 6: every record fits its topic; states stay bounded -----------------------------------


def test_an_oversized_dead_letter_keeps_its_headers_and_a_truncated_value():
    value = b"x" * 5000  # not JSON: a dead letter
    plan = run([here(5, 42, value=value, key=b"k")], limits={TOPICS.dead_letters: 2000})
    [letter] = plan.dead_letters
    assert record_size(letter.key, letter.value, letter.headers) <= 2000
    info = read_dead_letter_headers(letter.headers)
    assert (info.reason, info.offset, info.topic) == ("not_json", 42, TOPICS.batches)
    assert value.startswith(letter.value) and 1000 < len(letter.value) < 2000
    headers = dict(letter.headers)
    assert headers[VALUE_TRUNCATED] == b"5000" and headers[SOURCE_OFFSET] == b"42" and letter.key == b"k"


def test_a_dead_letter_that_fits_is_unchanged():
    plan = run([here(5, 1, value=b"x" * 500)], limits={TOPICS.dead_letters: 2000})
    [letter] = plan.dead_letters
    assert letter.value == b"x" * 500 and VALUE_TRUNCATED not in dict(letter.headers)


def test_an_input_whose_command_does_not_fit_the_commands_topic_is_dead_lettered_whole():
    event = track("Big", 1_700_000_000_000, "b1")
    event["data"]["custom_attributes"] = {"blob": "b" * 3000}
    value = batch(21, event)
    store = DictStore()
    plan = run([here(20, 0), here(21, 1, value=value), here(22, 2)], store, limits={TOPICS.commands: 2500})
    assert reasons(plan) == [RECORD_TOO_LARGE] and plan.dead_letters[0].value == value
    assert {command.mpid for c in plan.commands for command in decode_record(c.value, c.headers)} == {"20", "22"}
    assert all(record_size(c.key, c.value, c.headers) <= 2500 for c in plan.commands)
    assert (partition_for(TOPICS.batches, b"21"), b"21") not in plan.states  # nothing of it is kept


def test_an_input_whose_state_does_not_fit_the_changelog_is_dead_lettered_and_the_state_kept():
    store = DictStore()
    run([here(30, 0)], store)
    slot = (partition_for(TOPICS.batches, b"30"), b"30")
    before = store.data[slot]
    wide = batch(30, user_attributes={f"attribute_{i:03d}": i for i in range(120)})
    plan = run([here(30, 1, value=wide)], store, limits={"out.changelog": 1500})
    assert reasons(plan) == [STATE_TOO_LARGE] and not plan.commands and slot not in plan.states
    assert store.data[slot] == before


def test_a_stored_state_over_the_limit_is_reset_not_a_reason_to_refuse_the_user():
    """States written before the caps (megabytes of audiences) start afresh, like unreadable ones."""
    store = DictStore()
    key = b"31"
    huge = UserState(customer_id="c-31", audiences={str(i): "n" * 100 for i in range(1000)})
    store.data[(partition_for(TOPICS.batches, key), key)] = encode_state(huge)
    seen = []
    plan = plan_chunk([here(31)], TOPICS_WITH_CHANGELOG, SETTINGS, store.get, partition_for,
                      on_state_reset=lambda k, exc: seen.append(k))
    assert seen == [key] and plan.counts.state_resets == 1 and not plan.dead_letters
    assert len(plan.states[(partition_for(TOPICS.batches, key), key)]) < MAX_STATE_BYTES


def test_record_size_bounds_what_kafka_counts_for_a_one_record_batch():
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    for key, value, headers in [
        (None, b"", []),
        (b"k", b"v" * 300, [("a", b"b")]),
        (b"k" * 99, b"v" * 70000, [("h" * 30, b"x" * 1000)] * 5),
    ]:
        builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, 0, batch_size=10**7)
        builder.append(0, 1_700_000_000_000, key, value, headers)
        assert len(builder.build()) <= record_size(key, value, headers) <= len(builder.build()) + 40 + 10 * len(headers)


# ---- item 7: one audience message for many users is split in one pass ------------------------------


def test_splitting_an_audience_message_parses_it_once_whatever_the_number_of_users(monkeypatch):
    loads = []
    counting = types.SimpleNamespace(loads=lambda raw: loads.append(1) or orjson.loads(raw), dumps=orjson.dumps)
    monkeypatch.setattr(plan_builder_module, "orjson", counting)
    twice = next(m for m in range(1001, 1400) if partition_for(TOPICS.audiences, str(m).encode()) != 0)
    profiles = [(m, 10 + m % 3, "A") for m in range(1000, 1400)] + [(1000, 99, "Z"), (twice, 98, "Y")]
    value = audience_message(*profiles)
    plan = run([Rec(TOPICS.audiences, 0, 0, b"1000", value)])
    assert len(loads) <= 1
    remote = {str(m) for m, _, _ in profiles if partition_for(TOPICS.audiences, str(m).encode()) != 0} - {"1000"}
    assert len(plan.forwards) == len(remote) == plan.counts.forwarded
    for forward in plan.forwards:
        message = orjson.loads(forward.value)
        assert {p["mpid"] for p in message["user_profiles"]} == {forward.key.decode()}
        assert len(message["user_profiles"]) == (2 if forward.key == str(twice).encode() else 1)
        assert message["id"] == "x" and forward.partition == partition_for(TOPICS.audiences, forward.key)
    assert sorted(f.key.decode() for f in plan.forwards) == sorted(remote)
    mine = [m for m, _, _ in profiles if str(m) not in remote]
    assert plan.counts.audience_profiles == len(mine)


def test_each_produced_record_fits_its_topic_for_any_input():
    limits = {TOPICS.commands: 4000, TOPICS.dead_letters: 600, TOPICS.batches: 100_000, TOPICS.audiences: 100_000,
              "out.changelog": 2000}
    records = [
        here(40, 0, value=b"z" * 3000),
        here(41, 1, value=batch(41, user_attributes={f"a{i}": "v" * 200 for i in range(40)})),
        here(42, 2, value=batch(42, track("E", 1_700_000_000_000, "m"))),
        Rec(TOPICS.batches, 0, 3, b"43", None),
    ]
    plan = run(records, limits=limits)
    for out in plan.commands + plan.dead_letters + plan.forwards:
        assert record_size(out.key, out.value, out.headers) <= limits[out.topic]
    for (_, key), state in plan.states.items():
        assert record_size(key, state, None) <= limits["out.changelog"]
        decode_state(state)
    assert len(plan.dead_letters) + plan.counts.batches == len(records)
