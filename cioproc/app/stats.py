"""What the processor counted: inputs, commands, drops and dead letters, per reason.

:class:`Counts` is a plain value (one per chunk, merged into the running totals) so the
hot path pays for a few dict updates per chunk, not per metric. :class:`ProcessorStats`
keeps the totals since start, feeds the Prometheus counters of
:mod:`cioproc.observability.metrics` and renders the periodic log summary.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from cioproc.observability import metrics


@dataclass(slots=True)
class Counts:
    """Counters for some input (a chunk, or everything since start)."""

    batches: int = 0  # batches mapped
    events: int = 0  # events inside those batches
    audience_profiles: int = 0  # audience profiles mapped
    commands: Counter[str] = field(default_factory=Counter)  # command kind -> commands written
    drops: Counter[str] = field(default_factory=Counter)  # drop reason -> count (not dead-lettered)
    dead_letters: Counter[str] = field(default_factory=Counter)  # rejection reason -> records dead-lettered
    forwarded: int = 0  # records re-keyed to the partition of their MPID
    state_resets: int = 0  # stored states that could not be decoded (the user started afresh)

    def add(self, other: Counts) -> None:
        self.batches += other.batches
        self.events += other.events
        self.audience_profiles += other.audience_profiles
        self.commands.update(other.commands)
        self.drops.update(other.drops)
        self.dead_letters.update(other.dead_letters)
        self.forwarded += other.forwarded
        self.state_resets += other.state_resets

    def summary(self) -> str:
        """One log line: totals, then commands, drops and dead letters by reason."""
        parts = [
            f"batches={self.batches}",
            f"events={self.events}",
            f"audience_profiles={self.audience_profiles}",
            f"commands={sum(self.commands.values())}{_by(self.commands)}",
            f"drops={sum(self.drops.values())}{_by(self.drops)}",
            f"dead_letters={sum(self.dead_letters.values())}{_by(self.dead_letters)}",
        ]
        if self.forwarded:
            parts.append(f"forwarded={self.forwarded}")
        if self.state_resets:
            parts.append(f"state_resets={self.state_resets}")
        return " ".join(parts)


def _by(counter: Counter[str]) -> str:
    if not counter:
        return ""
    return " (" + ", ".join(f"{key}={value}" for key, value in sorted(counter.items())) + ")"


class ProcessorStats:
    """Totals since the worker started; :meth:`record` also updates the Prometheus metrics."""

    def __init__(self, dead_letter_topic: str):
        self.totals = Counts()
        self.dead_letter_topic = dead_letter_topic
        self._reported = Counts()

    def record(self, counts: Counts) -> None:
        """Add a processed chunk's counts (called once its offsets may be committed)."""
        self.totals.add(counts)
        if counts.batches:
            metrics.BATCHES_IN.inc(counts.batches)
            metrics.EVENTS_IN.inc(counts.events)
        if counts.audience_profiles:
            metrics.AUDIENCE_CHANGES_IN.inc(counts.audience_profiles)
        for kind, n in counts.commands.items():
            metrics.COMMANDS_OUT.labels(type=kind).inc(n)
        for reason, n in counts.drops.items():
            metrics.DROPS.labels(reason=reason).inc(n)
        for reason, n in counts.dead_letters.items():
            metrics.DLQ_WRITES.labels(topic=self.dead_letter_topic, reason=reason).inc(n)

    def summary_if_changed(self) -> str | None:
        """The totals' summary line, or None when nothing happened since the last one."""
        totals = self.totals
        if totals == self._reported:
            return None
        snapshot = Counts()
        snapshot.add(totals)
        self._reported = snapshot
        return totals.summary()
