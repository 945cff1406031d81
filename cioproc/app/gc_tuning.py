"""The garbage collector's settings for a running worker (the processor's and the sender's chunks).

A fetch holds thousands of records (and what is made of them) alive until their acks, so the
collector's young generations fill and promote them, and full collections walk every object
Faust, aiokafka and aiohttp made at start-up: measured, 100-190 ms of collections per 20,000
commands in the sender, and in the processor (issue 13's benchmark) 13 % more batches/s
with the settings below. Once the worker runs, the start-up objects are frozen out of
collections, and the youngest generation is collected every ``GC_GEN0_THRESHOLD``
allocations instead of Python's 700.
"""

from __future__ import annotations

import gc

GC_GEN0_THRESHOLD = 10_000
_tuned = False


def tune_gc() -> None:
    """Once the worker runs: freeze what start-up made, collect the young generation less often
    (once per process: role ``all`` calls it from the processor and the sender)."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    gc.freeze()
    gen0, *older = gc.get_threshold()
    gc.set_threshold(max(GC_GEN0_THRESHOLD, gen0), *older)
