"""Pack encoded v2 entries into ``{"batch":[...]}`` request bodies within Customer.io's limits. Pure.

A batch request must be under 500 KB and every entry at most 32 KB. The size of a request is
measured *before* an entry is added, framing included (``{"batch":[`` + entries joined by ``,``
+ ``]}``), so no request ever exceeds ``max_batch_bytes``. Entries stay in their input order and
each lands in exactly one batch, except entries that could never fit, which are reported apart
(to be dead-lettered).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

BATCH_PREFIX = b'{"batch":['
BATCH_SUFFIX = b"]}"
FRAMING_BYTES = len(BATCH_PREFIX) + len(BATCH_SUFFIX)


@dataclass(frozen=True, slots=True)
class Packing:
    """Batches as lists of input indices (in order) and the indices that can never be sent."""

    batches: list[list[int]] = field(default_factory=list)
    too_large: list[int] = field(default_factory=list)


def batch_body(entries: Sequence[bytes]) -> bytes:
    """The request body holding ``entries`` (each already JSON), in order."""
    return BATCH_PREFIX + b",".join(entries) + BATCH_SUFFIX


def batch_size(entry_sizes: Sequence[int]) -> int:
    """Serialized size of a batch body whose entries have these sizes."""
    return FRAMING_BYTES + sum(entry_sizes) + max(len(entry_sizes) - 1, 0)


def pack(
    entry_sizes: Sequence[int],
    *,
    max_batch_bytes: int,
    max_entry_bytes: int,
    max_batch_entries: int | None = None,
    alone: Sequence[bool] | None = None,
) -> Packing:
    """Greedily pack consecutive entries (given by serialized size) into batches.

    An entry larger than ``max_entry_bytes``, or too large for a batch even on its own, is put
    in ``too_large``. Entries flagged in ``alone`` get a batch of their own (used for merges,
    whose primary must exist before they run).
    """
    if max_batch_bytes <= FRAMING_BYTES:
        raise ValueError("max_batch_bytes leaves no room for an entry")
    result = Packing()
    current: list[int] = []
    current_size = FRAMING_BYTES

    def close() -> None:
        nonlocal current, current_size
        if current:
            result.batches.append(current)
        current = []
        current_size = FRAMING_BYTES

    for index, size in enumerate(entry_sizes):
        if size > max_entry_bytes or FRAMING_BYTES + size > max_batch_bytes:
            result.too_large.append(index)
            continue
        if alone is not None and alone[index]:
            close()
            result.batches.append([index])
            continue
        added = size + (1 if current else 0)
        full = max_batch_entries is not None and len(current) >= max_batch_entries
        if current and (full or current_size + added > max_batch_bytes):
            close()
            added = size
        current.append(index)
        current_size += added
    close()
    return result
