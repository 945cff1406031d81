"""`cioproc demo` end to end: its own broker, the sandbox, a worker, generated data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pipeline_harness import free_port

pytestmark = pytest.mark.kafka


def test_small_demo_summary_matches_the_sandbox_workspace(kafka_bootstrap, tmp_path):
    out = tmp_path / "summary.json"
    result = subprocess.run(
        [sys.executable, "-m", "cioproc.cli", "demo", "--users", "300", "--events", "3000", "--seed", "4",
         "--kafka-port", str(free_port()), "--json", str(out), "--timeout", "240"],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "CIOPROC_ENV_FILE": "/nonexistent"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "cioproc demo summary" in result.stdout and "example profiles" in result.stdout
    assert "kafka: stopped" in result.stderr  # it stops what it started
    s = json.loads(out.read_text())
    assert s["complete"] is True
    assert s["events_in"] == s["events_generated"] == 3000
    assert s["batches_in"] == s["generated"]["batches"]
    assert s["delivered"] == s["commands_out"]  # every command delivered, none dead-lettered
    assert s["dead_letters"] == {}
    # stale_audience_change: a multi-profile audience message is forwarded to the other users'
    # partitions and can arrive there after a newer change of theirs, which then wins.
    assert set(s["drops"]) <= {"no_identity", "stale_audience_change"} and s["drops"]["no_identity"] > 0
    forwardable = s["generated"]["forwardable_events_by_type"]
    assert s["delivered"]["track"] == forwardable["custom_event"]
    assert s["delivered"]["screen"] == forwardable["screen_view"]
    # What the sandbox holds agrees with what the summary says was delivered.
    before = s["erasures"]["sandbox_before"]  # before the erasures
    assert before["events"] == s["delivered"]["track"] + s["delivered"]["screen"]
    assert before["unsubscribed"] == s["delivered"]["unsubscribe"]
    assert 0 < before["people"] <= s["users"]
    sandbox = s["sandbox"]
    assert sandbox["requests"] == sum(s["http_responses"].values())
    # The demo's erasures: each completed and removed its person (two when the user had an
    # e-mail person and, later, a customer-id person), with their events.
    erasures = s["erasures"]
    assert erasures["requested"] == 3 and erasures["results"] == {"completed": 3}
    assert s["commands_out"]["erase"] == s["delivered"]["erase"] == 3
    assert 3 <= erasures["people_removed"] <= 6 and sandbox["people"] == before["people"] - erasures["people_removed"]
    assert erasures["events_removed"] > 0 and sandbox["events"] == before["events"] - erasures["events_removed"]
    assert "erasures:" in result.stdout
    assert len(s["examples"]) == 3 and all(p["attributes"] for p in s["examples"])
    # The summary prints the end-to-end latency quantiles from the worker's histogram.
    latency = s["latency_s"]
    assert 0 < latency["p50"] <= latency["p99"]
    assert "end-to-end latency (input written -> accepted): p50" in result.stdout
    # Push devices (issue 17): generated registrations reach the sandbox as devices.
    assert s["generated"]["push_registrations"] > 0
    assert 0 < sandbox["devices"] <= s["delivered"]["add_device"] - s["delivered"].get("delete_device", 0)
    assert 0 < sandbox["people_with_devices"] <= sandbox["devices"]
    assert "push devices:" in result.stdout
