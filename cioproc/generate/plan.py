"""Pass 1 of the generator: decide everything about each user before building any batch.

A :class:`UserPlan` holds a user's MPID, identity category, e-mail and customer id, the
sizes and start times of their batches, the device type of each batch, and where the
identity upgrade, opt-out and opt-in fall. Plans cost O(batches), so planning 10 million
events takes little memory; the batches themselves are built later, one at a time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cioproc.generate import catalog as C
from cioproc.generate.draw import Weighted, int64, uuid

HOUR_MS = 3_600_000
WINDOW_MS = 48 * HOUR_MS  # all activity falls in the 48 hours before now_ms
MAX_BATCH_EVENTS = 15
MAX_EVENT_GAP_MS = 20_000

# Identity categories.
CID_AND_EMAIL = "customer_id_and_email"
UPGRADE = "email_then_customer_id"  # e-mail first, a customer id from a later batch on
EMAIL_ONLY = "email_only"
CID_ONLY = "customer_id_only"
NO_IDENTITY = "no_identity"  # neither: the processor must drop them
IDENTITIES = Weighted(
    [(CID_AND_EMAIL, 0.66), (UPGRADE, 0.12), (EMAIL_ONLY, 0.06), (CID_ONLY, 0.06), (NO_IDENTITY, 0.10)]
)

OPT_OUT_SHARE = 0.05  # users who opt out at some point
OPT_BACK_IN_SHARE = 0.35  # of those with two batches or more, users who opt back in later
PLATFORMS = Weighted([(name, share) for name, (_os, share, _channel) in C.PLATFORMS.items()])


@dataclass(slots=True)
class UserPlan:
    """Everything about a user decided before any of their batches is built."""

    index: int
    mpid: int
    identity: str
    email: str
    customer_id: str
    first_name: str
    last_name: str
    sizes: list[int]  # events per batch
    starts: list[int]  # time of each batch's first event (ms)
    gap_ms: int  # consecutive events of a batch are 1..gap_ms apart
    devices: list[str]  # device platform of each batch
    device_ids: dict[str, str]  # platform -> a stable device UUID
    upgrade_at: int = -1  # batch where the customer id first appears
    opt_out_at: int = -1  # batch with the opt_out event (is_opted_out true)
    opt_in_at: int = -1  # later batch with is_opted_out false

    def has_customer_id(self, batch: int) -> bool:
        return self.identity in (CID_AND_EMAIL, CID_ONLY) or (self.identity == UPGRADE and batch >= self.upgrade_at)

    def has_email(self) -> bool:
        return self.identity in (CID_AND_EMAIL, UPGRADE, EMAIL_ONLY)

    def customer_id_at(self, time_ms: int) -> bool:
        """Whether the user has a customer id at a given time."""
        if self.identity == UPGRADE:
            return time_ms >= self.starts[self.upgrade_at]
        return self.identity in (CID_AND_EMAIL, CID_ONLY)

    def batch_end(self, batch: int) -> int:
        """The latest time an event of ``batch`` can have."""
        return self.starts[batch] + (self.sizes[batch] - 1) * self.gap_ms


def plan_users(users: int, events: int, seed: int, now_ms: int) -> list[UserPlan]:
    """Plans of the users that get at least one event, in user index order."""
    master = random.Random(f"{seed}:users")
    counts = split_events(master, users, events)
    mpids: set[int] = set()
    plans = []
    for index, count in enumerate(counts):
        mpid = int64(master)
        while mpid in mpids or mpid == 0:
            mpid = int64(master)
        mpids.add(mpid)
        if count:
            plans.append(plan_user(random.Random(f"{seed}:{index}:plan"), index, mpid, count, now_ms))
    return plans


def split_events(rng: random.Random, users: int, events: int) -> list[int]:
    """Per-user event counts summing to exactly ``events``: one each, the rest heavy-tailed."""
    if events < users:
        counts = [0] * users
        for index in rng.sample(range(users), events):
            counts[index] = 1
        return counts
    weights = [min(rng.paretovariate(1.4), 60.0) for _ in range(users)]
    total = sum(weights)
    extra = events - users
    counts = [1 + int(extra * w / total) for w in weights]
    remainder = events - sum(counts)  # 0 <= remainder < users
    for index in rng.choices(range(users), weights=weights, k=remainder):
        counts[index] += 1
    return counts


def split_batches(rng: random.Random, count: int, at_least: int = 1) -> list[int]:
    """Batch sizes of 1-15 events summing to ``count``: about 9 for busy users, one batch for few events."""
    batches = max(-(-count // MAX_BATCH_EVENTS), round(count / rng.uniform(6.5, 11.5)), min(at_least, count))
    sizes = [count // batches + (1 if i < count % batches else 0) for i in range(batches)]
    for _ in range(batches):  # jitter: move events between two batches, staying within 1..15
        i, j = rng.randrange(batches), rng.randrange(batches)
        if i != j:
            moved = rng.randint(0, min(sizes[i] - 1, MAX_BATCH_EVENTS - sizes[j]))
            sizes[i] -= moved
            sizes[j] += moved
    return sizes


def plan_user(rng: random.Random, index: int, mpid: int, count: int, now_ms: int) -> UserPlan:
    """One user's plan: ``count`` events in chronological batches before ``now_ms``."""
    identity = IDENTITIES.pick(rng)
    sizes = split_batches(rng, count, at_least=2 if identity == UPGRADE else 1)
    starts, gap_ms = _schedule(rng, sizes, now_ms)
    devices, introduced_at = _devices(rng, len(sizes))

    # Events that must fit in their batch: first_run (a device type's first batch), the
    # identity change of an upgrade, an opt-out or opt-in.
    needed = [1 if b == 0 or b in introduced_at else 0 for b in range(len(sizes))]

    def place(candidates: range) -> int:
        fitting = [b for b in candidates if sizes[b] > needed[b]]
        if not fitting:
            return -1
        b = rng.choice(fitting)
        needed[b] += 1
        return b

    upgrade_at = place(range(1, len(sizes))) if identity == UPGRADE else -1
    if identity == UPGRADE and upgrade_at < 0:
        identity = EMAIL_ONLY  # a single event: no later batch to upgrade in
    opt_out_at = opt_in_at = -1
    if rng.random() < OPT_OUT_SHARE:
        back_in = len(sizes) > 1 and rng.random() < OPT_BACK_IN_SHARE
        opt_out_at = place(range(len(sizes) - 1 if back_in else len(sizes)))
        if back_in and opt_out_at >= 0:
            opt_in_at = place(range(opt_out_at + 1, len(sizes)))

    first = rng.choice(C.FIRST_NAMES)
    last = rng.choice(C.LAST_NAMES)
    email = f"{_ascii(first)}.{_ascii(last)}{index}@{rng.choice(C.EMAIL_DOMAINS)}"
    customer_id = f"{10_000_000 + index}" if rng.random() < 0.6 else f"cust-{index:06d}"
    device_ids = {kind: uuid(rng) for kind in dict.fromkeys(devices)}
    return UserPlan(
        index, mpid, identity, email, customer_id, first, last, sizes, starts, gap_ms, devices, device_ids,
        upgrade_at, opt_out_at, opt_in_at,
    )  # fmt: skip


