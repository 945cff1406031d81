"""A topics file and configuration for building the worker's Faust app without a broker
(test_processor_app.py, test_store_contract.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from cioproc.config import Config, parse_config
from cioproc.kafka.topics import TopicsFile, load_topics

REPO = Path(__file__).resolve().parents[1]
UNIT_CHANGELOG = "unit-users-changelog"  # the users table's changelog for app id "unit"


def unit_topics(tmp_path: Path) -> TopicsFile:
    """The repository's topics.yaml with the changelog renamed for app id ``unit``."""
    doc = yaml.safe_load((REPO / "topics.yaml").read_text())
    for topic in doc["topics"]:
        if topic["role"] == "table_changelog":
            topic["name"] = UNIT_CHANGELOG
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_topics(path)


def unit_config(tmp_path: Path, **env: str) -> Config:
    return parse_config({"CIOPROC_DATA_DIR": str(tmp_path / "data"), **env})
