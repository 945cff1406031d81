"""Who a user is in Customer.io, and the identify (and merge) commands that keep that person right.

Identifier: by the "User ID Type" setting, from the identities known for the user
(remembered in the state, so a batch that lacks one still addresses the person).

Identities never go backwards. Each one in the state carries the time it was set or last
seen (the batch's latest event time, else the batch time). A batch older than the state's
identities (a replay, a lagging batch, work redone after a crash) changes none of them; one
at the same time only fills an identity the state lacks; a newer one replaces them. An
audience message never changes who a person is: its identities only fill a user not
addressed yet (with an unknown time), and it is sent to the person the state addresses
(:func:`fill_identities`).

Identifier changes:

- email -> customer id (``prefer_customer_id``, the seed's known weakness): the identify is
  addressed by ``{"id": <customer id>}`` and carries ``"email": <email>``; Customer.io finds
  the existing person by that email and gives it the id. No second profile, no merge.
- any other change (the email changed too, a new customer id, a settings change): identify
  the new identifier. A new customer id is identified without the old person's email (that
  email belongs to the old person in Customer.io). With ``merge_people`` the person under
  the old identifier is then merged into the new one (deleting it), at most once per pair
  of identifiers, and the email follows in the next identify; without, the email stays
  with the old person.

Dedup: ``state.sent`` keeps a checksum of every attribute value last sent (a removal is
forgotten once sent: a later removal of the same name is sent again, only together with
another change, since an unchanged input is skipped whole); an identify carries only the
attributes whose value differs, and is emitted only when there is one (or when the
person is addressed by this identifier for the first time, so that it exists before events).
``state.desired`` (a digest of the inputs the attribute set was computed from, kept only when
all of it was sent) skips building and comparing the attributes when nothing changed, the
common case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cioproc.mapping.attributes import MAX_ATTRIBUTES, chunk_attributes
from cioproc.mapping.results import Drop
from cioproc.mapping.values import value_digest
from cioproc.models.commands import Command, CommandKind
from cioproc.models.settings import MappingSettings, UserIdType
from cioproc.models.state import UserState

__all__ = [
    "NONE_DIGEST",
    "Addressing",
    "address",
    "choose_identifier",
    "fill_identities",
    "identify",
    "owed_unsubscribe",
    "unchanged",
    "update_identities",
]

NONE_DIGEST = value_digest(None)  # "sent as removed"
_IDENTIFY = CommandKind.IDENTIFY
_MERGE = CommandKind.MERGE
_UNSUBSCRIBE = CommandKind.UNSUBSCRIBE
_MAX_MERGED = 16  # merged pairs remembered per user (a user changes identifier rarely)


def choose_identifier(
    settings: MappingSettings, customer_id: str | None, email: str | None
) -> tuple[str, str] | None:
    """``("id", customer_id)`` or ``("email", email)`` per the User ID Type, else None."""
    mode = settings.user_id_type
    if mode is UserIdType.EMAIL:
        return ("email", email) if email else None
    if customer_id:
        return ("id", customer_id)
    if mode is UserIdType.PREFER_CUSTOMER_ID and email:
        return ("email", email)
    return None


def _same(id_type: str, a: str, b: str) -> bool:
    return a == b or (id_type == "email" and a.lower() == b.lower())


def update_identities(
    state: UserState, customer_id: str | None, email: str | None, when: int, drops: list[Drop]
) -> None:
    """Take a batch's identities seen at ``when`` (ms) unless the state's are newer.

    Newer than every identity of the state: they replace them. At the same time (or at an
    unknown time, 0): they only fill an identity the state lacks, so replays of same-time
    inputs cannot flip-flop. Older: nothing changes (a ``stale_identity`` drop).
    """
    latest = max(state.customer_id_ms, state.email_ms)
    fills = when >= latest or when == 0
    stale = []
    if customer_id is not None:
        if customer_id == state.customer_id:
            state.customer_id_ms = max(state.customer_id_ms, when)
        elif when > latest or (fills and state.customer_id is None):
            state.customer_id, state.customer_id_ms = customer_id, when
        else:
            stale.append("customer id")
    if email is not None:
        if email == state.email:
            state.email_ms = max(state.email_ms, when)
        elif when > latest or (fills and state.email is None):
            state.email, state.email_ms = email, when
        else:
            stale.append("email")
    if stale:
        drops.append(
            Drop("stale_identity", f"{' and '.join(stale)} older than the user's ({when} ms)")
        )


def fill_identities(state: UserState, customer_id: str | None, email: str | None) -> None:
    """An audience message's identities: only for a user not addressed yet, only where the
    state has none. Their time stays unknown (0): an audience snapshot may lag behind the
    batches, which are the source of identities, so any batch with a time may replace them."""
    if state.id_type is not None:
        return
    if customer_id is not None and state.customer_id is None:
        state.customer_id = customer_id
    if email is not None and state.email is None:
        state.email = email


def owed_unsubscribe(
    state: UserState, id_type: str, id_value: str, mpid: str
) -> Command | None:
    """``unsubscribed: true`` owed to the person addressed by ``(id_type, id_value)``: an
    opt-out kept while the user could not be addressed, or one sent to the person of a
    previous identifier (this may be another person). Call before :func:`address`."""
    if not state.unsubscribe_pending:
        if not state.unsubscribed or state.id_value is None or (
            state.id_type == id_type and _same(id_type, state.id_value, id_value)
        ):
            return None
    state.unsubscribed, state.unsubscribe_pending = True, False
    return Command(
        _UNSUBSCRIBE, mpid, id_type, id_value, state.opt_out_ms // 1000, {"unsubscribed": True}
    )


def _pair(a: tuple[str, str], b: tuple[str, str]) -> int:
    """A checksum of an unordered pair of identifiers (emails in lower case)."""
    one, two = (
        [kind, value.lower() if kind == "email" else value] for kind, value in (a, b)
    )
    return value_digest(sorted([one, two]))


@dataclass(slots=True)
class Addressing:
    """How this input addresses the person, decided by :func:`address`."""

    id_type: str
    id_value: str
    fresh: bool  # first time by this identifier: identify even with nothing to set
    merge_from: tuple[str, str] | None  # old identifier to merge into this one
    withhold_email: bool  # the email belongs to the old person (until the merge, if any)


def address(
    state: UserState,
    identifier: tuple[str, str],
    previous_email: str | None,
    merge_people: bool = False,
) -> Addressing:
    """Switch ``state`` to ``identifier``; on a change, forget what was sent and, with
    ``merge_people``, plan a merge (once per pair of identifiers).

    ``state`` already holds the identities of this input; ``previous_email`` is the email it
    knew before.
    """
    id_type, id_value = identifier
    old_type, old_value = state.id_type, state.id_value
    fresh = old_type != id_type or (
        old_value != id_value and (old_value is None or not _same(id_type, old_value, id_value))
    )
    merge_from: tuple[str, str] | None = None
    withhold_email = False
    if fresh and old_value is not None and old_type is not None:
        email = state.email
        if old_type == "email":
            attached = email is not None and email.lower() == old_value.lower()
        else:  # the old person (by id) was given previous_email
            attached = (
                id_type == "email"
                and previous_email is not None
                and previous_email.lower() == id_value.lower()
            )
            withhold_email = id_type == "id" and email is not None and email == previous_email
        if not attached and merge_people:
            pair = _pair((old_type, old_value), identifier)
            if pair not in state.merged:
                merge_from = (old_type, old_value)
                state.merged = [*state.merged[1 - _MAX_MERGED:], pair]
        state.sent = {}
        state.desired = b""
    state.id_type, state.id_value = id_type, id_value
    return Addressing(id_type, id_value, fresh, merge_from, withhold_email)


def unchanged(state: UserState, addressing: Addressing, inputs: bytes) -> bool:
    """True when the inputs of the attributes are those of the last (fully sent) identify."""
    return not addressing.fresh and inputs == state.desired


def identify(
    state: UserState,
    addressing: Addressing,
    desired: dict[str, Any],
    inputs: bytes,
    truncated: set[str] | None,
    mpid: str,
    timestamp: int,
    drops: list[Drop],
) -> list[Command]:
    """Identify commands setting what changed in ``desired``, then the merge when planned.

    ``inputs`` is a digest of everything ``desired`` was computed from; it is remembered
    when all of ``desired`` was sent, so that the same inputs next time cost nothing.
    """
    complete = True
    sent = state.sent = state.sent.copy()  # a new map: the given state may share this one
    withhold_email = addressing.withhold_email
    # Nothing sent to this person yet (new, or newly addressed): all of it goes, with nothing
    # to compare or count.
    everything = not sent and not withhold_email and len(desired) <= MAX_ATTRIBUTES
    changes: dict[str, Any] = desired if everything else {}
    live = -1  # attributes set on the person, counted on first need
    sent_before = sent.get
    for name, value in desired.items():
        checksum = value_digest(value)
        if not everything:
            before = sent_before(name)
            if before == checksum:
                if value is None:
                    del sent[name]  # a removal kept by an older version: forget it now
                continue
            if withhold_email and name == "email":
                if addressing.merge_from is None:
                    sent[name] = checksum  # it stays with the old person: never sent here
                else:
                    complete = False  # sent once the merge gave this person the email
                continue
            if value is not None and (before is None or before == NONE_DIGEST):
                if live < 0:
                    live = sum(1 for d in sent.values() if d != NONE_DIGEST)
                if live >= MAX_ATTRIBUTES:
                    drops.append(Drop("too_many_attributes", f"{name[:40]!r}: person has 300"))
                    complete = False
                    continue
                live += 1
            changes[name] = value
        if value is None:
            sent.pop(name, None)  # removed: forgotten, so deleted names do not pile up in the state
        else:
            sent[name] = checksum
        if truncated and name in truncated:
            drops.append(Drop("attribute_value_truncated", f"{name[:40]!r} cut to 1000 bytes"))

    state.desired = inputs if complete else b""
    id_type, id_value = addressing.id_type, addressing.id_value
    commands: list[Command] = []
    if changes or addressing.fresh:
        for part in chunk_attributes(changes):
            commands.append(Command(_IDENTIFY, mpid, id_type, id_value, timestamp, part))
    if addressing.merge_from is not None:
        commands.append(
            Command(
                _MERGE, mpid, id_type, id_value, timestamp, {}, None, None, addressing.merge_from
            )
        )
    return commands
