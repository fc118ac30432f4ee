"""Invariants of the JSON frame decoder (``vitalcore.jsonframes``) on arbitrary bytes.

:func:`check` is the fuzz target of ``fuzz_json.py``. It feeds the input as one JSON
document (or several, cut by the control prefix) to a
:class:`~vitalcore.jsonframes.JsonFrameDecoder` and raises ``AssertionError`` if:

1. ``feed`` raises anything (bad documents and bad values are counted, never raised);
2. a document's verdict is not one of: rejected whole as ``bad_json`` (and nothing
   accepted), or each frame object accepted or rejected alone;
3. the frames the document stands for, built by the Cython encoders and by the
   reference encoders, differ (or one of them raises where the other does not, or
   either raises anything but UsageError);
4. an accepted frame does not survive binary -> JSON -> binary with the same columns;
5. the frames the decoder accepted are not exactly the binary frames of the objects
   that were encodable (same bytes, same order).

Flags (control byte 0): bit 0 binds the decoder to device 4660 (0x1234, the device of
the corpus seeds), bit 1 decodes the bytes as ``str`` (UTF-8 with replacement) instead
of ``bytes``.
"""

from __future__ import annotations

import types

import msgspec
import numpy as np
from fuzzlib import chunks, control

from vitalcore import _refcodec as ref
from vitalcore import codec, jsonframes
from vitalcore.errors import UsageError

#: jsonframes.to_binary, but building frames with the reference encoders
_to_binary_ref = types.FunctionType(
    jsonframes.to_binary.__code__, {**jsonframes.__dict__, "codec": ref}, "to_binary_ref"
)


def check(data: bytes) -> None:
    flags, seed, payload = control(data)
    device = 0x1234 if flags & 1 else 0
    for doc in chunks(payload, seed):
        _check_document(doc.decode("utf-8", "replace") if flags & 2 else doc, device)


def _check_document(doc: bytes | str, device: int) -> None:
    dec = jsonframes.JsonFrameDecoder(codec.FrameDecoder(keep_rejects=100))
    accepted = dec.feed(doc, device)
    batch = dec.take()
    rejected = batch.rejected()
    try:
        parsed = jsonframes.parse(doc)
    except (msgspec.DecodeError, msgspec.ValidationError):
        assert accepted == 0 and rejected == {"bad_json": 1}, (accepted, rejected)
        return
    objs = parsed if isinstance(parsed, list) else [parsed]
    assert "bad_json" not in rejected, rejected
    expected = []
    for obj in objs:
        ours = _build(jsonframes.to_binary, obj)
        theirs = _build(_to_binary_ref, obj)
        assert ours == theirs, ("encoders differ on a JSON frame", obj, ours, theirs)
        if ours is not None and (device == 0 or obj.device == device):
            expected.append(ours)
    got = [batch.frame_bytes(i) for i in range(batch.n_frames)]
    assert accepted == len(got) == len(expected) and got == expected, (got, expected)
    assert sum(rejected.values()) == len(objs) - len(expected), (rejected, len(objs))
    assert set(rejected) <= {"value_range", "device_mismatch"}, rejected
    for frame in got:
        again = jsonframes.to_binary(jsonframes.parse(jsonframes.from_binary(frame)))
        a, b = codec.FrameDecoder().decode(frame), codec.FrameDecoder().decode(again)
        assert b.n_frames == 1 and np.array_equal(a.samples, b.samples)
        for name, cols in a.tables.items():
            for col, x in cols.items():
                if col not in ("raw_length", "raw_offset"):
                    assert np.array_equal(x, b.tables[name][col], equal_nan=x.dtype.kind == "f"), col


def _build(to_binary, obj) -> bytes | None:
    """The binary frame of ``obj``, or None if the encoders refuse it (UsageError)."""
    try:
        return to_binary(obj)
    except UsageError:
        return None

