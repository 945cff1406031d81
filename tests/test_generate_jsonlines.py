"""The JSON-lines format of `cioproc generate` / `cioproc produce`, and the generate CLI (no Kafka)."""

from __future__ import annotations

import json
import socket

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cioproc.generate import Record, Summary, generate
from cioproc.generate.cli import _read_lines, generate_main
from cioproc.generate.jsonlines import LineError, decode_line, encode_line
from cioproc.generate.produce import ProduceError, best_compression, compression_type, produce_records
from cioproc.kafka.topics import parse_topics

NOW_MS = 1_760_000_000_000
BATCH = {"events": [], "mpid": -42, "user_identities": {"email": "a@example.com"}}
AUDIENCE = {
    "type": "audience_membership_change_request",
    "user_profiles": [{"mpid": "7", "audiences": []}, {"mpid": "8"}],
}


def test_encode_decode_round_trip_of_generated_records():
    records = list(generate(30, 300, 9, now_ms=NOW_MS))
    assert {r.topic_role for r in records} == {"batches", "audiences"}
    for record in records:
        line = encode_line(record)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert json.loads(line) == {"topic": record.topic_role, "key": record.key, "value": record.value}
        assert decode_line(line) == record


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(
    role=st.sampled_from(["batches", "audiences"]),
    key=st.text(min_size=1) | st.integers(-(2**63), 2**63 - 1).map(str),
    value=st.dictionaries(st.text(max_size=10), JSON, max_size=6),
)
def test_property_any_record_round_trips(role, key, value):
    assert decode_line(encode_line(Record(role, key, value))) == Record(role, key, value)


@pytest.mark.parametrize(
    "line,expected",
    [
        (b'{"topic":"batches","key":"1","value":{"a":1}}', Record("batches", "1", {"a": 1})),
        (b'{"topic":"batches","key":12,"value":{}}', Record("batches", "12", {})),
        (b'{"topic":"batches","value":{"mpid":5}}', Record("batches", "5", {"mpid": 5})),
        (b'{"topic":"batches","key":null,"value":{"mpid":"6"}}', Record("batches", "6", {"mpid": "6"})),
        (orjson.dumps({"topic": "audiences", "value": AUDIENCE}), Record("audiences", "7", AUDIENCE)),
        (orjson.dumps(BATCH), Record("batches", "-42", BATCH)),  # a bare batch: keyed by its mpid
        (orjson.dumps(AUDIENCE), Record("audiences", "7", AUDIENCE)),  # a bare audience message
        ('{"events":[],"mpid":"9"}', Record("batches", "9", {"events": [], "mpid": "9"})),  # str input
        (b"", None),
        (b"   \n", None),
    ],
)
def test_decode_accepts(line, expected):
    assert decode_line(line) == expected


@pytest.mark.parametrize(
    "line,message",
    [
        (b"not json\n", "not valid JSON"),
        (b'{"topic":"batches",', "not valid JSON"),
        (b"[1, 2]", "expected a JSON object, got an array"),
        (b'"text"', "expected a JSON object, got a string"),
        (b"null", "expected a JSON object, got null"),
        (b'{"topic":"commands","key":"1","value":{}}', "'topic' must be one of batches, audiences"),
        (b'{"topic":"batches","key":"1","value":[1]}', "'value' must be a JSON object, got an array"),
        (b'{"topic":"batches","key":true,"value":{}}', "'key' must be a non-empty string or an integer"),
        (b'{"topic":"batches","key":"","value":{}}', "'key' must be a non-empty string or an integer"),
        (b'{"topic":"batches","key":"1","value":{},"extra":1}', "unknown envelope field 'extra'"),
        (b'{"topic":"batches","value":{}}', "no 'key' and no 'value.mpid'"),
        (b'{"topic":"audiences","value":{"user_profiles":[]}}', "needs user_profiles[0].mpid"),
        (b'{"type":"audience_membership_change_request"}', "needs user_profiles[0].mpid"),
        (b'{"events":[]}', "needs an 'mpid' to key it"),
        (b'{"events":[],"mpid":1.5}', "'mpid' must be a non-empty string or an integer"),
    ],
)
def test_decode_refuses_with_a_reason(line, message):
    with pytest.raises(LineError) as error:
        decode_line(line)
    assert message in str(error.value)


