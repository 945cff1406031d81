"""Records, batches, topics and a counting state store for the tests of the processor's pure chunk
planning (test_processor_plan.py, test_processor_safety.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from cioproc.app.plan_records import PlanTopics
from cioproc.app.processor import key_partition
from cioproc.models.settings import MappingSettings

TOPICS = PlanTopics(batches="in.batches", audiences="in.audiences", commands="out.commands", dead_letters="out.dlq")
PARTITIONS = 4
SETTINGS = MappingSettings(send_created_at=True)


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = 1_700_000_000.0
    headers: Any = None


def partition_for(topic: str, key: bytes) -> int:
    return key_partition(key, PARTITIONS)


def batch(mpid: int, *events: dict, **extra: Any) -> bytes:
    doc = {
        "mpid": mpid,
        "user_identities": {"customer_id": f"c-{mpid}", "email": f"u{mpid}@example.com"},
        "user_attributes": {"$FirstName": "Ann", "plan": "gold"},
        "device_info": {"platform": "iOS"},
        "application_info": {"os": "IOS"},
        "events": list(events),
    }
    doc.update(extra)
    return orjson.dumps(doc)


def track(name: str, ts: int, message_id: str) -> dict:
    return {
        "event_type": "custom_event",
        "data": {"event_name": name, "timestamp_unixtime_ms": ts, "source_message_id": message_id},
    }


def here(mpid: int, offset: int = 0, value: bytes | None = None, key: bytes | None | str = "mpid") -> Rec:
    """A batches record in the partition its MPID belongs to."""
    k = str(mpid).encode()
    return Rec(
        TOPICS.batches, partition_for(TOPICS.batches, k), offset, k if key == "mpid" else key, value or batch(mpid)
    )


class DictStore:
    """load_state over a dict, counting reads."""

    def __init__(self) -> None:
        self.data: dict[tuple[int, bytes], bytes] = {}
        self.reads = 0

    def get(self, partition: int, key: bytes) -> bytes | None:
        self.reads += 1
        return self.data.get((partition, key))


def audience_message(*profiles: tuple[int, int, str]) -> bytes:
    return orjson.dumps({
        "type": "audience_membership_change_request",
        "id": "x",
        "timestamp_ms": 1_700_000_005_000,
        "user_profiles": [
            {
                "mpid": str(mpid),
                "user_identities": [{"type": "customer", "encoding": "raw", "value": f"c-{mpid}"}],
                "audiences": [{"audience_id": audience, "audience_name": name, "action": "add"}],
            }
            for mpid, audience, name in profiles
        ],
    })
