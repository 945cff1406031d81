"""docker-compose.yml, the Dockerfile and the README agree with the code and topics.yaml."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
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
    assert services["sandbox-sender"]["command"] == ["worker", "--role", "sender"]
    assert "sandbox" in services["sandbox"]["profiles"]
    assert COMPOSE["x-cioproc-env"]["CIOPROC_TOPICS_FILE"] == "/app/topics.yaml"
    load_topics(REPO / "topics.yaml")  # the file the services mount is valid


# ---- the compose file as a deployment --------------------------------------------------------

CIOPROC_SERVICES = ("topics-init", "processor", "sender", "sandbox", "sandbox-sender")


def compose_spec_schema() -> dict:
    """The compose specification's JSON schema, from the docker-compose package the test extras
    install (`make install`): compose/config/compose_spec.json."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(distribution("docker-compose").locate_file("compose/config/compose_spec.json"))
    except PackageNotFoundError:
        raise AssertionError(
            "the docker-compose package (for its compose-spec schema) is not installed: run `make install`"
        ) from None
    return json.loads(path.read_text())


def test_compose_file_follows_the_compose_specification():
    schema = compose_spec_schema()
    validator = jsonschema.Draft201909Validator(schema)  # its $schema names draft 2019-09
    errors = sorted(validator.iter_errors(COMPOSE), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    broken = {**COMPOSE, "services": {"kafka": {**COMPOSE["services"]["kafka"], "restart_policy": "always"}}}
    assert not validator.is_valid(broken)  # the schema does check service keys


def defaults(text: str) -> str:
    """A compose value with every ${NAME:-default} replaced by its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)


def test_kafka_keeps_its_data_on_the_volume():
    kafka = COMPOSE["services"]["kafka"]
    data = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert f"kafka-data:{data}" in kafka["volumes"] and "kafka-data" in COMPOSE["volumes"]
    assert not data.startswith("/tmp")


def test_kafka_has_a_listener_for_the_compose_network_and_one_for_the_host():
    env = COMPOSE["services"]["kafka"]["environment"]
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in defaults(env["KAFKA_ADVERTISED_LISTENERS"]).split(","))
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) == set(protocols) == set(advertised) | {"CONTROLLER"}
    assert advertised["PLAINTEXT"] == "kafka:9092" and env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "PLAINTEXT"
    host_port = advertised["HOST"].rsplit(":", 1)
    assert host_port[0] == "127.0.0.1"
    published = [defaults(p) for p in COMPOSE["services"]["kafka"]["ports"]]
    container_port = listeners["HOST"].rsplit(":", 1)[1]
    assert published == [f"127.0.0.1:{host_port[1]}:{container_port}"]  # the advertised port is the published one
    assert COMPOSE["x-cioproc-env"]["KAFKA_BOOTSTRAP_SERVERS"] == "${KAFKA_BOOTSTRAP_SERVERS:-kafka:9092}"


def test_every_published_port_is_bound_to_loopback_by_default():
    published = [(name, defaults(str(p))) for name, s in COMPOSE["services"].items() for p in s.get("ports", [])]
    assert {name for name, _ in published} == {"kafka", "sandbox"}
    for name, port in published:
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"
    text = (REPO / "docker-compose.yml").read_text()
    assert "CIOPROC_PUBLISH_ADDRESS" in text and "0.0.0.0" in text  # the comment says how to open them


def test_services_have_healthchecks_and_wait_for_what_they_need():
    services = COMPOSE["services"]
    assert "kafka-broker-api-versions" in " ".join(services["kafka"]["healthcheck"]["test"])
    for name in ("processor", "sender", "sandbox-sender"):
        check = " ".join(services[name]["healthcheck"]["test"])
        assert "http://127.0.0.1:9108/healthz" in check, name
        assert services[name]["depends_on"]["topics-init"]["condition"] == "service_completed_successfully"
    assert services["topics-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["sandbox-sender"]["depends_on"]["sandbox"]["condition"] == "service_healthy"
    assert COMPOSE["x-cioproc-env"]["CIOPROC_METRICS_HOST"] == "0.0.0.0"  # inside the compose network only
    assert COMPOSE["x-cioproc-env"]["CIOPROC_METRICS_PORT"] == "9108"


def test_one_image_built_once_and_topics_yaml_mounted():
    services = COMPOSE["services"]
    built = [name for name, s in services.items() if "build" in s]
    assert built == ["topics-init"]
    image = services["topics-init"]["image"]
    for name in CIOPROC_SERVICES:
        assert services[name]["image"] == image, name
        if name != "sandbox":
            assert "./topics.yaml:/app/topics.yaml:ro" in services[name]["volumes"], name
    assert not re.search(r"^(COPY|ADD)\b.*topics\.yaml", (REPO / "Dockerfile").read_text(), re.M)  # not baked in


def test_the_sandbox_profile_never_reaches_customer_io():
    services = COMPOSE["services"]
    sandbox_sender = services["sandbox-sender"]
    assert sandbox_sender["profiles"] == ["sandbox"] and services["sandbox"]["profiles"] == ["sandbox"]
    assert services["sender"]["profiles"] == ["customerio"]  # the real sender never starts with --profile sandbox
    assert "sandbox" not in services["processor"].get("profiles", []) and "profiles" not in services["processor"]
    env = sandbox_sender["environment"]
    assert sandbox_sender["network_mode"] == "service:sandbox"  # the sandbox is on loopback for it
    assert env["CIO_TRACK_URL"] == "http://127.0.0.1:8765"
    sandbox_env = services["sandbox"]["environment"]
    assert (env["CIO_SITE_ID"], env["CIO_API_KEY"]) == (sandbox_env["CIO_SITE_ID"], sandbox_env["CIO_API_KEY"])
    assert "${" not in env["CIO_API_KEY"]  # a real key from .env never goes to the sandbox
    assert "--admin-token" in services["sandbox"]["command"]


def test_env_example_lists_every_variable_with_safe_defaults():
    example = (REPO / ".env.example").read_text()
    assigned = dict(
        re.match(r"#?\s*(\w+)=(.*)", line).groups() for line in example.splitlines() if re.match(r"#?\s*\w+=", line)
    )
    compose_text = (REPO / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{(\w+)", compose_text))
    missing = (set(VARIABLES) | used) - set(assigned) - {"CIOPROC_ENV_FILE"}
    assert not missing, f".env.example does not list {sorted(missing)}"
    assert assigned["CIO_API_KEY"] == "" and assigned["KAFKA_SASL_PASSWORD"] == ""
    assert assigned["CIOPROC_PUBLISH_ADDRESS"] == "127.0.0.1"
    assert assigned["CIOPROC_METRICS_HOST"] == "127.0.0.1"


def test_image_runs_as_a_user_exposes_metrics_and_leaves_secrets_out():
    dockerfile = (REPO / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^EXPOSE\s+9108\b", dockerfile, re.M)
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".env", ".env.*", ".cioproc", ".venv", ".git"} <= ignored
    assert "!.env.example" in ignored


def test_image_installs_the_locked_versions():
    """The image gets the dependency versions CI tested (the lock, as constraints)."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^COPY\b.*\brequirements\.lock\b", dockerfile, re.M)
    assert re.search(r"pip install\b[^\n]*-c requirements\.lock", dockerfile)


def test_readme_documents_every_variable_and_starts_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    head = "\n".join(readme.splitlines()[:8])
    assert "make demo" in head and "make test" in head
    for name in VARIABLES:
        assert f"`{name}`" in readme, f"README does not document {name}"
