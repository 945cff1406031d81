"""Bad configuration through the real command line: one line naming the variable, a non-zero
exit, never a traceback; plain http only to loopback; `cioproc config` never shows user info
or a secret's length."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cioproc.config import ConfigError, parse_config

KEY = "sk-live-0123456789abcdef"


def run(command: str, env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m cioproc.cli COMMAND`` with only ``env`` (no .env file), in an empty directory."""
    base = {"PATH": "/usr/bin:/bin", "CIOPROC_ENV_FILE": str(tmp_path / "no.env"), "CIOPROC_HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "cioproc.cli", command, *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        cwd=tmp_path,
        timeout=60,
    )


def assert_one_line_naming(result: subprocess.CompletedProcess, variable: str) -> str:
    """The command failed with exactly one line on stderr that names ``variable``; that line."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, output
    assert variable in lines[0], output
    return lines[0]


def pem_pair(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its private key, as PEM files."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def not_pem(directory: Path) -> Path:
    path = directory / "not-pem.crt"
    path.write_bytes(b"\x30\x82\x01\x0a this is DER-ish binary, not PEM\n")
    return path


BAD_SETTINGS = [
    pytest.param({"CIO_TRACK_URL": "https://track.customer.io:99999"}, "CIO_TRACK_URL", id="url-port-out-of-range"),
    pytest.param({"CIO_TRACK_URL": "https://track.customer.io:https"}, "CIO_TRACK_URL", id="url-port-not-a-number"),
    pytest.param({"CIO_TRACK_URL": "https://track.customer.io:0"}, "CIO_TRACK_URL", id="url-port-zero"),
    pytest.param({"CIO_TRACK_URL": "https://[::1"}, "CIO_TRACK_URL", id="url-ipv6-unclosed"),
    pytest.param({"CIO_TRACK_URL": "https://[fe80::zz]:443"}, "CIO_TRACK_URL", id="url-ipv6-invalid"),
    pytest.param({"CIO_TRACK_URL": "https://::1:8443"}, "CIO_TRACK_URL", id="url-ipv6-without-brackets"),
    pytest.param({"CIO_TRACK_URL": "https://"}, "CIO_TRACK_URL", id="url-no-host"),
    pytest.param({"CIO_TRACK_URL": "https://bad host.example"}, "CIO_TRACK_URL", id="url-space-in-host"),
    pytest.param({"CIO_TRACK_URL": "https://user:hunter2pw@track.customer.io"}, "CIO_TRACK_URL", id="url-user-info"),
    pytest.param({"CIO_TRACK_URL": "https://track.customer.io/api"}, "CIO_TRACK_URL", id="url-path"),
    pytest.param({"CIO_TRACK_URL": "https://track.customer.io/?x=1"}, "CIO_TRACK_URL", id="url-query"),
    pytest.param({"CIO_TRACK_URL": "https://track.customer.io#top"}, "CIO_TRACK_URL", id="url-fragment"),
    pytest.param({"CIO_TRACK_URL": "http://track.customer.io"}, "CIO_TRACK_URL", id="http-to-customer-io"),
    pytest.param({"CIO_TRACK_URL": "http://sandbox:8765"}, "CIO_TRACK_URL", id="http-to-a-lan-name"),
    pytest.param({"CIO_TRACK_URL": "http://10.0.0.7:8765"}, "CIO_TRACK_URL", id="http-to-a-private-ip"),
    pytest.param({"CIO_TRACK_URL": "http://localhost.evil.example"}, "CIO_TRACK_URL", id="http-localhost-prefix"),
    pytest.param({"CIO_TRACK_URL": "http://128.0.0.1"}, "CIO_TRACK_URL", id="http-outside-127/8"),
    pytest.param({"CIO_TRACK_URL": "http://[::2]"}, "CIO_TRACK_URL", id="http-ipv6-not-loopback"),
    pytest.param({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN",
                  "KAFKA_SASL_PASSWORD": "pw-123456"}, "KAFKA_SASL_USERNAME", id="sasl-plain-without-username"),
    pytest.param({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                  "KAFKA_SASL_USERNAME": "cioproc"}, "KAFKA_SASL_PASSWORD", id="sasl-scram-without-password"),
    pytest.param({"CIO_MAX_REQUESTS_PER_SECOND": "nan"}, "CIO_MAX_REQUESTS_PER_SECOND", id="rate-nan"),
    pytest.param({"CIO_MAX_REQUESTS_PER_SECOND": "inf"}, "CIO_MAX_REQUESTS_PER_SECOND", id="rate-inf"),
    pytest.param({"CIO_MAX_REQUESTS_PER_SECOND": "-Infinity"}, "CIO_MAX_REQUESTS_PER_SECOND", id="rate-minus-inf"),
    pytest.param({"CIO_MAX_REQUESTS_PER_SECOND": "-5"}, "CIO_MAX_REQUESTS_PER_SECOND", id="rate-negative"),
    pytest.param({"CIO_MAX_CONCURRENCY": "-1"}, "CIO_MAX_CONCURRENCY", id="concurrency-negative"),
    pytest.param({"CIO_MAX_CONCURRENCY": "nan"}, "CIO_MAX_CONCURRENCY", id="concurrency-nan"),
    pytest.param({"CIOPROC_METRICS_PORT": "-1"}, "CIOPROC_METRICS_PORT", id="metrics-port-negative"),
    pytest.param({"KAFKA_BOOTSTRAP_SERVERS": "user:secret-pw@broker:9092"}, "KAFKA_BOOTSTRAP_SERVERS",
                 id="bootstrap-with-user-info"),
]


@pytest.mark.parametrize("command", ["config", "worker"])
@pytest.mark.parametrize("env, variable", BAD_SETTINGS)
def test_bad_setting_is_one_line_naming_it(command, env, variable, tmp_path):
    line = assert_one_line_naming(run(command, env, tmp_path), variable)
    assert "hunter2pw" not in line and "secret-pw" not in line  # user info is never echoed


@pytest.mark.parametrize("command", ["config", "worker"])
@pytest.mark.parametrize("variable", ["KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"])
def test_ssl_file_that_is_not_pem_or_missing_is_one_line(command, variable, tmp_path):
    cert, key = pem_pair(tmp_path)
    good = {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(cert), "KAFKA_SSL_CERTFILE": str(cert),
            "KAFKA_SSL_KEYFILE": str(key)}
    assert run("config", good, tmp_path).returncode == 0  # the real files pass
    for bad in (not_pem(tmp_path), tmp_path / "missing.pem"):
        line = assert_one_line_naming(run(command, {**good, variable: str(bad)}, tmp_path), variable)
        assert str(bad) in line


def test_key_that_does_not_match_the_certificate_is_one_line(tmp_path):
    cert, _ = pem_pair(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = pem_pair(other)
    result = run("config", {"KAFKA_SSL_CERTFILE": str(cert), "KAFKA_SSL_KEYFILE": str(other_key)}, tmp_path)
    assert_one_line_naming(result, "KAFKA_SSL_KEYFILE")


@pytest.mark.parametrize("command", ["config", "worker"])
def test_env_file_not_utf8_or_unreadable_is_one_line(command, tmp_path):
    env_file = tmp_path / "latin1.env"
    env_file.write_bytes("CIO_SITE_ID=caf\xe9\n".encode("latin-1"))
    line = assert_one_line_naming(run(command, {"CIOPROC_ENV_FILE": str(env_file)}, tmp_path), "CIOPROC_ENV_FILE")
    assert "UTF-8" in line
    # A regular file whose read fails (EIO), since permissions do not stop root.
    line = assert_one_line_naming(run(command, {"CIOPROC_ENV_FILE": "/proc/self/mem"}, tmp_path), "CIOPROC_ENV_FILE")
    assert "cannot read" in line


@pytest.mark.parametrize("command", ["config", "worker"])
def test_rocksdb_store_without_the_extra_says_how_to_install_it(command, tmp_path):
    shadow = tmp_path / "shadow" / "rocksdict"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named rocksdict (simulated)')\n")
    env = {"CIOPROC_STORE": "rocksdb", "PYTHONPATH": str(shadow.parent)}
    line = assert_one_line_naming(run(command, env, tmp_path), "CIOPROC_STORE")
    assert "pip install 'cioproc[rocksdb]'" in line
    assert run("config", {"CIOPROC_STORE": "rocksdb"}, tmp_path).returncode == 0  # installed here: accepted


@pytest.mark.parametrize("value", ["abc", "9092.5", "0", "70000"])
def test_kafka_port_that_is_not_a_port_is_one_line(value, tmp_path):
    for action in ("status", "stop"):
        assert_one_line_naming(run("kafka", {"CIOPROC_KAFKA_PORT": value}, tmp_path, action), "CIOPROC_KAFKA_PORT")


def test_kafka_port_option_out_of_range_is_one_line(tmp_path):
    assert_one_line_naming(run("kafka", {}, tmp_path, "status", "--port", "70000"), "--port")


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8765", "http://localhost.:8765", "http://LOCALHOST", "http://127.0.0.1:8765",
     "http://127.9.8.7", "http://127.0.0.1.:8765", "http://[::1]:8765", "http://127.0.0.1:8765/"],
)
def test_plain_http_to_loopback_is_accepted_with_a_warning(url, tmp_path):
    result = run("config", {"CIO_TRACK_URL": url}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"CIO_TRACK_URL={url.rstrip('/')}\n" in result.stdout
    warning, = result.stderr.strip().splitlines()
    assert warning.startswith("warning: CIO_TRACK_URL") and "plain http" in warning


def test_https_url_is_accepted_without_warning(tmp_path):
    for url in ("https://track.customer.io", "https://track-eu.customer.io/", "https://[2001:db8::1]:8443",
                "https://proxy.example.:443"):
        result = run("config", {"CIO_TRACK_URL": url}, tmp_path)
        assert result.returncode == 0 and result.stderr == "", (url, result.stderr)


def test_worker_logs_the_plain_http_warning(tmp_path):
    """The worker says so in its log before anything else (here it then stops: no topics file)."""
    result = run("worker", {"CIO_TRACK_URL": "http://127.0.0.1:8765", "CIOPROC_TOPICS_FILE": "missing.yaml"}, tmp_path)
    assert result.returncode == 2
    assert '"level":"warning"' in result.stderr and "CIO_TRACK_URL=http://127.0.0.1:8765 is plain http" in result.stderr


def test_config_never_prints_a_secrets_length(tmp_path):
    result = run("config", {"CIO_API_KEY": KEY, "KAFKA_SASL_PASSWORD": "a-rather-long-password-0123"}, tmp_path)
    assert result.returncode == 0
    assert "CIO_API_KEY=****\n" in result.stdout and "KAFKA_SASL_PASSWORD=****\n" in result.stdout
    assert "chars" not in result.stdout and str(len(KEY)) not in result.stdout


def test_masked_values_hide_user_info_in_urls():
    """Whatever gets past validation, `masked()` shows no user info of any URL-like value."""
    from cioproc.config import mask_user_info

    assert mask_user_info("https://user:pw@host:1/x") == "https://****@host:1/x"
    assert mask_user_info("sasl://u@h:9092,h2:9092") == "sasl://****@h:9092,h2:9092"
    assert mask_user_info("u:pw@h:9092") == "****@h:9092"
    assert mask_user_info("https://track.customer.io") == "https://track.customer.io"
    assert mask_user_info("a@b") == "****@b"


def test_problems_are_collected_not_raised_one_by_one():
    with pytest.raises(ConfigError) as info:
        parse_config({"CIO_TRACK_URL": "http://example.com/api?x#y", "CIO_MAX_REQUESTS_PER_SECOND": "nan"})
    assert [p.split("=")[0] for p in info.value.problems] == ["CIO_TRACK_URL", "CIO_MAX_REQUESTS_PER_SECOND"]
