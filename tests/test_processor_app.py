"""The Faust app as built for each role, and the table store access, without a broker."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import yaml
from faust.types import TP

from cioproc.app.factory import SENDER_MODULE, create_app
from cioproc.app.faust_config import StartupError
from cioproc.app.processor import Processor
from cioproc.app.table_store import TableStore
from cioproc.config import parse_config
from cioproc.kafka.topics import load_topics

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def topics(tmp_path):
    doc = yaml.safe_load((REPO / "topics.yaml").read_text())
    for topic in doc["topics"]:
        if topic["role"] == "table_changelog":
            topic["name"] = "unit-users-changelog"
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_topics(path)


def config(tmp_path, **env):
    return parse_config({"CIOPROC_DATA_DIR": str(tmp_path / "data"), **env})


def test_processor_role_routes_both_inputs_to_one_processor_and_declares_the_users_table(tmp_path, topics):
    app = create_app("processor", config(tmp_path), topics, app_id="unit")
    assert set(app.batch_routes) == {"mparticle.batches", "mparticle.audiences", "mparticle.dsr"}
    assert len(set(app.batch_routes.values())) == 1 and isinstance(app.processor, Processor)
    table = app.tables["users"]
    assert table.changelog_topic.get_topic_name() == "unit-users-changelog"
    assert table.partitions == topics.by_role("table_changelog").partitions
    assert app.conf.id == "unit" and not app.conf.topic_allow_declare


def test_unknown_role_and_a_changelog_for_another_app_id_are_refused(tmp_path, topics):
    with pytest.raises(StartupError, match="unknown role 'everything'"):
        create_app("everything", config(tmp_path), topics, app_id="unit")
    with pytest.raises(StartupError, match="unit-users-changelog"):
        create_app("processor", config(tmp_path), topics, app_id="cioproc")


def test_sender_roles_attach_the_sender_module_with_app_config_and_topics(tmp_path, topics, monkeypatch):
    calls = []
    module = types.ModuleType(SENDER_MODULE)
    module.attach = lambda app, cfg, tps: calls.append((app, cfg, tps))
    monkeypatch.setitem(sys.modules, SENDER_MODULE, module)
    cfg = config(tmp_path)
    sender = create_app("sender", cfg, topics, app_id="unit")
    assert calls == [(sender, cfg, topics)]
    assert sender.processor is None and "users" not in sender.tables and not sender.batch_routes
    both = create_app("all", cfg, topics, app_id="unit")
    assert calls[-1][0] is both and both.processor is not None


def test_a_missing_sender_module_is_one_clear_error(tmp_path, topics, monkeypatch):
    monkeypatch.setitem(sys.modules, SENDER_MODULE, None)  # import raises ModuleNotFoundError
    with pytest.raises(StartupError, match="--role processor"):
        create_app("all", config(tmp_path), topics, app_id="unit")


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_table_store_reads_and_writes_by_partition(tmp_path, topics, store):
    app = create_app("processor", config(tmp_path, CIOPROC_STORE=store), topics, app_id="unit")
    Path(app.conf.tabledir).mkdir(parents=True, exist_ok=True)
    table = app.tables["users"]
    access = TableStore(table, "unit-users-changelog")
    assert access.get(3, b"u1") is None
    access.put({(3, b"u1"): b"state-1", (5, b"u2"): b"state-2"}, {3: 41, 5: 7})
    assert access.get(3, b"u1") == b"state-1" and access.get(5, b"u2") == b"state-2"
    access.put({(3, b"u1"): b"state-1b"}, {3: 42})
    assert access.get(3, b"u1") == b"state-1b"
    data = table.data
    if store == "rocksdb":
        assert data.persisted_offset(TP("unit-users-changelog", 3)) == 42
        assert data.persisted_offset(TP("unit-users-changelog", 5)) == 7
        assert data._get(b"u2") == b"state-2"  # Faust's own lookup across partitions finds it
        for db in data._dbs.values():
            db.close()
    else:
        assert data[b"u1"] == b"state-1b" and data._key_partition == {b"u1": 3, b"u2": 5}
