"""Wire-format v1 codec: the public face of the Cython extension.

Binary frames (``docs/protocol.md``) are decoded by :class:`FrameDecoder` into a
columnar :class:`~vitalcore.batch.DecodedBatch`; the ``encode_*`` functions build
frames for simulators, tests and device makers. :mod:`vitalcore.jsonframes` accepts
the JSON form of the same frames.

There is no slow fallback: if the extension was not built, importing this module
fails with an ImportError that says how to build it.
"""

from __future__ import annotations

try:
    from ._ext.framecodec import (
        FrameDecoder,
        crc32c,
        crc32c_hardware,
        encode_ack,
        encode_command,
        encode_numerics,
        encode_status,
        encode_waveform,
    )
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    raise ImportError(
        "vitalcore's compiled frame codec (vitalcore._ext.framecodec) is missing or broken: "
        "install vitalcore with `pip install .` on a machine with a C compiler and Python "
        f"headers. Cause: {exc}"
    ) from exc

from .batch import DecodedBatch
from .protocol import REJECT_REASONS, RejectReason

__all__ = [
    "FrameDecoder",
    "DecodedBatch",
    "REJECT_REASONS",
    "RejectReason",
    "crc32c",
    "crc32c_hardware",
    "encode_waveform",
    "encode_numerics",
    "encode_status",
    "encode_ack",
    "encode_command",
]
