"""Consumer lag per assigned partition, for the ``cioproc_consumer_lag`` gauge.

Lag is the partition's high-water mark (from the consumer's latest fetch) minus the next
offset this worker will read. Partitions no longer assigned are removed from the gauge.
"""

from __future__ import annotations

from typing import Any

from cioproc.app.internals import read_offsets
from cioproc.observability import metrics

LAG_INTERVAL_S = 5.0


def partition_lags(assigned: set[Any], highwater: Any, read_offset: Any) -> dict[tuple[str, int], int]:
    """{(topic, partition): lag} for partitions whose high-water mark is known (pure)."""
    lags = {}
    for tp in assigned:
        high = highwater(tp)
        if high is None:
            continue
        last = read_offset(tp)
        lags[(tp.topic, tp.partition)] = max(0, high - (last + 1 if last is not None else 0))
    return lags


class LagReporter:
    """Sets the gauge from a Faust consumer; call :meth:`report` periodically."""

    def __init__(self, topics: set[str]):
        self.topics = topics  # only input topics: the table changelogs are not consumer lag
        self._shown: set[tuple[str, int]] = set()

    def report(self, consumer: Any) -> dict[tuple[str, int], int]:
        assigned = {tp for tp in consumer.assignment() if tp.topic in self.topics}
        lags = partition_lags(assigned, _safe(consumer.highwater), read_offsets(consumer).get)
        for (topic, partition), lag in lags.items():
            metrics.CONSUMER_LAG.labels(topic=topic, partition=str(partition)).set(lag)
        for topic, partition in self._shown - set(lags):
            metrics.CONSUMER_LAG.remove(topic, str(partition))
        self._shown = set(lags)
        return lags


def _safe(highwater: Any) -> Any:
    def get(tp: Any) -> int | None:
        try:
            high: int | None = highwater(tp)
            return high
        except Exception:  # not fetched yet, or the partition was just revoked
            return None

    return get
