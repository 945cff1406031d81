"""Consumer lag arithmetic (the gauge itself is checked end to end in test_pipeline_e2e)."""

from collections import namedtuple

from cioproc.app.lag import partition_lags

TP = namedtuple("TP", "topic partition")


def test_lag_is_highwater_minus_next_offset_to_read():
    a, b, c = TP("in", 0), TP("in", 1), TP("in", 2)
    high = {a: 100, b: 50, c: None}
    read = {a: 89, b: None}
    assert partition_lags({a, b, c}, high.get, read.get) == {("in", 0): 10, ("in", 1): 50}
    assert partition_lags({a}, {a: 90}.get, {a: 89}.get) == {("in", 0): 0}
    assert partition_lags({a}, {a: 5}.get, {a: 9}.get) == {("in", 0): 0}  # never negative
