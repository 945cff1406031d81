"""A Customer.io workspace in memory: people, their events, and the activity log (pure).

Semantics follow Customer.io's Track API documentation (reference/customerio.md and the
OpenAPI file's descriptions of identify, events and merge_customers):

- A person has a ``cio_id`` (assigned here), an ``id`` (case-sensitive) and/or an
  ``email`` (matched case-insensitively), and attributes. ``unsubscribed`` is an attribute
  stored as a boolean: ``true``, ``"true"`` in any case, ``1`` and ``"1"`` mean
  unsubscribed, any other value subscribed.
- Identify: the person named by the path identifier (v1) or ``identifiers`` (v2) is
  updated. If no one has that identifier but an ``id``/``email`` in the body belongs to a
  person, that person is updated and gets the path identifier. If path and body name
  different people, the call succeeds but nothing changes: an *attribute update failure*
  is logged. With no match a person is created, unless ``_update: true``. Changing an
  identifier that is already set needs the ``cio_id`` form (or, for ``email`` addressed
  by ``id``, the workspace setting *Allow updates to email using ID*). An unknown
  ``cio_id`` drops the request.
- Events: recorded against the person named by the identifier; an event whose ``id`` was
  seen before is ignored. An event for an unknown id or email creates that person (the
  Track API records events for identifiers it has not seen; the OpenAPI file does not say
  otherwise); an unknown ``cio_id`` drops the event.
- Delete (v1 ``DELETE /api/v1/customers/{id}``, v2 action ``delete``): the person and all
  their information (events) are removed; an unknown person is no error (nothing happens).
  Later calls with the same identifier create a new person.
- Suppress (v1 ``POST .../suppress``, v2 ``suppress``): the person is deleted and the
  identifier named, and the person's ``id`` and ``email`` when both are set, are
  suppressed: any later call naming a suppressed identifier (as target, in an identify
  body, or on either side of a merge) is accepted and ignored (a ``suppressed`` entry in the
  activity log). An identifier of no one is suppressed too (the OpenAPI file says the call
  prevents "the person's identifier(s) from being re-added"; the sandbox takes the
  stricter reading).
- Merge: the primary must exist, else nothing happens. Attributes the primary does not
  have (or has empty) and identifiers it lacks come from the secondary; all events and
  devices move to the primary; the secondary is deleted.
- Devices (add_device / delete_device): a device is a push token with its platform and
  ``last_used`` (the request's time when not given). A token belongs to one person: adding
  it to another person moves it there. Adding a device to an unknown id or email creates
  that person (as events do); an unknown ``cio_id`` drops the request. Deleting a token the
  person does not have changes nothing.

Attribute writes are applied in arrival order; ``_timestamp`` / v2 ``timestamp`` are
accepted but not used to reorder updates, so a sender that reorders a person's commands
shows up as a different final workspace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cioproc.sandbox.records import (
    CIO_ID,
    EMAIL,
    ID,
    UNSUBSCRIBED,
    DeleteOp,
    DeviceOp,
    Event,
    EventOp,
    Identifier,
    IdentifyFailure,
    IdentifyOp,
    IdKind,
    MergeOp,
    Operation,
    Outcome,
    Person,
    folded,
    is_unsubscribed,
    same_identifier,
)

__all__ = [
    "CIO_ID", "EMAIL", "ID", "UNSUBSCRIBED", "DeleteOp", "DeviceOp", "Event", "EventOp", "IdKind",
    "IdentifyFailure", "IdentifyOp", "Identifier", "MergeOp", "Operation", "Outcome", "Person",
    "is_unsubscribed", "Workspace",
]


class Workspace:
    """People, events and the activity log of one sandbox workspace."""

    def __init__(self, *, allow_email_update_by_id: bool = False, clock: Callable[[], float] = time.time) -> None:
        self.allow_email_update_by_id = allow_email_update_by_id
        self._clock = clock
        self.clear()

    def clear(self) -> None:
        self.people: dict[str, Person] = {}
        self._by_id: dict[str, str] = {}
        self._by_email: dict[str, str] = {}
        self.events: dict[str, Event] = {}
        self._device_owner: dict[str, str] = {}  # token -> cio_id of the person holding it
        self.activity: list[dict[str, Any]] = []
        self.events_deduplicated = 0
        self._next_cio = 0
        self._next_anonymous_event = 0
        self.suppressed: set[tuple[str, str]] = set()  # (kind, value; email lower-cased)

    # -- lookup ---------------------------------------------------------------------
    def find(self, ident: Identifier) -> Person | None:
        if ident.kind == CIO_ID:
            return self.people.get(ident.value)
        if ident.kind == ID:
            cio = self._by_id.get(ident.value)
        else:
            cio = self._by_email.get(ident.value.lower())
        return self.people[cio] if cio is not None else None

    def apply(self, op: Operation) -> Outcome:
        """Apply one validated operation."""
        blocked = self._suppressed_in(op)
        if blocked is not None:
            self._log("suppressed", blocked, f"{blocked.kind} is suppressed: the call is ignored")
            return "failed"
        if isinstance(op, DeleteOp):
            return self.delete(op)
        if isinstance(op, IdentifyOp):
            return self.identify(op)
        if isinstance(op, EventOp):
            return self.record_event(op)
        if isinstance(op, DeviceOp):
            return self.device(op)
        return self.merge(op)

    # -- identify -------------------------------------------------------------------
    def identify(self, op: IdentifyOp) -> Outcome:
        try:
            person, identifiers = self._resolve_identify(op)
        except IdentifyFailure as failure:
            self._log("attribute_update_failure", op.target, str(failure))
            return "failed"
        attributes = dict(person.attributes) if person else {}
        for name in op.remove:
            attributes.pop(name, None)
        for name, value in op.set.items():
            attributes[name] = is_unsubscribed(value) if name == UNSUBSCRIBED else value
        if len(attributes) > 300:
            self._log("attribute_update_failure", op.target, "a person can have at most 300 attributes")
            return "failed"
        if person is None:
            person = Person(cio_id=self._new_cio_id())
            self.people[person.cio_id] = person
        self._set_identifiers(person, identifiers)
        person.attributes = attributes
        return "applied"

    def _resolve_identify(self, op: IdentifyOp) -> tuple[Person | None, dict[str, str | None]]:
        """The person an identify updates (None: create one) and its final id/email."""
        target = op.target
        by_cio = target.kind == CIO_ID
        named = {k: v for k, v in op.identifiers.items() if v is not None}
        if by_cio:
            person = self.find(target)
            if person is None:
                raise IdentifyFailure(f"cio_id {target.value} does not exist: request dropped")
        else:
            person = self.find(target)
            others = {p.cio_id for k, v in named.items() if (p := self.find(Identifier(k, v))) is not None}
            if person is not None:
                if others - {person.cio_id}:
                    raise IdentifyFailure("path and body identifiers belong to different people")
            elif len(others) > 1:
                raise IdentifyFailure("body identifiers belong to different people")
            elif others:
                person = self.people[others.pop()]
            elif op.update_only:
                raise IdentifyFailure("_update is true and no person matches")
        requested: dict[str, str | None] = {}
        if not by_cio:
            requested[target.kind] = target.value
        for kind, value in op.identifiers.items():
            if kind in requested and not same_identifier(kind, requested[kind], value):
                raise IdentifyFailure(f"path and body give different {kind} values")
            requested.setdefault(kind, value)
        final = {ID: person.id if person else None, EMAIL: person.email if person else None}
        for kind, value in requested.items():
            current = final[kind]
            if same_identifier(kind, current, value):
                continue
            may_change = by_cio or (kind == EMAIL and target.kind == ID and self.allow_email_update_by_id)
            if current is not None and not may_change:
                raise IdentifyFailure(f"{kind} is already set; changing it needs the person's cio_id")
            if value is not None:
                holder = self.find(Identifier(kind, value))
                if holder is not None and holder is not person:
                    raise IdentifyFailure(f"{kind} {value} belongs to another person")
            final[kind] = value
        if final[ID] is None and final[EMAIL] is None:
            raise IdentifyFailure("a person needs an id or an email")
        return person, final

    def _found_or_created(self, target: Identifier, dropped: str) -> Person | None:
        """The person ``target`` names, created when it names them by id or email (as Customer.io
        does for events and devices); None, logged as ``dropped``, for an unknown cio_id."""
        person = self.find(target)
        if person is not None:
            return person
        if target.kind == CIO_ID:
            self._log(dropped, target, f"cio_id {target.value} does not exist")
            return None
        person = Person(cio_id=self._new_cio_id())
        self.people[person.cio_id] = person
        self._set_identifiers(person, {ID: None, EMAIL: None} | {target.kind: target.value})
        return person

    def _set_identifiers(self, person: Person, identifiers: dict[str, str | None]) -> None:
        if person.id is not None and person.id != identifiers[ID]:
            del self._by_id[person.id]
        if person.email is not None and not same_identifier(EMAIL, person.email, identifiers[EMAIL]):
            del self._by_email[person.email.lower()]
        if (new_id := identifiers[ID]) is not None:
            self._by_id[new_id] = person.cio_id
        if (new_email := identifiers[EMAIL]) is not None and not same_identifier(EMAIL, person.email, new_email):
            self._by_email[new_email.lower()] = person.cio_id
            person.email = new_email
        elif identifiers[EMAIL] is None:
            person.email = None
        person.id = identifiers[ID]

    def _new_cio_id(self) -> str:
        self._next_cio += 1
        return f"{0x3000000 + self._next_cio:08x}"

    # -- events ---------------------------------------------------------------------
    def record_event(self, op: EventOp) -> Outcome:
        if op.event_id is not None and op.event_id in self.events:
            self.events_deduplicated += 1
            return "deduplicated"
        person = self._found_or_created(op.target, "event_dropped")
        if person is None:
            return "failed"
        event_id = op.event_id
        if event_id is None:
            self._next_anonymous_event += 1
            event_id = f"sandbox-{self._next_anonymous_event:012d}"
        timestamp = op.timestamp if op.timestamp is not None else int(self._clock())
        self.events[event_id] = Event(event_id, op.name, op.type, timestamp, op.data, person.cio_id)
        return "applied"

    # -- devices --------------------------------------------------------------------
    def device(self, op: DeviceOp) -> Outcome:
        """add_device (moves a token held by another person) or delete_device."""
        if op.delete:
            person = self.find(op.target)
            if person is not None and op.token in person.devices:
                del person.devices[op.token]
                self._device_owner.pop(op.token, None)
            return "applied"
        person = self._found_or_created(op.target, "device_dropped")
        if person is None:
            return "failed"
        owner = self._device_owner.get(op.token)
        holder = self.people.get(owner) if owner is not None else None  # (None: that person was deleted)
        if holder is not None and holder is not person:
            holder.devices.pop(op.token, None)
            self._log("device_moved", op.target, f"device moved from cio_id {owner} to cio_id {person.cio_id}")
        device = dict(person.devices.get(op.token, {}))
        device["platform"] = op.platform
        device["last_used"] = op.last_used if op.last_used is not None else int(self._clock())
        if op.attributes:
            device["attributes"] = {**device.get("attributes", {}), **op.attributes}
        person.devices[op.token] = device
        self._device_owner[op.token] = person.cio_id
        return "applied"

    # -- merge ----------------------------------------------------------------------
    def merge(self, op: MergeOp) -> Outcome:
        primary = self.find(op.primary)
        secondary = self.find(op.secondary)
        detail = {"primary": op.primary.as_dict(), "secondary": op.secondary.as_dict()}
        if primary is None:
            self._log("merge_failure", op.primary, "primary does not exist: nothing merged", **detail)
            return "failed"
        if secondary is None:
            self._log("merge_failure", op.secondary, "secondary does not exist: nothing merged", **detail)
            return "failed"
        if primary is secondary:
            self._log("merge_failure", op.primary, "primary and secondary are the same person", **detail)
            return "failed"
        for name, value in secondary.attributes.items():
            if primary.attributes.get(name) in (None, ""):
                primary.attributes[name] = value
        for event in self.events.values():
            if event.cio_id == secondary.cio_id:
                event.cio_id = primary.cio_id
        for token, device in secondary.devices.items():
            primary.devices.setdefault(token, device)
            self._device_owner[token] = primary.cio_id
        gained = {ID: secondary.id if primary.id is None else primary.id,
                  EMAIL: secondary.email if primary.email is None else primary.email}
        self._set_identifiers(secondary, {ID: None, EMAIL: None})
        del self.people[secondary.cio_id]
        self._set_identifiers(primary, gained)
        self._log("merge", op.primary, f"merged cio_id {secondary.cio_id} into cio_id {primary.cio_id}", **detail)
        return "applied"

    # -- delete and suppress ------------------------------------------------------------
    def _suppressed_in(self, op: Operation) -> Identifier | None:
        """The first suppressed identifier an operation names, if any."""
        if not self.suppressed:
            return None
        if isinstance(op, MergeOp):
            named = [op.primary, op.secondary]
        else:
            named = [op.target]
            if isinstance(op, IdentifyOp):
                named += [Identifier(k, v) for k, v in op.identifiers.items() if v is not None]
        for ident in named:
            if ident.kind != CIO_ID and (ident.kind, folded(ident.kind, ident.value)) in self.suppressed:
                return ident
        return None

    def delete(self, op: DeleteOp) -> Outcome:
        person = self.find(op.target)
        if op.suppress:
            if op.target.kind != CIO_ID:
                self.suppressed.add((op.target.kind, folded(op.target.kind, op.target.value)))
            if person is not None:
                for kind in (ID, EMAIL):
                    value = person.identifier(kind)
                    if value is not None:
                        self.suppressed.add((kind, folded(kind, value)))
        if person is None:
            self._log("delete", op.target, "no such person: nothing deleted")
            return "failed" if not op.suppress else "applied"
        for event_id in [e.event_id for e in self.events.values() if e.cio_id == person.cio_id]:
            del self.events[event_id]
        for token in [t for t, owner in self._device_owner.items() if owner == person.cio_id]:
            del self._device_owner[token]  # the person's devices go with it
        self._set_identifiers(person, {ID: None, EMAIL: None})
        del self.people[person.cio_id]
        self._log("suppress" if op.suppress else "delete", op.target, f"deleted cio_id {person.cio_id}")
        return "applied"

    def suppressions_view(self) -> list[dict[str, str]]:
        """Suppressed identifiers, sorted, as ``GET /_sandbox/suppressions`` returns them."""
        return [{kind: value} for kind, value in sorted(self.suppressed)]

    # -- views ----------------------------------------------------------------------
    def _log(self, kind: str, ident: Identifier, reason: str, **detail: Any) -> None:
        self.activity.append(
            {"seq": len(self.activity) + 1, "type": kind, "identifier": ident.as_dict(), "reason": reason, **detail}
        )

    def people_view(self, *, with_cio_id: bool = True) -> list[dict[str, Any]]:
        """People sorted by (id, email), as ``GET /_sandbox/people`` returns them."""
        rows = []
        for person in self.people.values():
            row: dict[str, Any] = {"cio_id": person.cio_id} if with_cio_id else {}
            row |= {
                "id": person.id,
                "email": person.email,
                "attributes": {k: v for k, v in person.attributes.items() if k != UNSUBSCRIBED},
                "unsubscribed": person.unsubscribed,
            }
            if person.devices:  # (only then: rows of people without devices keep their shape)
                row["devices"] = [{"token": token, **person.devices[token]} for token in sorted(person.devices)]
            rows.append(row)
        rows.sort(key=lambda r: (r["id"] is not None, r["id"] or "", (r["email"] or "").lower(), r["email"] or ""))
        return rows

    def events_view(self, *, with_cio_id: bool = False) -> list[dict[str, Any]]:
        """Events sorted by (timestamp, event_id), as ``GET /_sandbox/events`` returns them."""
        rows = []
        for event in self.events.values():
            person = self.people[event.cio_id]
            who: dict[str, Any] = {"id": person.id, "email": person.email}
            if with_cio_id:
                who["cio_id"] = person.cio_id
            rows.append(
                {
                    "event_id": event.event_id,
                    "name": event.name,
                    "type": event.type,
                    "timestamp": event.timestamp,
                    "data": event.data,
                    "person": who,
                }
            )
        rows.sort(key=lambda r: (r["timestamp"], r["event_id"]))
        return rows
