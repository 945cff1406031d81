"""Issue 17 (demo): the generator can emit push registrations (``push_share``), off by default."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import orjson

from cioproc.generate.model import Summary
from cioproc.generate.synthetic import generate
from cioproc.mapping import map_batch, parse_batch
from cioproc.models.settings import MappingSettings

NOW = 1_735_689_600_000


def _batches(**kw):
    return [r.value for r in generate(now_ms=NOW, **kw) if r.topic_role == "batches"]


def test_off_by_default_no_push_registration_or_token():
    for value in _batches(users=200, events=2000, seed=5):
        assert all(e["event_type"] != "push_registration" for e in value["events"])
        assert "push_token" not in value["device_info"]


def test_with_a_push_share_devices_register_rotate_and_turn_push_off_within_the_exact_event_count():
    summary = Summary()
    values = [r.value for r in generate(users=600, events=9000, seed=5, now_ms=NOW, push_share=0.8, summary=summary)
              if r.topic_role == "batches"]
    assert summary.events == sum(len(v["events"]) for v in values) == 9000
    registrations = [(v, e["data"]) for v in values for e in v["events"] if e["event_type"] == "push_registration"]
    assert summary.events_by_type["push_registration"] == len(registrations) > 100
    assert Counter(d["register"] for _, d in registrations)[False] > 0
    tokens: dict[str, str | None] = {}  # (mpid, platform) -> current token
    rotations = 0
    for value in values:
        platform = value["device_info"]["platform"]
        device = (str(value["mpid"]), platform)
        for event in value["events"]:
            if event["event_type"] == "push_registration":
                assert platform in ("iOS", "Android")
                data = event["data"]
                if data["register"]:
                    rotations += bool(tokens.get(device))
                    tokens[device] = data["registration_token"]
                else:
                    assert data["registration_token"] == tokens.get(device)
                    tokens[device] = None
        assert value["device_info"].get("push_token") == (tokens.get(device) or None)  # carried while registered
    assert rotations > 0
    ios = [d["registration_token"] for v, d in registrations if v["device_info"]["platform"] == "iOS" and d["register"]]
    assert ios and all(len(t) == 64 and int(t, 16) >= 0 for t in ios)  # APNs tokens


def test_generated_registrations_map_to_device_commands():
    states: dict = {}
    kinds: Counter = Counter()
    settings = MappingSettings(forward_devices=True)
    for value in _batches(users=300, events=4000, seed=6, push_share=0.7):
        batch = parse_batch(orjson.dumps(value), NOW)
        result = map_batch(batch, states.get(batch.mpid), settings)
        states[batch.mpid] = result.state
        kinds.update(c.kind.value for c in result.commands)
        assert not {d.reason for d in result.drops} & {"invalid_event", "unsupported_push_platform", "internal_error"}
    assert kinds["add_device"] > 30 and kinds["delete_device"] > 0


def test_cli_push_share(tmp_path):
    out = tmp_path / "out.jsonl"
    summary = tmp_path / "summary.json"
    done = subprocess.run(
        [sys.executable, "-m", "cioproc.cli", "generate", "--users", "100", "--events", "1500", "--now-ms", str(NOW),
         "--push-share", "0.9", "-o", str(out), "--summary", str(summary), "-q"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(summary.read_text())["events_by_type"]["push_registration"] > 0
    bad = subprocess.run([sys.executable, "-m", "cioproc.cli", "generate", "--push-share", "1.5"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--push-share" in bad.stderr