def _schedule(rng: random.Random, sizes: list[int], now_ms: int) -> tuple[list[int], int]:
    """Batch start times, strictly in order and with every event at or before ``now_ms``.

    The first batch falls in the first 36 of the 48 hours; each batch takes at most
    ``(size - 1) * gap_ms`` (half the span at most, all batches together), and the idle
    time left is cut into random pauses after each batch.
    """
    count = sum(sizes)
    first_ms = now_ms - WINDOW_MS + int(rng.random() * WINDOW_MS * 0.75)
    span = now_ms - first_ms
    gap_ms = max(1, min(MAX_EVENT_GAP_MS, span // (2 * count)))
    busy = sum((size - 1) * gap_ms + 1 for size in sizes)
    pauses = [rng.expovariate(1.0) for _ in sizes]  # the last one is the idle time until now
    scale = (span - busy) / sum(pauses)
    starts = [first_ms]
    for b in range(1, len(sizes)):
        starts.append(starts[-1] + (sizes[b - 1] - 1) * gap_ms + 1 + int(pauses[b - 1] * scale))
    return starts, gap_ms


def _devices(rng: random.Random, batches: int) -> tuple[list[str], list[int]]:
    """The device type of each batch: a primary one, sometimes a second and third from a later batch."""
    kinds = [PLATFORMS.pick(rng)]
    for share in (0.22, 0.06):
        if rng.random() < share:
            other = PLATFORMS.pick(rng)
            if other not in kinds:
                kinds.append(other)
    introduced_at = sorted(rng.sample(range(1, batches), min(len(kinds) - 1, batches - 1))) if batches > 1 else []
    devices = []
    active = [kinds[0]]
    current = kinds[0]
    for b in range(batches):
        if b in introduced_at:
            current = kinds[len(active)]
            active.append(current)
        elif len(active) > 1 and rng.random() < 0.3:
            current = rng.choice(active)
        devices.append(current)
    return devices, introduced_at


def _ascii(name: str) -> str:
    return name.lower().replace("ü", "ue").replace("'", "")
