"""Packing encoded entries into batch bodies under the request and entry limits."""

from __future__ import annotations

from itertools import pairwise

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cioproc.sender.packing import FRAMING_BYTES, batch_body, batch_size, pack


def entry(size: int) -> bytes:
    """A JSON entry of exactly ``size`` bytes (size >= 8)."""
    return b'{"x":"' + b"a" * (size - 8) + b'"}'


def test_entry_helper_and_framing_sizes_are_exact():
    entries = [entry(10), entry(20), entry(8)]
    body = batch_body(entries)
    assert len(body) == batch_size([10, 20, 8]) == FRAMING_BYTES + 38 + 2
    assert orjson.loads(body) == {"batch": [orjson.loads(e) for e in entries]}
    assert batch_body([]) == b'{"batch":[]}' and batch_size([]) == FRAMING_BYTES


CASES = [
    # (sizes, max_batch, max_entry, max_entries, alone, batches, too_large)
    ([], 100, 50, None, None, [], []),
    ([10, 10, 10], 100, 50, None, None, [[0, 1, 2]], []),
    # framing 12 + 40 + 1 + 40 = 93 fits in 100; the third would make 134
    ([40, 40, 40], 100, 50, None, None, [[0, 1], [2]], []),
    # exactly at the limit is allowed: 12 + 43 + 1 + 44 = 100
    ([43, 44, 1], 100, 50, None, None, [[0, 1], [2]], []),
    # one byte over the limit starts a new batch: 12 + 44 + 1 + 44 = 101
    ([44, 44], 100, 50, None, None, [[0], [1]], []),
    ([10, 51, 10], 100, 50, None, None, [[0, 2]], [1]),
    ([50], 60, 50, None, None, [], [0]),  # alone it would need 62 bytes
    ([10] * 5, 1000, 50, 2, None, [[0, 1], [2, 3], [4]], []),
    ([10, 10, 10, 10], 1000, 50, None, [False, True, False, False], [[0], [1], [2, 3]], []),
    ([10, 10], 1000, 50, None, [True, True], [[0], [1]], []),
]


@pytest.mark.parametrize(("sizes", "max_batch", "max_entry", "max_entries", "alone", "batches", "too_large"), CASES)
def test_pack_table(sizes, max_batch, max_entry, max_entries, alone, batches, too_large):
    result = pack(
        sizes, max_batch_bytes=max_batch, max_entry_bytes=max_entry, max_batch_entries=max_entries, alone=alone
    )
    assert result.batches == batches
    assert result.too_large == too_large


def test_pack_rejects_a_limit_without_room():
    with pytest.raises(ValueError):
        pack([1], max_batch_bytes=FRAMING_BYTES, max_entry_bytes=10)


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(8, 400), max_size=80),
    max_batch=st.integers(FRAMING_BYTES + 8, 1500),
    max_entry=st.integers(8, 400),
    max_entries=st.one_of(st.none(), st.integers(1, 10)),
    alone_seed=st.lists(st.booleans(), max_size=80),
)
def test_pack_never_exceeds_limits_loses_or_reorders(sizes, max_batch, max_entry, max_entries, alone_seed):
    alone = [alone_seed[i] if i < len(alone_seed) else False for i in range(len(sizes))]
    result = pack(
        sizes, max_batch_bytes=max_batch, max_entry_bytes=max_entry, max_batch_entries=max_entries, alone=alone
    )
    placed = [i for batch in result.batches for i in batch]
    # nothing lost, nothing duplicated, order kept
    assert sorted(placed + result.too_large) == list(range(len(sizes)))
    assert placed == sorted(placed)
    for batch in result.batches:
        assert batch, "no empty batch"
        body = batch_body([entry(sizes[i]) for i in batch])
        assert len(body) == batch_size([sizes[i] for i in batch]) <= max_batch
        assert all(sizes[i] <= max_entry for i in batch)
        assert max_entries is None or len(batch) <= max_entries
        assert len(batch) == 1 or not any(alone[i] for i in batch)
    for i in result.too_large:
        assert sizes[i] > max_entry or FRAMING_BYTES + sizes[i] > max_batch
    # greedy: a batch is only closed when the next entry would not fit (or a limit forces it)
    for first, second in pairwise(result.batches):
        nxt = second[0]
        forced = (
            alone[nxt]
            or alone[first[-1]]
            or (max_entries is not None and len(first) >= max_entries)
            or batch_size([sizes[i] for i in first] + [sizes[nxt]]) > max_batch
        )
        assert forced
