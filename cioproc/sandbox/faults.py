"""Fault injection for the sandbox: what goes wrong, decided by a seedable RNG (pure).

Per Track API request the injector draws, in this order: an HTTP fault (``fault_rate``,
answered with one of ``fault_statuses``; 429 carries ``Retry-After: retry_after``), a
dropped connection before the request is applied (``drop_rate``) and a dropped
connection after it was applied (``drop_after_apply_rate``, the case that makes a client
retry something that already took effect). Every request draws the same number of
random numbers, so a seed fixes the decision for the n-th request.

``unavailable_ids`` makes one person's requests fail: a request whose body or path holds one
of these identifiers is answered 503 every time (an outage of one user's partition).

Rules reject chosen entries for good (400 for v1 and v2 entity, a 207 entry error in a
v2 batch): events by name or id, and anything addressing a listed identifier.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cioproc.sandbox.validation import EntryError
from cioproc.sandbox.workspace import EMAIL, EventOp, IdentifyOp, MergeOp, Operation

FAULT_STATUSES = (500, 503, 429)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Faults the sandbox injects; all off by default."""

    fault_rate: float = 0.0
    fault_statuses: tuple[int, ...] = FAULT_STATUSES
    retry_after: int = 1  # seconds, sent with 429
    latency_ms: int = 0
    drop_rate: float = 0.0
    drop_after_apply_rate: float = 0.0
    seed: int | None = None
    reject_event_names: tuple[str, ...] = ()
    reject_event_ids: tuple[str, ...] = ()
    reject_ids: tuple[str, ...] = ()  # ids, emails (any case) or cio_ids
    unavailable_ids: tuple[str, ...] = ()  # requests naming one of these get 503, every time

    def __post_init__(self) -> None:
        for name in ("fault_rate", "drop_rate", "drop_after_apply_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number between 0 and 1")
        if not self.fault_statuses or any(s not in FAULT_STATUSES for s in self.fault_statuses):
            raise ValueError(f"fault_statuses must be a non-empty subset of {FAULT_STATUSES}")
        for name in ("retry_after", "latency_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise ValueError("seed must be an integer or null")
        for name in ("reject_event_names", "reject_event_ids", "reject_ids", "unavailable_ids"):
            if not all(isinstance(v, str) for v in getattr(self, name)):
                raise ValueError(f"{name} must be a list of strings")

    @classmethod
    def from_json(cls, data: Any) -> FaultConfig:
        """Build from a JSON object; unknown keys and bad values raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError("fault config must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        values = dict(data)
        for name in ("fault_statuses", "reject_event_names", "reject_event_ids", "reject_ids", "unavailable_ids"):
            if name in values:
                if not isinstance(values[name], list):
                    raise ValueError(f"{name} must be a list")
                values[name] = tuple(values[name])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What happens to one request."""

    status: int | None = None  # answer with this instead of handling
    drop: bool = False  # close the connection before handling
    drop_after_apply: bool = False  # handle, then close the connection without answering
    latency_ms: int = 0


@dataclass(slots=True)
class FaultInjector:
    """Draws fault decisions from a seedable RNG."""

    config: FaultConfig = field(default_factory=FaultConfig)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.config.seed)

    def replace(self, config: FaultConfig) -> None:
        """Use a new configuration; the RNG restarts from its seed."""
        self.config = config
        self.rng = random.Random(config.seed)

    def decide(self) -> FaultDecision:
        c = self.config
        fault, pick, drop, drop_after = (self.rng.random() for _ in range(4))
        status = c.fault_statuses[int(pick * len(c.fault_statuses))] if fault < c.fault_rate else None
        return FaultDecision(
            status=status,
            drop=status is None and drop < c.drop_rate,
            drop_after_apply=status is None and drop >= c.drop_rate and drop_after < c.drop_after_apply_rate,
            latency_ms=c.latency_ms,
        )

    def unavailable(self, path: str, body: bytes) -> bool:
        """Whether a request naming this path and body hits an ``unavailable_ids`` outage."""
        return any(f'"{value}"'.encode() in body or path.endswith("/" + value) or f"/{value}/" in path
                   for value in self.config.unavailable_ids)

    def rejection(self, op: Operation) -> EntryError | None:
        """The rule, if any, that refuses this operation for good."""
        c = self.config
        if isinstance(op, EventOp):
            if op.name in c.reject_event_names:
                return EntryError(
                    "name", "rejected", f"event name {op.name!r} is rejected by sandbox rule reject_event_names"
                )
            if op.event_id is not None and op.event_id in c.reject_event_ids:
                return EntryError(
                    "id", "rejected", f"event id {op.event_id} is rejected by sandbox rule reject_event_ids"
                )
        if c.reject_ids:
            emails = {v.lower() for v in c.reject_ids}
            for where, kind, value in _identifiers(op):
                if (value.lower() in emails) if kind == EMAIL else (value in c.reject_ids):
                    return EntryError(where, "rejected", f"{kind} {value} is rejected by sandbox rule reject_ids")
        return None


def _identifiers(op: Operation) -> list[tuple[str, str, str]]:
    if isinstance(op, MergeOp):
        return [("primary", op.primary.kind, op.primary.value), ("secondary", op.secondary.kind, op.secondary.value)]
    found = [("identifiers", op.target.kind, op.target.value)]
    if isinstance(op, IdentifyOp):
        found += [(f"attributes.{k}", k, v) for k, v in op.identifiers.items() if v is not None]
    return found
