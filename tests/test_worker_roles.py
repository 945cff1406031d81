"""Worker roles: consumer groups per role, and clear refusals before joining a group."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cioproc.app.factory import group_id

REPO = Path(__file__).resolve().parents[1]


def test_senders_have_a_group_of_their_own():
    assert group_id("processor", "cioproc") == "cioproc"
    assert group_id("all", "cioproc") == "cioproc"
    assert group_id("sender", "cioproc") == "cioproc-sender"


def run_worker(role: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CIO_")}
    return subprocess.run(
        [sys.executable, "-m", "cioproc.cli", "worker", "--role", role],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**base, "CIOPROC_ENV_FILE": "/nonexistent", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", **env},
    )


def test_sender_without_credentials_refuses_to_start_with_clear_lines():
    result = run_worker("sender")
    assert result.returncode == 2
    assert "config error: CIO_SITE_ID is not set" in result.stderr
    assert "config error: CIO_API_KEY is not set" in result.stderr
    partial = run_worker("all", CIO_SITE_ID="site")
    assert partial.returncode == 2 and "CIO_API_KEY is not set" in partial.stderr


def test_bad_configuration_stops_the_worker_before_kafka():
    result = run_worker("processor", CIO_REGION="mars", CIO_SEND_CREATED_AT="perhaps")
    assert result.returncode == 2
    assert result.stderr.count("config error:") == 2


def test_plain_http_is_refused_for_customer_io_hosts():
    from cioproc.sender import SenderConfig, SenderConfigError

    try:
        SenderConfig(site_id="s", api_key="k", track_url="http://track.customer.io")
    except SenderConfigError as exc:
        assert "http" in str(exc)
    else:  # pragma: no cover - the assertion below reports it
        raise AssertionError("plain http to Customer.io was accepted")
