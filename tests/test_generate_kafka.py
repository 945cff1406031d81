"""`cioproc produce` against the real broker: every line lands on the topic of its role, keyed by MPID, in order."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from cioproc.generate import Record, Summary, generate
from cioproc.generate.cli import produce_main
from cioproc.generate.jsonlines import encode_line
from cioproc.generate.produce import ProduceError, produce_records
from cioproc.kafka.admin import reconcile
from cioproc.kafka.topics import TopicsFile, load_topics

REPO = Path(__file__).resolve().parents[1]
NOW_MS = 1_760_000_000_000
pytestmark = pytest.mark.kafka


def _topics_file(tmp_path: Path, unique: str) -> Path:
    doc = yaml.safe_load((REPO / "topics.yaml").read_text())
    for topic in doc["topics"]:
        topic["name"] = f"{topic['name']}.{unique}"
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


async def _created(tmp_path: Path, unique: str, bootstrap: str) -> tuple[Path, TopicsFile]:
    path = _topics_file(tmp_path, unique)
    topics = load_topics(path)
    report = await reconcile(topics, bootstrap, create=True)
    assert report.ok, report
    return path, topics


async def _read_back(bootstrap: str, topic: str, partitions: int, expected: int) -> list[tuple[int, str, dict]]:
    """(partition, key, value) of every message, partition by partition in offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        got: list[tuple[int, int, str, dict]] = []
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < expected and asyncio.get_running_loop().time() < deadline:
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                got += [(tp.partition, m.offset, m.key.decode(), orjson.loads(m.value)) for m in messages]
        return [(p, k, v) for p, _o, k, v in sorted(got, key=lambda g: (g[0], g[1]))]
    finally:
        await consumer.stop()


def _check_landed(records: list[Record], landed: list[tuple[int, str, dict]]) -> None:
    """Same messages, each key on one partition, and each key's messages in generation order."""
    assert len(landed) == len(records)
    partitions_of_key: dict[str, set[int]] = defaultdict(set)
    landed_by_key: dict[str, list[dict]] = defaultdict(list)
    for partition, key, value in landed:
        partitions_of_key[key].add(partition)
        landed_by_key[key].append(value)
    sent_by_key: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        sent_by_key[record.key].append(orjson.loads(orjson.dumps(record.value)))
    assert landed_by_key == sent_by_key
    assert all(len(p) == 1 for p in partitions_of_key.values())


async def test_produce_records_sends_generated_data_to_the_topics_by_role(kafka_bootstrap, tmp_path, unique):
    _path, topics = await _created(tmp_path, unique, kafka_bootstrap)
    summary = Summary()
    records = list(generate(60, 600, 13, now_ms=NOW_MS, summary=summary))
    progress: list[int] = []
    acked = await produce_records(records, kafka_bootstrap, topics, progress=progress.append, linger_ms=5)
    assert acked == len(records) == summary.batches + summary.audience_messages
    assert progress and progress[-1] == acked and progress == sorted(progress)

    batches = topics.by_role("batches")
    landed = await _read_back(kafka_bootstrap, batches.name, batches.partitions, summary.batches)
    _check_landed([r for r in records if r.topic_role == "batches"], landed)
    assert sum(len(v["events"]) for _p, _k, v in landed) == 600

    audiences = topics.by_role("audiences")
    landed = await _read_back(kafka_bootstrap, audiences.name, audiences.partitions, summary.audience_messages)
    _check_landed([r for r in records if r.topic_role == "audiences"], landed)


async def test_produce_records_takes_an_async_iterable(kafka_bootstrap, tmp_path, unique):
    _path, topics = await _created(tmp_path, unique, kafka_bootstrap)

    async def records():
        for i in range(5):
            yield Record("batches", str(i), {"events": [], "mpid": i})

    assert await produce_records(records(), kafka_bootstrap, topics, compression="gzip") == 5
    spec = topics.by_role("batches")
    landed = await _read_back(kafka_bootstrap, spec.name, spec.partitions, 5)
    assert sorted(k for _p, k, _v in landed) == ["0", "1", "2", "3", "4"]


async def test_a_missing_topic_is_named(kafka_bootstrap, tmp_path, unique):
    topics = load_topics(_topics_file(tmp_path, unique))  # declared, never created
    with pytest.raises(ProduceError) as error:
        await produce_records([Record("audiences", "1", {})], kafka_bootstrap, topics)
    assert f"topic 'mparticle.audiences.{unique}' (role audiences) does not exist" in str(error.value)
    assert "cioproc topics apply" in str(error.value)


async def test_produce_cli_sends_good_lines_reports_bad_ones_and_exits_1(
    kafka_bootstrap, tmp_path, unique, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # no stray .env
    path, topics = await _created(tmp_path, unique, kafka_bootstrap)
    records = list(generate(20, 150, 8, now_ms=NOW_MS))
    bare = {"events": [], "mpid": 123, "user_identities": {"customer_id": "c1"}}
    lines = [encode_line(r) for r in records]
    lines.insert(3, b"this is not json\n")
    lines.insert(7, b'{"topic":"commands","key":"1","value":{}}\n')
    lines.append(orjson.dumps(bare) + b"\n")
    data = tmp_path / "data.jsonl"
    data.write_bytes(b"".join(lines))

    status = await asyncio.to_thread(
        produce_main, [str(data), "--bootstrap", kafka_bootstrap, "--topics-file", str(path)]
    )
    err = capsys.readouterr().err
    assert status == 1
    assert "line 4: not valid JSON" in err and "line 8: 'topic' must be one of" in err
    assert "skipped 2 bad line(s)" in err
    n_batches = sum(r.topic_role == "batches" for r in records) + 1
    n_audiences = len(records) + 1 - n_batches
    assert f"produced {len(records) + 1:,} messages ({n_batches:,} to mparticle.batches.{unique}" in err

    spec = topics.by_role("batches")
    landed = await _read_back(kafka_bootstrap, spec.name, spec.partitions, n_batches)
    _check_landed([r for r in records if r.topic_role == "batches"] + [Record("batches", "123", bare)], landed)
    spec = topics.by_role("audiences")
    assert len(await _read_back(kafka_bootstrap, spec.name, spec.partitions, n_audiences)) == n_audiences


async def test_produce_cli_on_a_clean_file_exits_0(kafka_bootstrap, tmp_path, unique, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path, _topics = await _created(tmp_path, unique, kafka_bootstrap)
    data = tmp_path / "data.jsonl"
    data.write_bytes(b"".join(encode_line(r) for r in generate(5, 40, 1, now_ms=NOW_MS)))
    argv = [str(data), "--bootstrap", kafka_bootstrap, "--topics-file", str(path), "--quiet"]
    assert await asyncio.to_thread(produce_main, argv) == 0
    assert capsys.readouterr().err == ""
