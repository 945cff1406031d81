"""Pass 2 of the generator: audience membership changes in mParticle's audience firehose shape.

About a third of the users join or leave audiences one to three times, each time shortly
after one of their batches. A user's changes are consistent (only audiences they are in
are deleted) and in time order. Consecutive changes of different users are sometimes
bundled into one message with several ``user_profiles``, as mParticle does; a message is
keyed by its first profile's MPID. Profiles carry the identities the user has at that
time: raw e-mail and customer id, sometimes an extra md5 hash, and sometimes only a
sha256 hash of the e-mail (such a profile cannot address a Customer.io person).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from cioproc.generate import catalog as C
from cioproc.generate.draw import uuid
from cioproc.generate.model import Record, Summary
from cioproc.generate.plan import UserPlan

AUDIENCE_SHARE = 0.35  # users with membership changes
MULTI_PROFILE_SHARE = 0.15  # messages that bundle several profiles
_AUDIENCE_IDS = sorted(C.AUDIENCES)
_DEVICE_ID_TYPES = {"iOS": "ios_vendor_id", "tvOS": "ios_vendor_id", "Android": "android_uuid"}


def plan_audiences(plans: list[UserPlan], seed: int, now_ms: int) -> list[tuple[int, Record]]:
    """Audience messages as ``(timestamp_ms, record)``, in time order."""
    rng = random.Random(f"{seed}:audiences")
    changes: list[tuple[int, int, dict[str, Any]]] = []  # (time, user index, profile)
    for plan in plans:
        if rng.random() >= AUDIENCE_SHARE:
            continue
        member: set[int] = set()
        last_ms = 0
        for b in sorted(rng.choices(range(len(plan.sizes)), k=rng.randint(1, 3))):
            when = min(now_ms, max(last_ms + 1, plan.batch_end(b) + rng.randint(1_000, 600_000)))
            last_ms = when
            actions = _actions(rng, member)
            if actions:
                changes.append((when, plan.index, _profile(rng, plan, when, actions)))
    changes.sort(key=lambda c: (c[0], c[1]))

    records: list[tuple[int, Record]] = []
    i = 0
    while i < len(changes):
        group = [changes[i]]
        i += 1
        if rng.random() < MULTI_PROFILE_SHARE:
            want = rng.randint(2, 4)
            while i < len(changes) and len(group) < want and changes[i][1] not in {g[1] for g in group}:
                group.append(changes[i])
                i += 1
        when = group[-1][0]
        message = {
            "type": "audience_membership_change_request",
            "id": uuid(rng),
            "timestamp_ms": when,
            "firehose_version": "2.8.1",
            "account": {"account_id": C.ACCOUNT_ID, "account_settings": {}},
            "user_profiles": [g[2] for g in group],
        }
        records.append((when, Record("audiences", group[0][2]["mpid"], message)))
    return records


def count_audience(record: Record, summary: Summary) -> None:
    """Add one audience message to ``summary``."""
    profiles = record.value["user_profiles"]
    summary.audience_messages += 1
    summary.audience_profiles += len(profiles)
    summary.multi_profile_audience_messages += len(profiles) > 1
    for profile in profiles:
        if not any(i["encoding"] == "raw" for i in profile["user_identities"]):
            summary.audience_profiles_without_raw_identity += 1
        summary.audience_actions.update(a["action"] for a in profile["audiences"])


def _actions(rng: random.Random, member: set[int]) -> list[dict[str, Any]]:
    """One or two add/delete actions, updating ``member`` (delete only what the user is in)."""
    actions: list[dict[str, Any]] = []
    for _ in range(1 if rng.random() < 0.7 else 2):
        touched = {a["audience_id"] for a in actions}
        leavable = sorted(member - touched)
        if leavable and rng.random() < 0.35:
            audience = rng.choice(leavable)
            member.discard(audience)
            action = "delete"
        else:
            joinable = [a for a in _AUDIENCE_IDS if a not in member and a not in touched]
            if not joinable:
                continue
            audience = rng.choice(joinable)
            member.add(audience)
            action = "add"
        actions.append({"audience_id": audience, "audience_name": C.AUDIENCES[audience], "action": action})
    return actions


def _profile(rng: random.Random, plan: UserPlan, when: int, actions: list[dict[str, Any]]) -> dict[str, Any]:
    identities = []
    if plan.has_email():
        if rng.random() < 0.1:
            identities.append({"type": "email", "encoding": "sha256", "value": _hex(hashlib.sha256, plan.email)})
        else:
            identities.append({"type": "email", "encoding": "raw", "value": plan.email})
            if rng.random() < 0.15:
                identities.append({"type": "email", "encoding": "md5", "value": _hex(hashlib.md5, plan.email)})
    if plan.customer_id_at(when):
        identities.append({"type": "customer", "encoding": "raw", "value": plan.customer_id})
    kind = plan.devices[0]
    device = {"type": _DEVICE_ID_TYPES.get(kind, "other"), "encoding": "raw", "value": plan.device_ids[kind]}
    return {"user_identities": identities, "device_identities": [device], "audiences": actions, "mpid": str(plan.mpid)}


def _hex(algorithm: Any, text: str) -> str:
    digest: str = algorithm(text.encode()).hexdigest()
    return digest
