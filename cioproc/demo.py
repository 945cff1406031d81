"""`cioproc demo`: the whole pipeline on one machine, with a progress bar and a summary.

It starts its own Kafka (a fresh one under ``.cioproc/demo`` unless ``--keep-data``),
applies topics.yaml, starts the Customer.io sandbox and one worker (processor + sender),
generates and produces a synthetic data set, shows progress while the pipeline drains,
then sends a few data subject erasures of generated users and waits for their results,
and prints what went in, what came out and what the sandbox holds. Everything it started
is stopped at the end, also on Ctrl-C, unless ``--keep-running``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cioproc.ops.progress import progress_bar
from cioproc.ops.scrape import (
    Samples,
    by_label,
    free_port,
    http_json,
    latency_quantile,
    scrape,
    total,
)

__all__ = ["SANDBOX_KEY", "SANDBOX_SITE", "Samples", "Started", "build_parser", "by_label", "cleanup", "free_port",
           "http_json", "latency_quantile", "main", "print_summary", "run_pipeline", "scrape", "total"]

SANDBOX_SITE = "sandbox-site"
SANDBOX_KEY = "sandbox-demo-key"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cioproc demo", description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=10_000, help="synthetic users (default %(default)s)")
    p.add_argument("--events", type=int, default=100_000, help="synthetic events (default %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="generator seed (default %(default)s)")
    p.add_argument("--push-share", type=float, default=0.5,
                   help="share of iOS and Android devices that register for push (default %(default)s); "
                   "the demo forwards them as devices (CIO_FORWARD_DEVICES=true) unless that is set to false")
    p.add_argument("--erasures", type=int, default=3,
                   help="erasure requests sent once the data is delivered (default %(default)s)")
    p.add_argument("--kafka-port", type=int, default=9192, help="port of the demo's own broker (default %(default)s)")
    p.add_argument("--sandbox-port", type=int, default=0, help="sandbox port (default: a free one)")
    p.add_argument("--metrics-port", type=int, default=0, help="worker metrics port (default: a free one)")
    p.add_argument("--keep-running", action="store_true", help="leave Kafka, sandbox and worker running at the end")
    p.add_argument("--keep-data", action="store_true", help="reuse the demo broker's data from an earlier run")
    p.add_argument("--timeout", type=float, default=900, help="give up draining after this many seconds")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="also write the summary as JSON to FILE")
    return p


@dataclass
class Started:
    """What this run started, so cleanup stops exactly that."""

    broker: Any = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from cioproc.kafka.broker import BrokerError, LocalBroker

    home = Path(os.environ.get("CIOPROC_HOME", ".cioproc")).resolve()
    broker = LocalBroker(home=home / "demo", port=args.kafka_port)
    # The demo broker shares the jar cache of the regular broker.
    started = Started()
    interrupted = False

    def on_term(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        _link_jar_cache(home, broker)
        if not args.keep_data and broker.pid() is None:
            shutil.rmtree(broker.root, ignore_errors=True)
        if broker.start(progress=lambda m: print(m, file=sys.stderr)):
            started.broker = broker
        summary = run_pipeline(args, broker, started)
        print_summary(summary)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(summary, indent=2, sort_keys=True))
        return 0 if summary["complete"] else 1
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping what the demo started", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if not args.keep_running or interrupted:
            cleanup(started)
        else:
            print(f"left running: kafka on {broker.bootstrap}; stop with `cioproc kafka stop --port {broker.port}` "
                  f"(CIOPROC_HOME={home / 'demo'})", file=sys.stderr)


def _link_jar_cache(home: Path, broker: Any) -> None:
    shared = home / "kafka" / broker.jars.name
    if shared.exists() and not broker.jars.exists():
        broker.jars.parent.mkdir(parents=True, exist_ok=True)
        broker.jars.symlink_to(shared, target_is_directory=True)


def cleanup(started: Started) -> None:
    for proc in reversed(started.processes):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in reversed(started.processes):
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if started.broker is not None:
        started.broker.stop(progress=lambda m: print(m, file=sys.stderr))


def run_pipeline(args: argparse.Namespace, broker: Any, started: Started) -> dict[str, Any]:
    from cioproc.generate.model import Summary
    from cioproc.generate.synthetic import generate
    from cioproc.kafka.admin import reconcile
    from cioproc.kafka.topics import load_topics

    topics = load_topics(os.environ.get("CIOPROC_TOPICS_FILE", "topics.yaml"))
    report = asyncio.run(reconcile(topics, broker.bootstrap, create=True))
    if report.drift:
        raise RuntimeError("topics drifted from topics.yaml:\n" + "\n".join(report.drift))

    sandbox_port = args.sandbox_port or free_port()
    metrics_port = args.metrics_port or free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    admin_token = secrets.token_urlsafe(24)  # the sandbox's /_sandbox/* routes need it
    logs = broker.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "CIO_TRACK_URL": sandbox_url,
        "CIO_SITE_ID": SANDBOX_SITE,
        "CIO_API_KEY": SANDBOX_KEY,
        "CIO_MAX_REQUESTS_PER_SECOND": os.environ.get("CIO_MAX_REQUESTS_PER_SECOND", "1000"),
        "CIOPROC_METRICS_PORT": str(metrics_port),
        "CIOPROC_TOPICS_FILE": str(topics.path.resolve()),
        "CIOPROC_ENV_FILE": "/nonexistent",
        "CIO_FORWARD_DEVICES": os.environ.get("CIO_FORWARD_DEVICES", "true"),
    }
    print(
        f"sandbox: starting on {sandbox_url} (admin token for {sandbox_url}/_sandbox/*: {admin_token})",
        file=sys.stderr,
    )
    started.processes.append(
        subprocess.Popen(
            [sys.executable, "-m", "cioproc.cli", "sandbox", "--port", str(sandbox_port), "--admin-token", admin_token],
            env=env,
            stdout=open(logs / "sandbox.log", "wb"),
            stderr=subprocess.STDOUT,
        )
    )
    _wait_http(f"{sandbox_url}/_sandbox/health", started.processes[-1], logs / "sandbox.log")
    print(f"worker: starting (processor + sender); logs in {logs / 'worker.log'}", file=sys.stderr)
    started.processes.append(
        subprocess.Popen(
            [sys.executable, "-m", "cioproc.cli", "worker", "--role", "all"],
            env=env,
            stdout=open(logs / "worker.log", "wb"),
            stderr=subprocess.STDOUT,
        )
    )
    worker = started.processes[-1]
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"

    print(f"generate: {args.users} users, {args.events} events (seed {args.seed})", file=sys.stderr)
    summary_in = Summary()
    generated = list(generate(users=args.users, events=args.events, seed=args.seed,
                              now_ms=int(time.time() * 1000), summary=summary_in, push_share=args.push_share,
                              erasures=max(0, args.erasures)))
    records = [r for r in generated if r.topic_role != "erasures"]
    requests = [r for r in generated if r.topic_role == "erasures"]
    batches = sum(1 for r in records if r.topic_role == "batches")
    audience_messages = len(records) - batches
    t0 = time.monotonic()
    produced = asyncio.run(_produce(records, broker.bootstrap, topics))
    print(f"produce: {produced} messages ({batches} batches, {audience_messages} audience changes) in "
          f"{time.monotonic() - t0:.1f}s", file=sys.stderr)

    drained_at = _drain(args, worker, metrics_url, batches, logs, topics.by_role("commands_dlq").name)
    complete = drained_at is not None
    elapsed = (drained_at or time.monotonic()) - t0
    before = _workspace(sandbox_url, admin_token)
    if complete and requests:
        asyncio.run(_produce(requests, broker.bootstrap, topics))
        print(f"erasures: {len(requests)} requests", file=sys.stderr)
        complete = _drain(args, worker, metrics_url, batches, logs, topics.by_role("commands_dlq").name,
                          results=len(requests)) is not None
    samples = scrape(metrics_url)
    stats = http_json(f"{sandbox_url}/_sandbox/stats", token=admin_token)
    people = http_json(f"{sandbox_url}/_sandbox/people", token=admin_token)["people"]
    events = http_json(f"{sandbox_url}/_sandbox/events", token=admin_token)["events"]
    after = _workspace(sandbox_url, admin_token)
    events_in = total(samples, "cioproc_events_in_total")
    return {
        "complete": complete,
        "elapsed_s": round(elapsed, 2),
        "users": args.users,
        "events_generated": args.events,
        "batches_in": int(total(samples, "cioproc_batches_in_total")),
        "events_in": int(events_in),
        "audience_changes_in": int(total(samples, "cioproc_audience_changes_in_total")),
        "commands_out": {k: int(v) for k, v in by_label(samples, "cioproc_commands_out_total", "type").items()},
        "delivered": {k: int(v) for k, v in by_label(samples, "cioproc_commands_delivered_total", "type").items()},
        "drops": {k: int(v) for k, v in by_label(samples, "cioproc_drops_total", "reason").items()},
        "dead_letters": {k: int(v) for k, v in by_label(samples, "cioproc_dlq_writes_total", "reason").items()},
        "http_responses": {k: int(v) for k, v in by_label(samples, "cioproc_http_responses_total", "code").items()},
        "http_transport_errors": int(total(samples, "cioproc_http_transport_errors_total")),
        "latency_s": {f"p{round(q * 100)}": latency_quantile(samples, q) for q in (0.5, 0.99)},
        "http_retries": int(total(samples, "cioproc_http_retries_total")),
        "events_per_s": round(events_in / elapsed, 1) if elapsed > 0 else 0.0,
        "generated": {
            "batches": batches,
            "audience_messages": audience_messages,
            "events_by_type": dict(summary_in.events_by_type),
            "forwardable_events_by_type": dict(summary_in.forwardable_events_by_type),
            "push_registrations": summary_in.events_by_type.get("push_registration", 0),
        },
        "sandbox": {
            "requests": stats.get("total_requests"),
            "people": len(people),
            "events": len(events),
            "unsubscribed": sum(1 for p in people if p.get("unsubscribed")),
            "devices": sum(len(p.get("devices", ())) for p in people),
            "people_with_devices": sum(1 for p in people if p.get("devices")),
        },
        "erasures": {
            "requested": len(requests),
            "results": {k: int(v) for k, v in by_label(samples, "cioproc_erasure_results_total", "status").items()},
            "people_removed": before["people"] - after["people"],
            "events_removed": before["events"] - after["events"],
            "sandbox_before": before,
        },
        "examples": _examples(people),
    }


def _workspace(sandbox_url: str, token: str) -> dict[str, int]:
    """People, unsubscribed people and events the sandbox holds."""
    people = http_json(f"{sandbox_url}/_sandbox/people", token=token)["people"]
    events = http_json(f"{sandbox_url}/_sandbox/events", token=token)["events"]
    unsubscribed = sum(1 for p in people if p.get("unsubscribed"))
    return {"people": len(people), "unsubscribed": unsubscribed, "events": len(events)}


async def _produce(records: list[Any], bootstrap: str, topics: Any) -> int:
    from cioproc.generate.produce import produce_records

    return await produce_records(records, bootstrap, topics)


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} process exited with {proc.returncode}; see {log}")
        try:
            http_json(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s; see {log}")


def _drain(
    args: argparse.Namespace,
    worker: subprocess.Popen[bytes],
    metrics_url: str,
    batches: int,
    logs: Path,
    dlq_topic: str,
    results: int = 0,
) -> float | None:
    """Show progress until every batch is processed, every command delivered, dead-lettered or
    dropped by an erasure, and ``results`` erasure results written; the monotonic time it
    first was, or None if it never was."""
    deadline = time.monotonic() + args.timeout
    tty = sys.stderr.isatty()
    last_line = ""
    stable_since = None
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            print(f"\nworker exited with {worker.returncode}; see {logs / 'worker.log'}", file=sys.stderr)
            return None
        samples = scrape(metrics_url)
        done_in = total(samples, "cioproc_batches_in_total")
        out = total(samples, "cioproc_commands_out_total")
        settled = (
            total(samples, "cioproc_commands_delivered_total")
            + total(samples, "cioproc_dlq_writes_total", topic=dlq_topic)
            + total(samples, "cioproc_drops_total", reason="erased_before_delivery")
        )
        line = progress_bar(done_in, batches, "processed") + "  " + progress_bar(settled, out, "delivered").lstrip("\r")
        if tty:
            print(line, end="", file=sys.stderr, flush=True)
        elif line != last_line and int(time.monotonic()) % 5 == 0:
            print(line.strip(), file=sys.stderr, flush=True)
        last_line = line
        answered = total(samples, "cioproc_erasure_results_total")
        if samples and done_in >= batches and out > 0 and settled >= out and answered >= results:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since > 2.0:  # nothing new arrives: the pipeline drained
                print(line if not tty else "", file=sys.stderr)
                return stable_since
        else:
            stable_since = None
        time.sleep(0.5)
    print(f"\ntimed out after {args.timeout:.0f}s; see {logs}", file=sys.stderr)
    return None


def _examples(people: list[dict[str, Any]], n: int = 3) -> list[dict[str, Any]]:
    rich = sorted(people, key=lambda p: (-len(p.get("attributes", {})), str(p.get("id")), str(p.get("email"))))
    return rich[:n]


def print_summary(s: dict[str, Any]) -> None:
    def table(title: str, rows: dict[str, Any]) -> None:
        print(f"  {title}:")
        for key, value in rows.items() or {"(none)": ""}.items():
            print(f"    {key:<32} {value}")

    print()
    print("cioproc demo summary" + ("" if s["complete"] else " (INCOMPLETE)"))
    print(f"  events generated / read:         {s['events_generated']} / {s['events_in']} "
          f"in {s['batches_in']} batches, {s['audience_changes_in']} audience changes")
    table("commands out, by type", s["commands_out"])
    table("delivered to Customer.io, by type", s["delivered"])
    table("drops, by reason", s["drops"])
    table("dead letters, by reason", s["dead_letters"])
    table("HTTP responses, by status", s["http_responses"])
    print(f"  HTTP retries, transport errors:  {s['http_retries']}, {s['http_transport_errors']}")
    latency = s["latency_s"]
    if latency["p50"] is not None:
        print(f"  end-to-end latency (input written -> accepted): p50 {latency['p50'] * 1000:.0f} ms, "
              f"p99 {latency['p99'] * 1000:.0f} ms (from the histogram's buckets)")
    print(f"  throughput:                      {s['events_per_s']} events/s: {s['elapsed_s']} s from the first "
          f"produced batch to the last delivery")
    sb = s["sandbox"]
    print(f"  sandbox workspace:               {sb['people']} people ({sb['unsubscribed']} unsubscribed), "
          f"{sb['events']} events, {sb['requests']} requests")
    print(f"  push devices:                    {sb['devices']} on {sb['people_with_devices']} people "
          f"({s['generated']['push_registrations']} push registrations generated)")
    er = s["erasures"]
    print(f"  erasures:                        {er['requested']} requested, results {er['results'] or '{}'}; "
          f"{er['people_removed']} people and {er['events_removed']} events removed from the sandbox")
    print("  example profiles:")
    for person in s["examples"]:
        print("    " + json.dumps(person, sort_keys=True)[:400])
