"""Configuration: every variable validated with one clear line per problem; secrets masked."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from cioproc.config import VARIABLES, ConfigError, Secret, load_config, parse_config, read_env_file
from cioproc.models.settings import UserIdType
from cioproc.observability.logs import JsonFormatter, RedactingFilter, register_secret

KEY = "sk-live-0123456789abcdef"


def test_defaults_match_the_interface():
    config = parse_config({})
    assert config.region == "us" and config.track_base_url == "https://track.customer.io"
    assert config.mapping.user_id_type is UserIdType.PREFER_CUSTOMER_ID
    assert config.mapping.include_user_attributes is True
    assert config.mapping.send_created_at is False
    assert config.mapping.audience_attribute_per_segment is False
    assert config.mapping.merge_people is False
    assert config.masked()["CIO_MERGE_PEOPLE"] == "false"
    assert config.kafka.bootstrap_servers == "localhost:9092"
    assert config.transport == "v2"


def test_values_are_parsed():
    config = parse_config(
        {
            "CIO_REGION": "EU",
            "CIO_USER_ID_TYPE": "email",
            "CIO_INCLUDE_USER_ATTRIBUTES": "false",
            "CIO_SEND_CREATED_AT": "yes",
            "CIO_AUDIENCE_ATTRIBUTE_PER_SEGMENT": "1",
            "CIO_MERGE_PEOPLE": "true",
            "CIO_TRACK_URL": "http://127.0.0.1:8765/",
            "CIO_TRANSPORT": "v1",
            "CIO_MAX_REQUESTS_PER_SECOND": "250",
            "KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2",
            "KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
            "KAFKA_SASL_MECHANISM": "scram-sha-512",
            "KAFKA_SASL_USERNAME": "cioproc",
            "KAFKA_SASL_PASSWORD": "pw",
            "CIOPROC_STORE": "rocksdb",
        }
    )
    assert config.region == "eu"
    assert config.track_base_url == "http://127.0.0.1:8765"
    assert config.mapping.user_id_type is UserIdType.EMAIL
    assert (config.mapping.include_user_attributes, config.mapping.send_created_at) == (False, True)
    assert config.mapping.audience_attribute_per_segment is True
    assert config.mapping.merge_people is True and config.masked()["CIO_MERGE_PEOPLE"] == "true"
    assert config.transport == "v1" and config.max_requests_per_second == 250.0
    assert config.mapping.transport == "v1"  # v1 events may carry 100,000 bytes of data
    assert config.kafka.security_protocol == "SASL_PLAINTEXT" and config.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert config.store == "rocksdb"
    assert parse_config({"CIO_REGION": "eu"}).track_base_url == "https://track-eu.customer.io"


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("CIO_REGION", "ap", "CIO_REGION='ap' is not a Customer.io region (use us or eu)"),
        ("CIO_TRACK_URL", "track.example.com", "CIO_TRACK_URL='track.example.com' must be an http:// or https:// URL"),
        ("CIO_USER_ID_TYPE", "phone", "CIO_USER_ID_TYPE='phone' must be customer_id, email or prefer_customer_id"),
        ("CIO_INCLUDE_USER_ATTRIBUTES", "maybe", "CIO_INCLUDE_USER_ATTRIBUTES='maybe' is not a boolean"),
        ("CIO_SEND_CREATED_AT", "2", "CIO_SEND_CREATED_AT='2' is not a boolean"),
        ("CIO_AUDIENCE_ATTRIBUTE_PER_SEGMENT", "nope", "CIO_AUDIENCE_ATTRIBUTE_PER_SEGMENT='nope' is not a boolean"),
        ("CIO_MERGE_PEOPLE", "sometimes", "CIO_MERGE_PEOPLE='sometimes' is not a boolean"),
        ("CIO_TRANSPORT", "v3", "CIO_TRANSPORT='v3' must be v2"),
        ("CIO_MAX_REQUESTS_PER_SECOND", "fast", "CIO_MAX_REQUESTS_PER_SECOND='fast' must be a float"),
        ("CIO_MAX_REQUESTS_PER_SECOND", "0", "CIO_MAX_REQUESTS_PER_SECOND='0' must be a float >= 0.1"),
        ("CIO_MAX_CONCURRENCY", "0", "CIO_MAX_CONCURRENCY='0' must be a int >= 1"),
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "KAFKA_BOOTSTRAP_SERVERS='localhost' must be host:port"),
        ("KAFKA_SECURITY_PROTOCOL", "TLS", "KAFKA_SECURITY_PROTOCOL='TLS' must be one of"),
        ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL", "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_MECHANISM"),
        ("KAFKA_SASL_MECHANISM", "MD5", "KAFKA_SASL_MECHANISM='MD5' must be one of"),
        ("KAFKA_SSL_CAFILE", "/nonexistent/ca.pem", "KAFKA_SSL_CAFILE='/nonexistent/ca.pem' is not a readable file"),
        ("CIOPROC_STORE", "redis", "CIOPROC_STORE='redis' must be memory or rocksdb"),
        ("CIOPROC_METRICS_PORT", "70000", "CIOPROC_METRICS_PORT=70000 is not a TCP port"),
        ("CIOPROC_METRICS_PORT", "http", "CIOPROC_METRICS_PORT='http' must be a int"),
        ("CIOPROC_LOG_LEVEL", "loud", "CIOPROC_LOG_LEVEL='loud' must be debug, info, warning or error"),
    ],
)
def test_each_bad_value_is_one_clear_line(name, value, expected):
    with pytest.raises(ConfigError) as info:
        parse_config({name: value})
    assert len(info.value.problems) == 1
    assert expected in info.value.problems[0]


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        parse_config({"CIO_REGION": "mars", "CIO_SEND_CREATED_AT": "sometimes", "CIOPROC_STORE": "x"})
    assert len(info.value.problems) == 3


def test_sender_credentials_required_with_clear_lines():
    with pytest.raises(ConfigError) as info:
        parse_config({}).require_sender_credentials()
    assert [p.split(" ")[0] for p in info.value.problems] == ["CIO_SITE_ID", "CIO_API_KEY"]
    with pytest.raises(ConfigError, match="CIO_API_KEY is not set"):
        parse_config({"CIO_SITE_ID": "s"}).require_sender_credentials()
    parse_config({"CIO_SITE_ID": "s", "CIO_API_KEY": KEY}).require_sender_credentials()


def test_secrets_never_print_themselves():
    config = parse_config({"CIO_SITE_ID": "site", "CIO_API_KEY": KEY, "KAFKA_SASL_PASSWORD": "hunter2-secret"})
    for text in (repr(config), str(config), repr(config.api_key), f"{config.api_key}", str(config.masked())):
        assert KEY not in text and "hunter2-secret" not in text
    assert config.api_key.reveal() == KEY
    masked = config.masked()
    assert masked["CIO_API_KEY"].startswith("****") and masked["CIO_SITE_ID"] == "site"
    assert set(masked) == set(VARIABLES) - {"CIOPROC_ENV_FILE"}
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")


def test_env_file_fills_gaps_and_environment_wins(tmp_path):
    env_file = tmp_path / "cioproc.env"
    env_file.write_text("# comment\nexport CIO_REGION=eu\nCIO_SITE_ID='from-file'\nCIO_API_KEY=\"k-from-file\"\n\n")
    assert read_env_file(env_file)["CIO_SITE_ID"] == "from-file"
    config = load_config({"CIOPROC_ENV_FILE": str(env_file), "CIO_SITE_ID": "from-env"})
    assert config.region == "eu" and config.site_id == "from-env" and config.api_key.reveal() == "k-from-file"
    env_file.write_text("NOT A LINE\n")
    with pytest.raises(ConfigError, match="cioproc.env:1: expected KEY=VALUE"):
        load_config({"CIOPROC_ENV_FILE": str(env_file)})


def test_config_command_masks_the_key_and_reports_errors():
    env = {"PATH": "/usr/bin:/bin", "CIOPROC_ENV_FILE": "/nonexistent", "CIO_API_KEY": KEY, "CIO_SITE_ID": "site"}
    shown = subprocess.run([sys.executable, "-m", "cioproc.cli", "config"], capture_output=True, text=True, env=env)
    assert shown.returncode == 0
    assert "CIO_SITE_ID=site" in shown.stdout and "CIO_API_KEY=****" in shown.stdout
    assert KEY not in shown.stdout + shown.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "cioproc.cli", "config"],
        capture_output=True,
        text=True,
        env={**env, "CIO_REGION": "moon", "CIO_SEND_CREATED_AT": "x"},
    )
    assert bad.returncode == 2
    assert bad.stderr.count("config error:") == 2 and KEY not in bad.stderr


def test_log_lines_redact_registered_secrets():
    register_secret(KEY)
    logger = logging.getLogger("cioproc.test.redact")
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "auth with %s failed", (KEY,), None)
    try:
        raise RuntimeError(f"boom {KEY}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    line = JsonFormatter().format(record)
    assert KEY not in line and "****" in line and "auth with **** failed" in line and "boom ****" in line


def test_app_id_is_validated():
    assert parse_config({}).app_id == "cioproc"
    assert parse_config({"CIOPROC_APP_ID": "team-a.cio"}).app_id == "team-a.cio"
    with pytest.raises(ConfigError, match="CIOPROC_APP_ID='a b' must be letters"):
        parse_config({"CIOPROC_APP_ID": "a b"})


def test_forward_devices_is_off_by_default_and_validated():
    """Issue 17: CIO_FORWARD_DEVICES (default false) switches push devices on."""
    assert parse_config({}).mapping.forward_devices is False
    assert parse_config({}).masked()["CIO_FORWARD_DEVICES"] == "false"
    assert parse_config({"CIO_FORWARD_DEVICES": "true"}).mapping.forward_devices is True
    with pytest.raises(ConfigError) as raised:
        parse_config({"CIO_FORWARD_DEVICES": "maybe"})
    assert "CIO_FORWARD_DEVICES='maybe' is not a boolean" in str(raised.value)
