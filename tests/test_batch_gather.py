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


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=0, max_size=6), st.booleans())
def test_concat_copies_part_by_part_and_can_leave_the_bytes_out(frames_per_batch, keep_raw):
    """DecodedBatch.concat (copies per batch, GIL free between them) equals the decoder's
    single batch of the same bytes; ``raw=False`` differs only by an empty ``raw``."""
    from vitalcore import codec
    from vitalcore import protocol as P
    from vitalcore.batch import DecodedBatch

    t0 = 1_764_115_200_000_000
    chunks = [[codec.encode_waveform(P.FrameType.ECG, 9, 100 * b + k, t0 + k, P.EcgLead.II,
                                     np.arange(k + 1, dtype=np.int16) * (b + 1), 250, 2.5)
               for k in range(n)] for b, n in enumerate(frames_per_batch)]
    batches = [codec.FrameDecoder().decode(b"".join(c)) for c in chunks]
    whole = codec.FrameDecoder().decode(b"".join(f for c in chunks for f in c))
    got = DecodedBatch.concat(batches, raw=keep_raw)
    for name in whole.tables:
        for col, a in whole.tables[name].items():
            assert got.tables[name][col].dtype == a.dtype
            assert np.array_equal(got.tables[name][col], a), (name, col)
    assert got.samples.dtype == np.int16 and np.array_equal(got.samples, whole.samples)
    if keep_raw:
        assert np.array_equal(got.raw, whole.raw)
        assert all(got.frame_bytes(i) == whole.frame_bytes(i) for i in range(got.n_frames))
    elif len(batches) > 1:  # one batch is returned as it is
        assert got.raw.dtype == np.uint8 and got.raw.size == 0
