"""Synthetic data subject requests: a few erasures of generated users (OpenDSR style).

:func:`plan_erasures` picks ``count`` users with an identity (seeded, reproducible) and
returns one ``erasures`` record per user, keyed by the MPID, submitted at ``now_ms`` (after
every generated batch), naming the user's raw e-mail and customer id.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from cioproc.generate.model import Record
from cioproc.generate.plan import CID_AND_EMAIL, CID_ONLY, EMAIL_ONLY, UPGRADE, UserPlan

ERASABLE = (CID_AND_EMAIL, UPGRADE, EMAIL_ONLY, CID_ONLY)


def plan_erasures(plans: list[UserPlan], count: int, seed: int, now_ms: int) -> list[Record]:
    """Erasure requests for ``count`` distinct identified users (fewer if there are fewer)."""
    candidates = [plan for plan in plans if plan.identity in ERASABLE]
    chosen = random.Random(f"{seed}:erasures").sample(candidates, min(count, len(candidates)))
    submitted = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    records = []
    for number, plan in enumerate(sorted(chosen, key=lambda p: p.index), 1):
        identities = []
        if plan.has_email():
            identities.append({"identity_type": "email", "identity_value": plan.email, "identity_format": "raw"})
        if plan.identity in (CID_AND_EMAIL, CID_ONLY, UPGRADE):
            identities.append(
                {
                    "identity_type": "controller_customer_id",
                    "identity_value": plan.customer_id,
                    "identity_format": "raw",
                }
            )
        value = {
            "subject_request_id": f"dsr-{seed}-{number:04d}",
            "subject_request_type": "erasure",
            "submitted_time": submitted,
            "subject_identities": identities,
        }
        records.append(Record("erasures", str(plan.mpid), value))
    return records
