"""Issue 16, metrics: the input's timestamp reaches the command record, and the /metrics output
has the standard collectors, the build info, HTTP codes apart from transport errors, and the
latency histograms. The dashboard and the alert rules name only metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import yaml

from cioproc import __version__
from cioproc.app.plan import plan_chunk
from cioproc.app.plan_records import PlanTopics
from cioproc.app.processor import key_partition
from cioproc.models.commands import INPUT_TIMESTAMP_HEADER
from cioproc.models.settings import MappingSettings
from cioproc.observability import metrics

REPO = Path(__file__).resolve().parents[1]
TOPICS = PlanTopics(batches="in.batches", audiences="in.audiences", commands="out.commands", dead_letters="out.dlq")


class Rec:
    def __init__(self, key: bytes, value: bytes, timestamp: float, partition: int):
        self.topic, self.partition, self.offset = "in.batches", partition, 7
        self.key, self.value, self.timestamp, self.headers = key, value, timestamp, None


def test_commands_carry_the_input_records_timestamp():
    value = orjson.dumps({
        "mpid": 42,
        "user_identities": {"customer_id": "c-42"},
        "events": [{"event_type": "custom_event",
                    "data": {"event_name": "Play", "timestamp_unixtime_ms": 1_700_000_000_000,
                             "source_message_id": "m-1"}}],
    })
    partition = key_partition(b"42", 4)
    record = Rec(b"42", value, 1_700_000_123.456, partition)
    plan = plan_chunk([record], TOPICS, MappingSettings(), lambda p, k: None, lambda t, k: key_partition(k, 4), None)
    assert plan.commands, "the batch made no commands"
    assert {dict(c.headers or ()).get(INPUT_TIMESTAMP_HEADER) for c in plan.commands} == {b"1700000123456"}


def _scrape() -> str:
    return metrics.render().decode()


def test_metrics_output_has_the_standard_collectors_and_build_info():
    text = _scrape()
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_gc_collections_total",
                 "python_info"):
        assert re.search(rf"^{name}\b", text, re.M), name
    assert 'cioproc_build_info{python="' in text and f'version="{__version__}"' in text


def test_http_codes_and_transport_errors_are_apart_and_latencies_are_histograms():
    from cioproc.app.sender_stats import StatsExporter
    from cioproc.sender import SenderStats

    class FakeDeliverer:  # only what the exporter reads
        stats = SenderStats()

    deliverer = FakeDeliverer()
    deliverer.stats.requests.update({"200": 3, "503": 1, "timeout": 2})
    deliverer.stats.latencies.extend([0.01, 0.02, 0.03])
    before = metrics.TRACK_REQUEST_LATENCY._sum.get()
    StatsExporter().export(deliverer)
    text = _scrape()
    assert 'cioproc_http_responses_total{code="200"}' in text
    assert 'cioproc_http_responses_total{code="503"}' in text
    assert 'cioproc_http_transport_errors_total{reason="timeout"}' in text
    assert 'code="0"' not in text and 'code="timeout"' not in text
    assert abs(metrics.TRACK_REQUEST_LATENCY._sum.get() - before - 0.06) < 1e-9
    assert "cioproc_end_to_end_latency_seconds_bucket" in text


def _dashboard_metric_names() -> set[str]:
    dashboard = json.loads((REPO / "deploy/grafana/cioproc.json").read_text())
    exprs: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    exprs.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard)
    alerts = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            exprs.append(rule["expr"])
    assert len(exprs) >= 10
    names = set()
    for expr in exprs:
        names.update(n for n in re.findall(r"\b((?:cioproc|process|python)_[a-z0-9_]+)\b", expr))
    return names


def test_every_metric_the_dashboard_and_alerts_name_is_exported():
    # Make every labelled family show samples (a family without children prints no sample lines).
    metrics.DLQ_WRITES.labels(topic="t", reason="r")
    metrics.DROPS.labels(reason="r")
    metrics.COMMANDS_OUT.labels(type="identify")
    metrics.DELIVERED.labels(type="identify")
    metrics.CONSUMER_LAG.labels(topic="t", partition="0")
    metrics.HTTP_RESPONSES.labels(code="200")
    metrics.HTTP_TRANSPORT_ERRORS.labels(reason="timeout")
    text = _scrape()
    exported = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", text, re.M))
    names = _dashboard_metric_names()
    missing = sorted(names - exported)
    assert not missing, f"named by the dashboard or alerts but not in /metrics: {missing}"
    for needed in ("cioproc_consumer_lag", "cioproc_sender_auth_blocked", "cioproc_dlq_writes_total",
                   "cioproc_http_responses_total", "cioproc_end_to_end_latency_seconds_bucket"):
        assert needed in names, needed
