"""Topics as code: `topics.yaml` declares the pipeline's topics; apply creates, check reports.

The file is parsed strictly (unknown keys, missing fields and wrong types are errors that
name the topic and field). Apply creates what is missing and reports drift (another
partition count, replication factor or config value) without changing it: it never
deletes, shrinks or repartitions, because changing a keyed topic's partition count moves
users between partitions and breaks co-partitioning with the user table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cioproc.config import setting_for
from cioproc.errors import ConfigurationError

ROLES = (
    "batches",  # mparticle.batches: inbound mParticle event batches
    "audiences",  # mparticle.audiences: audience membership changes
    "commands",  # cio.commands: Customer.io commands (msgpack)
    "batches_dlq",  # mparticle.batches.dlq: input that could not be decoded or mapped
    "commands_dlq",  # cio.commands.dlq: commands Customer.io refused for good
    "table_changelog",  # the user table's changelog (name fixed by Faust: <app id>-users-changelog)
    "erasures",  # mparticle.dsr: data subject requests (OpenDSR JSON), keyed by MPID
    "erasure_results",  # mparticle.dsr.results: one result per request, keyed by request id
)
TOPIC_KEYS = {"name", "role", "partitions", "replication_factor", "config", "description"}
REQUIRED_KEYS = ("name", "role", "partitions", "replication_factor")
DEFAULT_FILE = str(setting_for("topics_file").default)


class TopicsFileError(ConfigurationError, ValueError):
    """topics.yaml is not valid; the message is one line naming the topic and the field."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    role: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicsFile:
    path: Path
    topics: tuple[TopicSpec, ...]

    def by_role(self, role: str) -> TopicSpec:
        for topic in self.topics:
            if topic.role == role:
                return topic
        raise TopicsFileError(f"{self.path}: no topic with role {role!r}")


def load_topics(path: Path | str) -> TopicsFile:
    """Read and validate a topics file; raise TopicsFileError with one clear line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TopicsFileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise TopicsFileError(f"{path}: not valid YAML{where}") from None
    return parse_topics(data, path)


def parse_topics(data: Any, path: Path | str = DEFAULT_FILE) -> TopicsFile:
    """Validate the parsed YAML document of a topics file."""
    path = Path(path)
    if not isinstance(data, dict) or set(data) != {"topics"}:
        raise TopicsFileError(f"{path}: the document must be a mapping with exactly one key, 'topics'")
    entries = data["topics"]
    if not isinstance(entries, list) or not entries:
        raise TopicsFileError(f"{path}: 'topics' must be a non-empty list")
    specs: list[TopicSpec] = []
    for index, entry in enumerate(entries):
        specs.append(_parse_topic(entry, index, path))
    _check_unique(specs, path)
    return TopicsFile(path=path, topics=tuple(specs))


def _parse_topic(entry: Any, index: int, path: Path) -> TopicSpec:
    label = f"topic #{index + 1}"
    if not isinstance(entry, dict):
        raise TopicsFileError(f"{path}: {label}: must be a mapping, got {type(entry).__name__}")
    name = entry.get("name")
    if isinstance(name, str) and name:
        label = f"topic '{name}'"
    unknown = sorted(str(k) for k in set(entry) - TOPIC_KEYS)
    if unknown:
        raise TopicsFileError(
            f"{path}: {label}: unknown field '{unknown[0]}' (allowed: {', '.join(sorted(TOPIC_KEYS))})"
        )
    for key in REQUIRED_KEYS:
        if key not in entry:
            raise TopicsFileError(f"{path}: {label}: missing field '{key}'")
    if not isinstance(name, str) or not name or not _valid_topic_name(name):
        raise TopicsFileError(f"{path}: {label}: field 'name' must be a Kafka topic name, got {name!r}")
    role = entry["role"]
    if role not in ROLES:
        raise TopicsFileError(f"{path}: {label}: field 'role' must be one of {', '.join(ROLES)}, got {role!r}")
    for key in ("partitions", "replication_factor"):
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TopicsFileError(f"{path}: {label}: field '{key}' must be a positive integer, got {value!r}")
    config = entry.get("config") or {}
    if not isinstance(config, dict):
        raise TopicsFileError(f"{path}: {label}: field 'config' must be a mapping of Kafka topic configs")
    clean: dict[str, str] = {}
    for key, value in config.items():
        if not isinstance(key, str) or isinstance(value, (dict, list)) or value is None:
            raise TopicsFileError(f"{path}: {label}: field 'config.{key}' must be a scalar value, got {value!r}")
        clean[key] = _config_str(value)
    return TopicSpec(name, role, entry["partitions"], entry["replication_factor"], clean)


def _check_unique(specs: list[TopicSpec], path: Path) -> None:
    names: set[str] = set()
    roles: set[str] = set()
    for spec in specs:
        if spec.name in names:
            raise TopicsFileError(f"{path}: topic '{spec.name}': field 'name' is declared twice")
        if spec.role in roles:
            raise TopicsFileError(f"{path}: topic '{spec.name}': field 'role' {spec.role!r} is declared twice")
        names.add(spec.name)
        roles.add(spec.role)
    missing = [role for role in ROLES if role not in roles]
    if missing:
        raise TopicsFileError(f"{path}: no topic declares role '{missing[0]}'")
    by_role = {s.role: s for s in specs}
    for role in ("audiences", "erasures", "table_changelog"):
        if by_role[role].partitions != by_role["batches"].partitions:
            raise TopicsFileError(
                f"{path}: topic '{by_role[role].name}': field 'partitions' must equal the batches topic's "
                f"(the batches, audiences and erasures topics and the table changelog are co-partitioned by MPID)"
            )


def _valid_topic_name(name: str) -> bool:
    return len(name) <= 249 and name not in (".", "..") and all(c.isalnum() or c in "._-" for c in name)


def _config_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---- comparing with the cluster (pure) ---------------------------------------------------


@dataclass(frozen=True)
class ActualTopic:
    """What the cluster reports for one topic."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


def drift(spec: TopicSpec, actual: ActualTopic) -> list[str]:
    """Human-readable differences between a declared topic and the cluster's."""
    problems = []
    if actual.partitions != spec.partitions:
        problems.append(
            f"topic '{spec.name}': partitions is {actual.partitions} in the cluster, {spec.partitions} in "
            f"{DEFAULT_FILE} (not changed: repartitioning a keyed topic moves users between partitions)"
        )
    if actual.replication_factor != spec.replication_factor:
        problems.append(
            f"topic '{spec.name}': replication_factor is {actual.replication_factor} in the cluster, "
            f"{spec.replication_factor} in {DEFAULT_FILE} (not changed)"
        )
    for key, value in sorted(spec.config.items()):
        if actual.config.get(key) != value:
            problems.append(
                f"topic '{spec.name}': config {key} is {actual.config.get(key)!r} in the cluster, {value!r} in "
                f"{DEFAULT_FILE} (not changed)"
            )
    return problems
