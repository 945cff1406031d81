"""The product against a real Kafka with authentication and TLS (`cioproc kafka start --secure`).

One broker for the session (fixture ``secure_kafka``): SASL_SSL with SCRAM-SHA-512 on its
port, mutual TLS on port + 2. Everything a user runs goes through it: topics apply/check,
produce, a processor and a sender worker delivering to the sandbox, replay. Wrong
credentials and an untrusted CA end in one line and a non-zero exit.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from helpers_net import listening_hosts
from pipeline_harness import Pipeline, batches, expected_workspace, kafka_client_kwargs

from cioproc.config import read_env_file
from cioproc.generate.jsonlines import encode_line
from cioproc.generate.model import Record
from cioproc.kafka.broker import BrokerError, answers_metadata
from cioproc.kafka.secure import CLIENT_EXTENSIONS, SecureBroker, issue_certificate, make_ca

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[1]

SASL_VARIABLES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
)


def cli(*args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cioproc.cli", *args],
        env={**os.environ, "CIOPROC_ENV_FILE": "/nonexistent", "CIOPROC_METRICS_PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=timeout,  # a hang fails the test
        cwd=cwd,
    )


def spawn(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cioproc.cli", *args],
        env={**os.environ, "CIOPROC_ENV_FILE": "/nonexistent", "CIOPROC_METRICS_PORT": "0", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def error_lines(stderr: str) -> list[str]:
    """What a command printed on stderr, without the worker's JSON log lines."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith('{"ts"')]


def sasl_env(broker: SecureBroker) -> dict[str, str]:
    return read_env_file(broker.client_env_file)


def mtls_env(broker: SecureBroker) -> dict[str, str]:
    """The mutual-TLS settings, with the SASL variables cleared."""
    return {"KAFKA_SASL_MECHANISM": "", "KAFKA_SASL_USERNAME": "", "KAFKA_SASL_PASSWORD": "",
            **read_env_file(broker.mtls_env_file)}


def test_secure_start_writes_the_client_settings_and_has_no_open_listener(secure_kafka, kafka_bootstrap):
    broker = secure_kafka
    env = sasl_env(broker)
    assert set(env) == set(SASL_VARIABLES)
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == broker.bootstrap
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert len(env["KAFKA_SASL_PASSWORD"]) >= 32 and Path(env["KAFKA_SSL_CAFILE"]).is_file()
    for path in (
        broker.client_env_file,
        broker.mtls_env_file,
        broker.tls_dir / "ca.key",
        broker.tls_dir / "client.key",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert answers_metadata(broker.bootstrap, timeout=5, **kafka_client_kwargs(env))
    assert answers_metadata(broker.mtls_bootstrap, timeout=5, **kafka_client_kwargs(mtls_env(broker)))
    # No listener answers a client without credentials: not the SASL port, the mTLS port or the controller.
    for port in (broker.port, broker.port + 1, broker.mtls_port):
        assert not answers_metadata(f"127.0.0.1:{port}", timeout=3), port

    home = {"CIOPROC_HOME": str(broker.home)}
    again = cli("kafka", "start", "--secure", "--port", str(broker.port), env=home)
    assert again.returncode == 0 and "already running" in again.stdout
    assert f"client settings in {broker.client_env_file}" in again.stdout
    status = cli("kafka", "status", "--port", str(broker.port), env=home)
    assert status.returncode == 0 and "running on" in status.stdout
    plain = cli("kafka", "start", "--port", str(broker.port), env=home)
    assert plain.returncode == 1 and error_lines(plain.stderr) == [
        f"error: {broker.root} holds a secure broker; start it with --secure, or remove that directory"
    ]


def test_topics_produce_processor_sender_and_replay_over_sasl_ssl_and_mutual_tls(secure_kafka, unique, tmp_path):
    """The processor authenticates with a client certificate (SSL), everything else with SCRAM (SASL_SSL)."""
    broker = secure_kafka
    env = sasl_env(broker)
    pipeline = Pipeline(broker.bootstrap, unique, tmp_path, kafka_env=env, create_topics=False)
    try:
        topics = ["--file", str(pipeline.topics_path)]
        missing = cli("topics", "check", *topics, env=env)
        assert missing.returncode == 1, missing.stderr
        assert missing.stdout.count("missing") == len(pipeline.topics.topics) == 8, missing.stderr
        applied = cli("topics", "apply", *topics, env=env)
        assert applied.returncode == 0 and applied.stdout.count("created") == 8, applied.stderr
        assert cli("topics", "check", *topics, env=env).returncode == 0

        records = batches(users=40, events=300, seed=21)
        people, events, n_commands = expected_workspace(records)
        lines = tmp_path / "batches.jsonl"
        lines.write_bytes(b"".join(encode_line(Record(role, key, orjson.loads(value))) for role, key, value in records))
        produced = cli("produce", str(lines), env={**env, "CIOPROC_TOPICS_FILE": str(pipeline.topics_path)})
        assert produced.returncode == 0, produced.stderr

        pipeline.start_sandbox()
        pipeline.start_worker("processor", role="processor", **mtls_env(broker))
        pipeline.start_worker("sender", role="sender")
        pipeline.wait_for(lambda: delivered(pipeline, "sender") >= n_commands, 120, f"{n_commands} commands delivered")
        assert pipeline.people() == people and pipeline.events() == events
        assert pipeline.metric("cioproc_batches_in_total", "processor") == len(records)
        requests_before = pipeline.stats()["total_requests"]

        # Replay the commands: the sender stops, the group goes back, a new sender re-delivers.
        assert pipeline.kill("sender", signal.SIGTERM) == 0, pipeline.log("sender")[-3000:]
        group = f"{pipeline.app_id}-sender"
        pipeline.wait_for(lambda: pipeline.lag("commands", group) == 0, 30, "sender commits")
        replay = pipeline.cli("replay", "commands", "--from-beginning", "--group", group, "--execute")
        assert replay.returncode == 0, replay.stderr
        assert pipeline.lag("commands", group) == len(pipeline.read("commands"))  # records (one per batch and user)
        pipeline.start_worker("sender-2", role="sender", CIOPROC_METRICS_HOST="0.0.0.0")
        pipeline.wait_for(lambda: delivered(pipeline, "sender-2") >= n_commands, 120, "the replayed commands")
        assert pipeline.stats()["total_requests"] > requests_before
        # Metrics listen on loopback unless CIOPROC_METRICS_HOST says otherwise.
        assert listening_hosts(pipeline.metrics_ports["processor"]) == {"127.0.0.1"}
        assert listening_hosts(pipeline.metrics_ports["sender-2"]) == {"0.0.0.0"}
        assert pipeline.people() == people and pipeline.events() == events  # nothing twice
        assert pipeline.read("commands_dlq") == [] and pipeline.read("batches_dlq") == []
    finally:
        pipeline.close()


def delivered(pipeline: Pipeline, worker: str) -> float:
    try:
        return pipeline.metric("cioproc_commands_delivered_total", worker)
    except Exception:
        return 0.0


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory) -> Path:
    """A CA the secure broker does not know, with a client certificate it signed."""
    directory = tmp_path_factory.mktemp("other-ca")
    ca = make_ca(directory, "some other CA")
    issue_certificate(ca, directory, "client", "intruder", CLIENT_EXTENSIONS)
    return directory


def failing_runs(tmp_path: Path, topics_file: Path) -> list[tuple[str, ...]]:
    one = tmp_path / "one.jsonl"
    one.write_text('{"topic": "batches", "key": "1", "value": {"mpid": 1, "events": []}}\n')
    return [
        ("topics", "check", "--file", str(topics_file)),
        ("produce", str(one)),
        ("replay", "batches", "--from-beginning", "--dry-run"),
        ("worker", "--role", "processor"),
    ]



@pytest.mark.parametrize(
    "case, expected",
    [
        ("wrong password", "refused the SASL credentials: check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD"),
        ("untrusted CA", "is not trusted: set KAFKA_SSL_CAFILE to the CA that signed it"),
        ("no client certificate", "closed the connection"),
        ("client certificate of another CA", "closed the connection"),
    ],
)
def test_refused_connections_end_in_one_clear_line(secure_kafka, other_ca, tmp_path, case, expected):
    broker = secure_kafka
    env = {
        "wrong password": {**sasl_env(broker), "KAFKA_SASL_PASSWORD": "not-the-password"},
        "untrusted CA": {**sasl_env(broker), "KAFKA_SSL_CAFILE": str(other_ca / "ca.pem")},
        "no client certificate": {**mtls_env(broker), "KAFKA_SSL_CERTFILE": "", "KAFKA_SSL_KEYFILE": ""},
        "client certificate of another CA": {
            **mtls_env(broker),
            "KAFKA_SSL_CERTFILE": str(other_ca / "client.pem"),
            "KAFKA_SSL_KEYFILE": str(other_ca / "client.key"),
        },
    }[case]
    env["CIOPROC_TOPICS_FILE"] = str(REPO / "topics.yaml")
    env["CIO_SITE_ID"], env["CIO_API_KEY"] = "site", "key"
    runs = failing_runs(tmp_path, REPO / "topics.yaml")
    if case.startswith("client certificate"):
        runs = runs[:1]  # the same refusal as without one; one command shows it
    # The commands run side by side (the suite's time); each must end by itself within a minute.
    started = [(args, spawn(*args, env=env, cwd=tmp_path)) for args in runs]
    for args, process in started:
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise AssertionError(f"{args} still ran after 60 s ({case})") from None
        lines = error_lines(stderr)
        assert process.returncode != 0, (args, stdout, stderr)
        assert "Traceback" not in stderr and len(lines) == 1, (args, stderr)
        assert expected in lines[0] and env["KAFKA_BOOTSTRAP_SERVERS"] in lines[0], (args, lines[0])
        assert "not-the-password" not in stderr + stdout


def test_secure_start_refuses_a_plaintext_brokers_data(tmp_path):
    """SCRAM users exist only if created at format time: a plaintext broker's storage cannot become secure."""
    broker = SecureBroker(home=tmp_path, port=1)
    (broker.data_dir).mkdir(parents=True)
    (broker.data_dir / "meta.properties").write_text("node.id=1\n")
    with pytest.raises(BrokerError, match="holds a plaintext broker's data; remove it"):
        broker.prepare(progress=lambda _m: None)
    assert not broker.client_env_file.exists() and not broker.tls_dir.exists()
