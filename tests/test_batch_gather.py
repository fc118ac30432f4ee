"""batch._gather: the run-copy kernel equals the numpy fancy-index reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.batch import _gather
from vitalcore.errors import UsageError


def reference(data, starts, lengths):
    lengths = lengths.astype(np.int64)
    new_starts = np.zeros(len(lengths), np.int64)
    if len(lengths) > 1:
        np.cumsum(lengths[:-1], out=new_starts[1:])
    run = np.repeat(np.arange(len(lengths)), lengths)
    idx = starts.astype(np.int64)[run] + (np.arange(int(lengths.sum())) - new_starts[run])
    return data[idx], new_starts


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_gather_equals_the_fancy_index_reference(data):
    dtype = data.draw(st.sampled_from([np.int16, np.uint8]))
    buf = np.arange(data.draw(st.integers(0, 300))).astype(dtype)
    runs = data.draw(st.lists(st.integers(0, max(len(buf), 1) - 1), max_size=20)) if len(buf) else []
    starts = np.array(runs, np.uint32)
    lengths = np.array([data.draw(st.integers(0, len(buf) - s)) for s in runs], np.uint32)
    got, got_starts = _gather(buf, starts, lengths)
    want, want_starts = reference(buf, starts, lengths)
    assert got.dtype == buf.dtype and np.array_equal(got, want)
    assert np.array_equal(got_starts, want_starts)


@pytest.mark.parametrize("start, length", [(5, 10), (-1, 1), (0, -1)])
def test_gather_refuses_runs_outside_the_buffer(start, length):
    with pytest.raises(UsageError):
        _gather(np.zeros(8, np.int16), np.array([start]), np.array([length]))
