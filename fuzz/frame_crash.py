"""Crash-only target of the Cython frame decoder: the cheapest fuzz mode.

:func:`check` is the fuzz target of ``fuzz_frames.py --crash`` (``VC_FUZZ_CRASH=1``):
the standard libFuzzer harness. It drives ``vitalcore._ext.framecodec`` alone on the
input, with the control prefix of :mod:`fuzzlib` and the flags of :mod:`frame_fast`
(CRC repair, device binding, ``take()`` after every chunk, ``keep_rejects``): ``feed``
over the chunks, ``take()`` and ``stats()``. The decoder documents **no** exception for
peer data (every malformed frame is a counted reject), so whatever ``feed``, ``take``
or ``stats`` raise goes out of :func:`check` as it is, and libFuzzer reports it as a
crash with its traceback. Besides that it checks only two O(1) counters:

1. ``feed``'s return value equals the growth of ``accepted_frames``;
2. every batch ``take()`` returns holds the frames accepted and the rejects counted
   (growth of ``reject_counts``, all reasons together) since the previous batch.

Everything else (byte accounting, reject rules, batch consistency, values) is left to
the fast mode (:mod:`frame_fast`) and the twin mode (:mod:`frame_invariants`); this
mode is for "the C code does not crash, corrupt memory (seen under ASan replay) or leak
an exception" at the highest rate.
"""

from __future__ import annotations

from frame_fast import decode_plan
from fuzzlib import chunks

from vitalcore import codec


def check(data: bytes) -> None:
    payload, seed, device, keep, take_each = decode_plan(data)
    dec = codec.FrameDecoder(keep_rejects=keep)
    frames = 0  # accepted since the last take()
    counted = 0  # rejects counted at the last take()
    for chunk in chunks(payload, seed):
        before = dec.accepted_frames
        n = dec.feed(chunk, device)
        assert n == dec.accepted_frames - before, ("feed's count", n, before,
                                                   dec.accepted_frames)
        frames += n
        if take_each:
            counted = _take(dec, frames, counted)
            frames = 0
    _take(dec, frames, counted)
    dec.stats()


def _take(dec, frames: int, counted: int) -> int:
    """Take a batch and check its totals; the decoder's reject count now."""
    batch = dec.take()
    now = sum(dec.reject_counts.tolist())  # tolist: a numpy reduction costs more here
    got = (batch.n_frames, sum(batch.rejects.tolist()))
    assert got == (frames, now - counted), ("batch totals (frames, rejects)", got,
                                            (frames, now - counted))
    return now
