"""topics.yaml parsing: strict, one clear line naming topic and field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from cioproc.kafka.topics import ROLES, ActualTopic, TopicsFileError, drift, load_topics, parse_topics

REPO = Path(__file__).resolve().parents[1]


def good() -> dict:
    return yaml.safe_load((REPO / "topics.yaml").read_text())


def test_repo_topics_file_declares_every_role_once():
    topics = load_topics(REPO / "topics.yaml")
    assert sorted(t.role for t in topics.topics) == sorted(ROLES)
    keyed = {topics.by_role(r).partitions for r in ("batches", "audiences", "table_changelog")}
    assert len(keyed) == 1
    assert topics.by_role("table_changelog").config["cleanup.policy"] == "compact"


def _mutate(fn):
    doc = good()
    fn(doc["topics"][0])
    return doc


@pytest.mark.parametrize(
    "mutation, expected",
    [
        (lambda t: t.pop("partitions"), "topic 'mparticle.batches': missing field 'partitions'"),
        (lambda t: t.pop("replication_factor"), "topic 'mparticle.batches': missing field 'replication_factor'"),
        (lambda t: t.pop("role"), "topic 'mparticle.batches': missing field 'role'"),
        (
            lambda t: t.update(partitions="eight"),
            "topic 'mparticle.batches': field 'partitions' must be a positive integer, got 'eight'",
        ),
        (lambda t: t.update(partitions=0), "field 'partitions' must be a positive integer, got 0"),
        (lambda t: t.update(partitions=True), "field 'partitions' must be a positive integer, got True"),
        (lambda t: t.update(replication_factor=1.5), "field 'replication_factor' must be a positive integer, got 1.5"),
        (lambda t: t.update(partitoins=8), "topic 'mparticle.batches': unknown field 'partitoins'"),
        (lambda t: t.update(role="inbox"), "field 'role' must be one of"),
        (lambda t: t.update(name="bad name!"), "field 'name' must be a Kafka topic name"),
        (lambda t: t.update(config=["a"]), "field 'config' must be a mapping"),
        (lambda t: t.update(config={"retention.ms": None}), "field 'config.retention.ms' must be a scalar value"),
    ],
)
def test_bad_topic_entries_give_one_clear_line(mutation, expected):
    with pytest.raises(TopicsFileError) as info:
        parse_topics(_mutate(mutation), "topics.yaml")
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_missing_name_is_reported_by_position():
    doc = _mutate(lambda t: t.pop("name"))
    with pytest.raises(TopicsFileError, match=r"topic #1: missing field 'name'"):
        parse_topics(doc)


def test_document_shape_errors():
    for doc, expected in [
        ([], "exactly one key, 'topics'"),
        ({"topics": []}, "'topics' must be a non-empty list"),
        ({"topics": ["x"]}, "topic #1: must be a mapping"),
        ({"topics": good()["topics"], "extra": 1}, "exactly one key, 'topics'"),
    ]:
        with pytest.raises(TopicsFileError, match=expected):
            parse_topics(doc)


def test_duplicates_and_missing_roles_and_copartitioning():
    doc = good()
    doc["topics"].append(copy.deepcopy(doc["topics"][0]))
    with pytest.raises(TopicsFileError, match="field 'name' is declared twice"):
        parse_topics(doc)
    doc = good()
    doc["topics"] = [t for t in doc["topics"] if t["role"] != "commands_dlq"]
    with pytest.raises(TopicsFileError, match="no topic declares role 'commands_dlq'"):
        parse_topics(doc)
    doc = good()
    next(t for t in doc["topics"] if t["role"] == "audiences")["partitions"] = 3
    with pytest.raises(TopicsFileError, match="co-partitioned"):
        parse_topics(doc)


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(TopicsFileError, match="cannot read"):
        load_topics(tmp_path / "nope.yaml")
    bad = tmp_path / "t.yaml"
    bad.write_text("topics: [\n  - name: x\n   bad")
    with pytest.raises(TopicsFileError, match="not valid YAML"):
        load_topics(bad)


def test_drift_names_each_difference_and_accepts_a_match():
    spec = load_topics(REPO / "topics.yaml").by_role("table_changelog")
    same = ActualTopic(spec.name, spec.partitions, spec.replication_factor, {**spec.config, "x": "y"})
    assert drift(spec, same) == []
    other = ActualTopic(spec.name, spec.partitions + 1, 3, {**spec.config, "cleanup.policy": "delete"})
    problems = drift(spec, other)
    assert len(problems) == 3
    assert "partitions is 9 in the cluster, 8" in problems[0]
    assert "replication_factor is 3" in problems[1]
    assert "cleanup.policy is 'delete'" in problems[2]
