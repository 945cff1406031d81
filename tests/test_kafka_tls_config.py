"""TLS files that cannot be used are configuration errors: one line naming the variable,
checked at start-up, never a traceback from deep inside a Kafka client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cioproc.config import ConfigError, parse_config
from cioproc.kafka.secure import CLIENT_EXTENSIONS, issue_certificate, make_ca

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    ca = make_ca(directory)
    issue_certificate(ca, directory, "client", "someone", CLIENT_EXTENSIONS)
    issue_certificate(ca, directory, "other", "someone else", CLIENT_EXTENSIONS)
    (directory / "garbage.pem").write_text("not a certificate\n")
    return directory


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as error:
        parse_config(env)
    return error.value.problems


def test_usable_tls_files_are_accepted(tls):
    config = parse_config({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(tls / "ca.pem"),
                           "KAFKA_SSL_CERTFILE": str(tls / "client.pem"), "KAFKA_SSL_KEYFILE": str(tls / "client.key")})
    assert config.kafka.aiokafka_kwargs()["ssl_context"].verify_mode.name == "CERT_REQUIRED"


def test_a_ca_file_without_a_certificate_names_its_variable(tls):
    lines = problems({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                      "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p",
                      "KAFKA_SSL_CAFILE": str(tls / "garbage.pem")})
    assert len(lines) == 1 and lines[0].startswith(f"KAFKA_SSL_CAFILE={str(tls / 'garbage.pem')!r} ")
    assert "not a PEM certificate" in lines[0]


def test_a_key_that_does_not_match_the_certificate_names_both_variables(tls):
    lines = problems({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(tls / "ca.pem"),
                      "KAFKA_SSL_CERTFILE": str(tls / "client.pem"), "KAFKA_SSL_KEYFILE": str(tls / "other.key")})
    assert len(lines) == 1 and lines[0].startswith(f"KAFKA_SSL_KEYFILE={str(tls / 'other.key')!r} ")
    assert "KAFKA_SSL_CERTFILE" in lines[0] and "KEY_VALUES_MISMATCH" in lines[0]


def test_the_cli_reports_a_bad_ca_file_in_one_line(tls):
    result = subprocess.run(
        [sys.executable, "-m", "cioproc.cli", "topics", "check", "--file", str(REPO / "topics.yaml")],
        env={**os.environ, "CIOPROC_ENV_FILE": "/nonexistent", "KAFKA_SECURITY_PROTOCOL": "SSL",
             "KAFKA_SSL_CAFILE": str(tls / "garbage.pem")},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"config error: KAFKA_SSL_CAFILE={str(tls / 'garbage.pem')!r} is not a PEM certificate "
        "(expected a '-----BEGIN ...CERTIFICATE-----' block)"
    ]
