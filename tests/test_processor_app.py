"""The Faust app as built for each role, without a broker (its table store: test_store_contract)."""

from __future__ import annotations

import sys
import types

import pytest
from helpers_app import unit_config, unit_topics

from cioproc.app.factory import SENDER_MODULE, create_app
from cioproc.app.faust_config import StartupError
from cioproc.app.processor import Processor


@pytest.fixture
def topics(tmp_path):
    return unit_topics(tmp_path)


config = unit_config


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
