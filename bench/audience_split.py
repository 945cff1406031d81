"""Benchmark: planning one audience message that names many users (issue 11, item 7).

Run: ``python bench/audience_split.py [--profiles N ...] [--partitions P] [--repeats R]``.

An audience message with N profiles of distinct MPIDs (each joining one audience, with a
customer id) arrives on one partition of P. The planner maps the profiles of that partition's
users and forwards one message per other user, re-keyed to its partition. Before the fix the
message was parsed again for every forwarded user (quadratic: 4,000 profiles took 25 s with
the event loop blocked); now it is parsed once and split in one pass.

Prints, per N, the median CPU time (``time.process_time``) of ``plan_chunk`` over R runs and
the time per profile (flat when linear). Exit status 1 when the largest message takes more
than ``--target`` seconds of CPU (default 1.0 s for 10,000 profiles).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from cioproc.app.plan import plan_chunk  # noqa: E402
from cioproc.app.plan_records import PlanTopics  # noqa: E402
from cioproc.app.processor import key_partition  # noqa: E402
from cioproc.models.settings import MappingSettings  # noqa: E402

TOPICS = PlanTopics(batches="b", audiences="a", commands="c", dead_letters="d", changelog="l")


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = 1_700_000_000.0
    headers: Any = None


def message(profiles: int) -> bytes:
    return orjson.dumps({
        "type": "audience_membership_change_request",
        "id": "bench",
        "timestamp_ms": 1_700_000_000_000,
        "user_profiles": [
            {
                "mpid": str(8_000_000_000 + n),
                "user_identities": [{"type": "customer", "encoding": "raw", "value": f"c-{n}"}],
                "audiences": [{"audience_id": 1000 + n % 7, "audience_name": f"Audience {n % 7}", "action": "add"}],
            }
            for n in range(profiles)
        ],
    })


def cpu_seconds(value: bytes, partitions: int, repeats: int) -> tuple[float, int, int]:
    """Median CPU seconds of planning the message; the commands and forwards it made."""

    def partition_for(topic: str, key: bytes) -> int:
        return key_partition(key, partitions)

    record = Record(TOPICS.audiences, 0, 0, None, value)
    times = []
    plan = None
    for _ in range(repeats):
        gc.disable()
        start = time.process_time()
        plan = plan_chunk([record], TOPICS, MappingSettings(), lambda p, k: None, partition_for)
        times.append(time.process_time() - start)
        gc.enable()
    return statistics.median(times), len(plan.commands), len(plan.forwards)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", type=int, nargs="+", default=[1_000, 4_000, 10_000])
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target", type=float, default=1.0, help="CPU seconds allowed for the largest message")
    args = parser.parse_args()
    largest = 0.0
    for profiles in args.profiles:
        seconds, commands, forwards = cpu_seconds(message(profiles), args.partitions, args.repeats)
        largest = seconds
        print(f"{profiles:>7,} profiles: {seconds * 1000:8.1f} ms CPU ({seconds / profiles * 1e6:5.1f} us/profile), "
              f"{commands:,} commands, {forwards:,} forwards")
    ok = largest <= args.target
    print(f"largest message: {largest:.3f} s CPU, target {args.target:.1f} s: {'ok' if ok else 'TOO SLOW'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
