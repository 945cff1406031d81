"""`cioproc check`: one line per problem, exit 0 only when all is well (real broker, real sandbox)."""

from __future__ import annotations

import pytest
from helpers_kafka import create_topics, write_topics_file
from ops_helpers import KEY, SITE, ThreadSandbox, problems, run_cli

pytestmark = pytest.mark.kafka


@pytest.fixture
def sandbox():
    s = ThreadSandbox()
    yield s
    s.close()


@pytest.fixture
def eu_sandbox():
    s = ThreadSandbox(region="eu")
    yield s
    s.close()


@pytest.fixture
def topics_env(kafka_bootstrap, unique, tmp_path):
    app_id = f"check-{unique}"
    path, topics = write_topics_file(tmp_path, unique, app_id)
    create_topics(kafka_bootstrap, topics)
    return {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "CIOPROC_TOPICS_FILE": str(path), "CIOPROC_APP_ID": app_id}


def test_all_is_well_exits_0_with_an_ok_line_per_check(sandbox, topics_env):
    result = run_cli("check", CIO_SITE_ID=SITE, CIO_API_KEY=KEY, CIO_TRACK_URL=sandbox.url, **topics_env)
    assert result.returncode == 0, result.stderr
    assert problems(result) == []
    for area in ("config:", "topics file:", "kafka:", "topics:", "customer.io: credentials accepted"):
        assert any(line.startswith(f"ok       {area}") for line in result.stdout.splitlines()), (area, result.stdout)
    assert "region us, environment 1" in result.stdout


def test_a_bad_key_is_one_line_without_the_key(sandbox, topics_env):
    result = run_cli("check", "--role", "sender", CIO_SITE_ID=SITE, CIO_API_KEY="wrong-key-123456",
                     CIO_TRACK_URL=sandbox.url, **topics_env)
    assert result.returncode == 1
    assert len(problems(result)) == 1, result.stderr
    assert "refused CIO_SITE_ID/CIO_API_KEY" in problems(result)[0] and "HTTP 401" in problems(result)[0]
    assert "wrong-key-123456" not in result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_a_wrong_region_is_one_line_naming_the_right_one(eu_sandbox, topics_env):
    result = run_cli("check", "--role", "sender", CIO_SITE_ID=SITE, CIO_API_KEY=KEY, CIO_REGION="us",
                     CIO_TRACK_URL=eu_sandbox.url, **topics_env)
    assert result.returncode == 1
    assert problems(result) == ["problem  customer.io: CIO_REGION=us but the workspace of these credentials is in "
                                "region eu: set CIO_REGION=eu"]


def test_a_stopped_broker_is_one_line(sandbox, topics_env):
    env = {**topics_env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    result = run_cli("check", "--role", "processor", **env)
    assert result.returncode == 1
    assert len(problems(result)) == 1, result.stderr
    assert problems(result)[0].startswith("problem  kafka: cannot reach KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1")
    assert result.stderr.count("\n") == 1, result.stderr  # nothing else: no client library log lines


def test_missing_topics_are_a_line_each(kafka_bootstrap, unique, tmp_path):
    app_id = f"check-{unique}"
    path, _ = write_topics_file(tmp_path, unique, app_id)  # not created
    result = run_cli("check", "--role", "sender", CIO_SITE_ID=SITE, CIO_API_KEY=KEY,
                     CIO_TRACK_URL="http://127.0.0.1:1", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                     CIOPROC_TOPICS_FILE=str(path), CIOPROC_APP_ID=app_id)
    assert result.returncode == 1
    lines = problems(result)
    assert sum("does not exist" in line for line in lines) == 3, lines  # commands, commands_dlq, erasure results
    assert any(line.startswith("problem  customer.io: cannot reach the Track API at http://127.0.0.1:1")
               for line in lines), lines
    assert len(lines) == 4  # the three topics and Customer.io


def test_the_processor_needs_no_credentials_the_sender_does(topics_env):
    assert run_cli("check", "--role", "processor", **topics_env).returncode == 0
    result = run_cli("check", "--role", "sender", **topics_env)
    assert result.returncode == 1
    assert [line.split(":")[1].strip() for line in problems(result)] == [
        "CIO_SITE_ID is not set",
        "CIO_API_KEY is not set",
    ]


def test_invalid_configuration_exits_2_with_a_line_per_variable(topics_env):
    result = run_cli("check", CIO_REGION="mars", CIOPROC_STORE="paper", **topics_env)
    assert result.returncode == 2
    assert len(problems(result)) == 2 and "CIO_REGION" in result.stderr and "CIOPROC_STORE" in result.stderr
    assert "Traceback" not in result.stderr
