"""Small, fast, reproducible draws from a ``random.Random``: ids, UUIDs, weighted choices."""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Sequence
from itertools import accumulate
from typing import Generic, TypeVar

T = TypeVar("T")
_UUID_CLEAR = ~((0xF << 76) | (0x3 << 62))  # version nibble and variant bits
_UUID_SET = (0x4 << 76) | (0x2 << 62)  # version 4, RFC 4122 variant


def int64(rng: random.Random) -> int:
    """A signed 64-bit integer (event ids, batch ids, session ids, MPIDs)."""
    return rng.getrandbits(64) - (1 << 63)


def uuid(rng: random.Random) -> str:
    """A version-4-shaped UUID string drawn from ``rng`` (reproducible, unlike uuid.uuid4)."""
    h = "%032x" % (rng.getrandbits(128) & _UUID_CLEAR | _UUID_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Weighted(Generic[T]):
    """A fixed population with weights; :meth:`pick` is one ``random()`` and a bisect."""

    __slots__ = ("items", "_cumulative", "_total")

    def __init__(self, pairs: Sequence[tuple[T, float]]):
        if not pairs or any(w < 0 for _, w in pairs):
            raise ValueError("Weighted needs at least one item and no negative weight")
        self.items = tuple(item for item, _ in pairs)
        self._cumulative = list(accumulate(w for _, w in pairs))
        self._total = self._cumulative[-1]
        if self._total <= 0:
            raise ValueError("Weighted needs a positive total weight")

    def pick(self, rng: random.Random) -> T:
        return self.items[bisect(self._cumulative, rng.random() * self._total)]
