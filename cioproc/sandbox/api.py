"""Track API request handling without HTTP: bytes in, (status, JSON body) out (pure).

Error bodies are Customer.io's documented shapes:

- v1 identify and events, 400: ``{"meta": {"errors": ["...", ...]}}``;
- v1 merge_customers, 400: ``{"meta": {"error": "..."}}``;
- v2 entity, 400: ``{"errors": [{"reason", "field", "message"}]}``;
- v2 batch, 207: ``{"errors": [{"batch_index", "reason", "field", "message"}]}`` with
  every other entry applied; 400 ``{"errors": [{"reason", "field", "message"}]}`` when the
  request as a whole is malformed (nothing applied);
- success: 200 ``{}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cioproc.sandbox import validation
from cioproc.sandbox.faults import FaultInjector
from cioproc.sandbox.validation import InvalidRequest
from cioproc.sandbox.workspace import Operation, Workspace

OK: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: dict[str, Any]


@dataclass(slots=True)
class Counters:
    """Request and outcome counters reported by ``GET /_sandbox/stats``."""

    total_requests: int = 0
    by_endpoint: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    faults_injected: dict[str, int] = field(default_factory=dict)
    bytes_received: int = 0
    operations_applied: int = 0
    operations_failed: int = 0  # accepted but not applied (activity log)
    operations_rejected: int = 0  # refused with 400 / 207 (validation or rules)

    def request(self, endpoint: str, size: int) -> None:
        self.total_requests += 1
        self.by_endpoint[endpoint] = self.by_endpoint.get(endpoint, 0) + 1
        self.bytes_received += size

    def status(self, status: int | str) -> None:
        key = str(status)
        self.by_status[key] = self.by_status.get(key, 0) + 1

    def fault(self, kind: str) -> None:
        self.faults_injected[kind] = self.faults_injected.get(kind, 0) + 1


class TrackApi:
    """The sandbox's Track API endpoints over one workspace, fault rules and counters."""

    def __init__(self, workspace: Workspace, faults: FaultInjector, counters: Counters) -> None:
        self.workspace = workspace
        self.faults = faults
        self.counters = counters

    def _apply(self, op: Operation) -> None:
        outcome = self.workspace.apply(op)
        if outcome == "failed":
            self.counters.operations_failed += 1
        elif outcome == "applied":
            self.counters.operations_applied += 1

    def _checked(self, op: Operation) -> Operation:
        rejection = self.faults.rejection(op)
        if rejection is not None:
            self.counters.fault("rejected")
            raise InvalidRequest([rejection])
        return op

    def _v1(self, parse: Any) -> Reply:
        try:
            op = self._checked(parse())
        except InvalidRequest as exc:
            self.counters.operations_rejected += 1
            return Reply(400, {"meta": {"errors": [e.message for e in exc.errors]}})
        self._apply(op)
        return Reply(200, OK)

    def v1_identify(self, identifier: str, body: bytes) -> Reply:
        return self._v1(lambda: validation.v1_identify(identifier, validation.parse_json(body)))

    def v1_event(self, identifier: str, body: bytes) -> Reply:
        return self._v1(lambda: validation.v1_event(identifier, validation.parse_json(body)))

    def v1_add_device(self, identifier: str, body: bytes) -> Reply:
        return self._v1(lambda: validation.v1_add_device(identifier, validation.parse_json(body)))

    def v1_delete_device(self, identifier: str, token: str) -> Reply:
        return self._v1(lambda: validation.v1_delete_device(identifier, token))
    def v1_delete(self, identifier: str) -> Reply:
        return self._v1(lambda: validation.v1_delete(identifier))

    def v1_suppress(self, identifier: str) -> Reply:
        return self._v1(lambda: validation.v1_delete(identifier, suppress=True))

    def v1_merge(self, body: bytes) -> Reply:
        try:
            op = self._checked(validation.v1_merge(validation.parse_json(body)))
        except InvalidRequest as exc:
            self.counters.operations_rejected += 1
            return Reply(400, {"meta": {"error": "; ".join(e.message for e in exc.errors)}})
        self._apply(op)
        return Reply(200, OK)

    def v2_entity(self, body: bytes) -> Reply:
        try:
            op = self._checked(validation.v2_entity(body))
        except InvalidRequest as exc:
            self.counters.operations_rejected += 1
            return Reply(400, {"errors": [e.as_v2() for e in exc.errors]})
        self._apply(op)
        return Reply(200, OK)

    def v2_batch(self, body: bytes) -> Reply:
        try:
            entries = validation.v2_batch(body)
        except InvalidRequest as exc:
            self.counters.operations_rejected += 1
            return Reply(400, {"errors": [e.as_v2() for e in exc.errors]})
        errors: list[dict[str, Any]] = []
        for index, entry in enumerate(entries):
            try:
                if isinstance(entry, InvalidRequest):
                    raise entry
                op = self._checked(entry)
            except InvalidRequest as exc:
                self.counters.operations_rejected += 1
                errors.extend(e.as_v2(index) for e in exc.errors)
                continue
            self._apply(op)
        return Reply(207, {"errors": errors}) if errors else Reply(200, OK)