def test_read_lines_skips_and_counts_bad_lines_with_their_numbers(capsys):
    from collections import Counter

    lines = [
        b'{"events":[],"mpid":1}\n',
        b"oops\n",
        b"\n",
        b'{"topic":"x","value":{}}\n',
        orjson.dumps(AUDIENCE) + b"\n",
    ]
    bad: Counter = Counter()
    records = list(_read_lines(iter(lines), bad))
    assert [r.key for r in records] == ["1", "7"]
    assert bad["lines"] == 2
    err = capsys.readouterr().err
    assert "line 2: not valid JSON" in err and "line 4: 'topic' must be one of" in err


def test_read_lines_reports_the_first_twenty_then_only_the_total(capsys):
    from collections import Counter

    bad: Counter = Counter()
    assert list(_read_lines(iter([b"x\n"] * 30), bad)) == []
    err = capsys.readouterr().err
    assert bad["lines"] == 30
    assert err.count("not valid JSON") == 20 and "only the total" in err


# ---------------------------------------------------------------- generate CLI


def test_generate_cli_writes_the_generator_output_and_summary(tmp_path, capsys):
    out, summary_file = tmp_path / "data.jsonl", tmp_path / "summary.json"
    argv = [
        "--users",
        "25",
        "--events",
        "250",
        "--seed",
        "4",
        "--now-ms",
        str(NOW_MS),
        "-o",
        str(out),
        "--summary",
        str(summary_file),
    ]
    assert generate_main(argv) == 0
    summary = Summary()
    expected = list(generate(25, 250, 4, now_ms=NOW_MS, summary=summary))
    decoded = [decode_line(line) for line in out.read_bytes().splitlines()]
    assert decoded == expected
    assert json.loads(summary_file.read_text()) == json.loads(json.dumps(summary.as_dict()))
    err = capsys.readouterr().err
    assert "generated 250 events in" in err and "(seed 4)" in err


def test_generate_cli_to_stdout_is_byte_identical_across_runs(capsysbinary):
    argv = ["--users", "10", "--events", "77", "--seed", "2", "--now-ms", str(NOW_MS), "--quiet"]
    assert generate_main(argv) == 0
    first = capsysbinary.readouterr()
    assert generate_main(argv) == 0
    second = capsysbinary.readouterr()
    assert first.out == second.out and first.err == b"" == second.err
    lines = first.out.splitlines()
    assert sum(len(json.loads(line)["value"].get("events", [])) for line in lines) == 77


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--users", "0"], "--users: must be at least 1, got 0"),
        (["--events", "-1"], "--events: must be at least 0, got -1"),
        (["--users", "many"], "--users: 'many' is not a whole number"),
    ],
)
def test_generate_cli_refuses_bad_sizes(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        generate_main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_generate_cli_accepts_thousands_separators(tmp_path):
    out = tmp_path / "d.jsonl"
    assert generate_main(["--users", "1_0", "--events", "1,000", "--now-ms", str(NOW_MS), "-o", str(out), "-q"]) == 0
    assert sum(len(json.loads(line)["value"].get("events", [])) for line in out.read_bytes().splitlines()) == 1000


# ---------------------------------------------------------------- produce without a broker


def test_compression_choice():
    assert compression_type("none") is None and compression_type(None) is None
    assert compression_type("gzip") == "gzip"
    assert compression_type("auto") == best_compression()
    assert best_compression() in ("lz4", "zstd", None)  # never gzip by default: too slow on CPU
    with pytest.raises(ProduceError):
        compression_type("brotli")


async def test_unreachable_broker_is_a_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    topics = parse_topics(
        {"topics": [
            {"name": n, "role": r, "partitions": 1, "replication_factor": 1}
            for n, r in [("b", "batches"), ("a", "audiences"), ("c", "commands"), ("bd", "batches_dlq"),
                         ("cd", "commands_dlq"), ("t", "table_changelog"), ("e", "erasures"),
                         ("er", "erasure_results")]
        ]}
    )  # fmt: skip
    with pytest.raises(ProduceError) as error:
        await produce_records(iter([Record("batches", "1", {})]), f"127.0.0.1:{port}", topics)
    assert f"cannot connect to Kafka at 127.0.0.1:{port}" in str(error.value)
