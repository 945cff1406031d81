"""`cioproc status` and `cioproc inspect` against a running processor and sender (real broker,
real sandbox), the sender's credential check at start, and the end-to-end latency histogram."""

from __future__ import annotations

import json
import time

import orjson
import pytest
from pipeline_harness import Pipeline

pytestmark = pytest.mark.kafka
NOW_MS = int(time.time() * 1000)


def batch(mpid: int, *names: str) -> bytes:
    return orjson.dumps({
        "mpid": mpid,
        "user_identities": {"customer_id": f"c-{mpid}"},
        "events": [{"event_type": "custom_event",
                    "data": {"event_name": name, "timestamp_unixtime_ms": NOW_MS - 1000,
                             "source_message_id": f"m-{mpid}-{i}"}} for i, name in enumerate(names)],
    })


def status(p: Pipeline) -> dict:
    result = p.cli("status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def inspect(p: Pipeline, *args: str) -> list[dict]:
    result = p.cli("inspect", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_status_and_inspect_show_groups_lag_and_records(pipeline):
    p = pipeline
    p.start_sandbox()
    p.set_faults(reject_event_names=["Refund"])
    p.start_worker("proc", role="processor")
    p.start_worker("send", role="sender")
    records = [("batches", str(m), batch(m, "Play", "Pause")) for m in range(1, 7)]
    records.append(("batches", "3", batch(3, "Refund")))
    records.append(("batches", "9", b"{not json"))
    p.produce(records)

    def settled() -> bool:
        try:
            out = p.metric("cioproc_commands_out_total", "proc")
            done = p.metric("cioproc_commands_delivered_total", "send") + p.metric("cioproc_dlq_writes_total", "send")
            return out > 0 and done >= out
        except Exception:
            return False

    p.wait_for(settled, 120, "every command delivered or dead-lettered")
    delivered = p.metric("cioproc_commands_delivered_total", "send")
    # The input's timestamp reached the sender with each command: one latency sample per delivery.
    assert p.metric("cioproc_end_to_end_latency_seconds_count", "send") == delivered
    assert "Customer.io accepts the credentials: region us" in p.log("send")
    # Dead-letter counts carry the dead-letter topic's real name.
    assert p.metric("cioproc_dlq_writes_total", "send", topic=p.topics.by_role("commands_dlq").name) == 1
    assert p.metric("cioproc_dlq_writes_total", "proc", topic=p.topics.by_role("batches_dlq").name) == 1

    def caught_up() -> bool:
        s = status(p)
        return all(g["lag"] == 0 for g in s["groups"]) and all(  # read to the end, and committed there
            part["committed"] == part["end"] for g in s["groups"][:2] for part in g["partitions"] if part["end"])

    p.wait_for(caught_up, 60, "committed offsets at the end of every partition")
    s = status(p)
    processor, sender, redrive = s["groups"]
    assert (processor["name"], processor["group"]) == ("processor", p.app_id)
    assert [m["client_id"] for m in processor["members"]] == ["cioproc-processor"]
    batches_topic, commands_topic = p.topics.by_role("batches").name, p.topics.by_role("commands").name
    assert processor["members"][0]["partitions"][batches_topic] == [0, 1, 2, 3]
    assert {part["topic"] for part in processor["partitions"]} == {batches_topic, p.topics.by_role("audiences").name}
    assert sum(part["end"] for part in processor["partitions"] if part["topic"] == batches_topic) == len(records)
    assert (sender["group"], [m["client_id"] for m in sender["members"]]) == (f"{p.app_id}-sender", ["cioproc-sender"])
    assert {part["topic"] for part in sender["partitions"]} == {commands_topic}
    assert redrive["members"] == [] and redrive["partitions"] == []
    assert {d["topic"]: d["records"] for d in s["dead_letters"]} == {
        p.topics.by_role("batches_dlq").name: 1, p.topics.by_role("commands_dlq").name: 1}
    table = p.cli("status").stdout
    assert f"sender group '{p.app_id}-sender'" in table and "member cioproc-sender at" in table

    # Dead letters: why, from where, Customer.io's answer, and the command's fields.
    [refused] = inspect(p, "dlq")
    assert refused["reason"] and refused["source_topic"] == commands_topic and refused["source_offset"] >= 0
    assert refused["http_status"] in (207, 400) and "Refund" in refused["error"]
    assert (refused["value"]["kind"], refused["value"]["name"], refused["value"]["mpid"]) == ("track", "Refund", "3")
    [bad_input] = inspect(p, "dlq", "--source", "batches")
    assert bad_input["source_topic"] == batches_topic and bad_input["value"] == "{not json"
    assert bad_input["reason"] and bad_input["http_status"] is None

    # Commands: one MPID's, from one partition and offset, from a time.
    mine = inspect(p, "commands", "--key", "3")
    assert mine and {c["mpid"] for c in mine} == {"3"}
    assert {c["name"] for c in mine if c["kind"] == "track"} == {"Play", "Pause", "Refund"}
    assert all(c["input_time"] is not None and c["identifier"] == {"id": "c-3"} for c in mine)
    first = mine[0]
    [again] = inspect(p, "commands", "--partition", str(first["partition"]), "--offset", str(first["offset"]),
                      "--limit", "1")
    assert again == first
    assert len(inspect(p, "commands", "--limit", "2")) == 2
    assert inspect(p, "commands", "--from-time", str(int(time.time() * 1000) + 3_600_000)) == []

    # `replay dlq` shows its progress (here: a dry run over the one dead letter).
    dry = p.cli("replay", "dlq", "--source", "commands", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "re-drive   [##############################] 100.0% (1/1)" in dry.stderr


def test_a_stopped_broker_is_one_line_for_status_and_inspect(pipeline):
    for args in (("status",), ("inspect", "commands"), ("inspect", "dlq")):
        result = pipeline.cli(*args, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
        assert result.returncode == 1, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: cannot read"), args
        assert result.stdout == ""


def test_a_sender_with_a_bad_key_logs_the_refusal_at_start(pipeline):
    p = pipeline
    p.start_sandbox()
    p.start_worker("send", role="sender", CIO_API_KEY="not-the-key-0000")
    p.wait_for(lambda: "Customer.io credentials check: Customer.io refused" in p.log("send"), 60,
               "the credential check's error line")
    assert "not-the-key-0000" not in p.log("send")
