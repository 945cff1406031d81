"""docker-compose.yml, the Dockerfile and the README agree with the code and topics.yaml."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from cioproc.config import VARIABLES
from cioproc.kafka.broker import BROKER_SETTINGS, KAFKA_VERSION, POM
from cioproc.kafka.topics import load_topics

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_kafka_is_the_tested_version_with_the_tested_settings():
    kafka = COMPOSE["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in POM.read_text()
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, like the local broker
    for key, value in BROKER_SETTINGS.items():
        name = "KAFKA_" + key.upper().replace(".", "_")
        assert env.get(name) == value, f"{name} differs from the local broker's {key}={value}"


def test_compose_passes_every_variable_the_code_reads():
    env = COMPOSE["x-cioproc-env"]
    missing = set(VARIABLES) - set(env)
    assert not missing, f"docker-compose.yml does not pass {sorted(missing)}"
    for name in ("processor", "sender", "topics-init"):
        assert COMPOSE["services"][name]["environment"] == env
    for name, value in env.items():
        match = re.fullmatch(r"\$\{(\w+):-(.*)\}", str(value))
        if match and VARIABLES.get(name) is not None and name not in ("KAFKA_BOOTSTRAP_SERVERS", "CIOPROC_STORE"):
            assert match.group(1) == name and match.group(2) == VARIABLES[name], f"{name} default differs"


def test_compose_roles_and_topic_init_match_the_cli_and_topics_file():
    services = COMPOSE["services"]
    assert services["topics-init"]["command"] == ["topics", "apply"]
    assert services["processor"]["command"] == ["worker", "--role", "processor"]
    assert services["sender"]["command"] == ["worker", "--role", "sender"]
    assert services["processor"]["depends_on"]["topics-init"]["condition"] == "service_completed_successfully"
    assert "sandbox" in services["sandbox"]["profiles"]
    assert COMPOSE["x-cioproc-env"]["CIOPROC_TOPICS_FILE"] == "/app/topics.yaml"
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY pyproject.toml README.md topics.yaml ./" in dockerfile
    load_topics(REPO / "topics.yaml")  # the file the image ships is valid


def test_readme_documents_every_variable_and_starts_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    head = "\n".join(readme.splitlines()[:8])
    assert "make demo" in head and "make test" in head
    for name in VARIABLES:
        assert f"`{name}`" in readme, f"README does not document {name}"
