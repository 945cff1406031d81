"""Who a user is in Customer.io, and the identify (and merge) commands that keep that person right.

Identifier: by the "User ID Type" setting, from the identities known for the user (the
latest seen in a batch or audience message; remembered in the state, so a batch that lacks
one still addresses the person).

Identifier changes: the person is never split in two.

- email -> customer id (``prefer_customer_id``, the seed's known weakness): the identify is
  addressed by ``{"id": <customer id>}`` and carries ``"email": <email>``; Customer.io finds
  the existing person by that email and gives it the id. No second profile is created.
- any other change (the email changed too, a new customer id, a settings change): identify
  the new identifier, then merge the person under the old identifier into it. A new
  customer id is identified without the old person's email (that email still belongs to the
  old person until the merge; the next identify sends it).

Dedup: ``state.sent`` keeps a digest of every attribute value last sent; an identify carries
only the attributes whose value differs, and is emitted only when there is one (or when the
person is addressed by this identifier for the first time, so that it exists before events).
"""

from __future__ import annotations

from typing import Any

from cioproc.mapping.attributes import MAX_ATTRIBUTES, chunk_attributes
from cioproc.mapping.results import Drop
from cioproc.mapping.values import digest
from cioproc.models.commands import Command, CommandKind
from cioproc.models.settings import MappingSettings, UserIdType
from cioproc.models.state import UserState

__all__ = ["NONE_DIGEST", "choose_identifier", "person_commands"]

NONE_DIGEST = digest(None)  # "sent as removed"
_IDENTIFY = CommandKind.IDENTIFY
_MERGE = CommandKind.MERGE


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


def person_commands(
    state: UserState,
    identifier: tuple[str, str],
    previous_email: str | None,
    desired: dict[str, Any],
    truncated: set[str] | None,
    mpid: str,
    timestamp: int,
    drops: list[Drop],
) -> list[Command]:
    """Address the person by ``identifier`` and set what changed in ``desired``.

    ``state`` (already holding the identities of this input) is updated in place: the
    identifier used and the digests of what is sent. ``previous_email`` is the email the
    state knew before this input. Returns identify commands, then a merge when one is needed.
    """
    id_type, id_value = identifier
    old_type, old_value = state.id_type, state.id_value
    fresh = old_value is None or old_type != id_type or not _same(id_type, old_value, id_value)
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
        if not attached:
            merge_from = (old_type, old_value)
        state.sent = {}
    state.id_type, state.id_value = id_type, id_value

    sent = state.sent
    changes: dict[str, Any] = {}
    live = -1  # attributes set on the person, counted on first need
    for name, value in desired.items():
        value_digest = digest(value)
        if sent.get(name) == value_digest:
            continue
        if name == "email" and withhold_email:
            continue
        if value is not None and (name not in sent or sent[name] == NONE_DIGEST):
            if live < 0:
                live = sum(1 for d in sent.values() if d != NONE_DIGEST)
            if live >= MAX_ATTRIBUTES:
                drops.append(Drop("too_many_attributes", f"{name[:40]!r}: person has 300"))
                continue
            live += 1
        sent[name] = value_digest
        changes[name] = value
        if truncated and name in truncated:
            drops.append(Drop("attribute_value_truncated", f"{name[:40]!r} cut to 1000 bytes"))

    commands: list[Command] = []
    if changes or fresh:
        for part in chunk_attributes(changes):
            commands.append(Command(_IDENTIFY, mpid, id_type, id_value, timestamp, part))
    if merge_from is not None:
        commands.append(
            Command(_MERGE, mpid, id_type, id_value, timestamp, {}, secondary=merge_from)
        )
    return commands
