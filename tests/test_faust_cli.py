"""`faust -A cioproc.app worker` behaves like `cioproc worker` (issue 14 item 11): one-line errors
without a traceback (also for --help), JSON logs with secrets redacted, Faust's web server off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers_kafka import create_topics, write_topics_file

REPO = Path(__file__).resolve().parents[1]
FAUST = str(Path(sys.executable).parent / "faust")


def _env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CIO_", "CIOPROC_"))}
    return {**base, "CIOPROC_ENV_FILE": "/dev/null/none", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", **extra}


@pytest.mark.parametrize("argv", [["worker"], ["--help"], ["worker", "--help"]])
def test_missing_credentials_are_one_line_each_without_a_traceback(argv):
    result = subprocess.run([FAUST, "-A", "cioproc.app", *argv], capture_output=True, text=True, timeout=120,
                            cwd=REPO, env=_env(CIOPROC_ROLE="all", CIO_SITE_ID="site"))
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "config error: CIO_API_KEY is not set: the sender needs the Track API key of your Customer.io workspace"
    ]


def _listening_ports(pid: int) -> set[int]:
    """TCP ports process ``pid`` listens on (its sockets' inodes matched against /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.kafka
def test_faust_worker_logs_json_redacts_secrets_and_runs_no_web_server(kafka_bootstrap, tmp_path, unique):
    app_id = f"test-{unique}"
    path, topics = write_topics_file(tmp_path, unique, app_id)
    create_topics(kafka_bootstrap, topics)
    log_path, banner_path = tmp_path / "faust.log", tmp_path / "banner.txt"
    env = _env(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, CIOPROC_TOPICS_FILE=str(path), CIOPROC_APP_ID=app_id,
               CIOPROC_ROLE="processor", CIOPROC_METRICS_PORT="0", CIOPROC_DATA_DIR=str(tmp_path / "data"),
               # The app id (in many of Faust's log lines: group, changelog topic) is the "API key" here,
               # so the redaction has something to redact.
               CIO_API_KEY=app_id)
    with open(log_path, "wb") as log, open(banner_path, "wb") as banner:
        process = subprocess.Popen([FAUST, "-A", "cioproc.app", "worker", "--loglevel", "info"],
                                   stdout=banner, stderr=log, cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 90
        while "Worker ready" not in log_path.read_text(errors="replace"):
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.3)
        listening = _listening_ports(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=60)
    text = log_path.read_text(errors="replace")
    assert app_id not in text and "****" in text
    assert 6066 not in listening, f"Faust's web server listens: {listening}"
    assert "http://" not in banner_path.read_text(), "the banner shows a web server"
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert {"ts", "level", "logger", "msg"} <= set(records[0])
    assert any("Worker ready" in record["msg"] for record in records)
