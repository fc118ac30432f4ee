"""Pure-Python reference twin of :mod:`vitalcore._ext.streamtab`.

Slow and plain on purpose: one dict entry and one Python loop step per frame. It is
the executable form of the verdict rules in the extension's module docstring and in
``docs/storage.md``; the tests run random frame sequences through both and require
identical verdicts, indices and state. Runtime code never falls back to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UsageError

__all__ = ["RefStreamTable"]

#: Same values as ``vitalcore._ext.streamtab.Verdict``.
NEW, GAP, DUPLICATE, LATE, RESTART = range(5)
SEEN_WINDOW = 1024
SEEN_WORDS = SEEN_WINDOW // 64
_U64 = (1 << 64) - 1
_WINDOW_MASK = (1 << SEEN_WINDOW) - 1


@dataclass
class _Stream:
    device_id: int
    stream_id: int
    last_seq: int
    seen: int
    max_ts_us: int
    frames: int = 1
    gaps: int = 0
    missing: int = 0
    duplicates: int = 0
    late: int = 0
    restarts: int = 0


def _serial_diff(a: int, b: int) -> int:
    """``a - b`` in u32 serial arithmetic, as a signed int32 (-2**31 counts as behind)."""
    d = (a - b) & 0xFFFFFFFF
    return d - (1 << 32) if d >= 1 << 31 else d


class RefStreamTable:
    """Reference implementation of ``StreamTable`` (same constructor and methods)."""

    def __init__(self, capacity_hint: int = 1024) -> None:
        if capacity_hint < 0:
            raise UsageError(f"capacity_hint must be >= 0, got {capacity_hint}")
        self._index: dict[tuple[int, int], int] = {}
        self._streams: list[_Stream] = []

    def __len__(self) -> int:
        return len(self._streams)

    def lookup(self, device_id: int, stream_id: int) -> int:
        return self._index.get((device_id, stream_id), -1)

    def classify(
        self, device_id: np.ndarray, stream_id: np.ndarray, seq: np.ndarray, ts_us: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(device_id)
        if not len(stream_id) == len(seq) == len(ts_us) == n:
            raise UsageError("device_id, stream_id, seq and ts_us must have the same length")
        index = np.empty(n, np.int32)
        verdict = np.empty(n, np.uint8)
        missing = np.zeros(n, np.uint32)
        for k, (dev, sid, sq, ts) in enumerate(
            zip(device_id.tolist(), stream_id.tolist(), seq.tolist(), ts_us.tolist(), strict=True)
        ):
            i = self._index.get((dev, sid))
            if i is None:
                i = self._index[(dev, sid)] = len(self._streams)
                self._streams.append(_Stream(dev, sid, sq, 1, ts))
                verdict[k] = NEW
            else:
                verdict[k], missing[k] = self._classify(self._streams[i], sq, ts)
            index[k] = i
        return index, verdict, missing

    @staticmethod
    def _classify(s: _Stream, seq: int, ts: int) -> tuple[int, int]:
        d = _serial_diff(seq, s.last_seq)
        if d > 0:
            s.seen = ((s.seen << d) | 1) & _WINDOW_MASK if d < SEEN_WINDOW else 1
            s.last_seq = seq
            s.max_ts_us = max(s.max_ts_us, ts)
            s.frames += 1
            if d == 1:
                return NEW, 0
            s.gaps += 1
            s.missing += d - 1
            return GAP, d - 1
        if ts > s.max_ts_us:
            s.last_seq, s.seen, s.max_ts_us = seq, 1, ts
            s.frames += 1
            s.restarts += 1
            return RESTART, 0
        back = -d
        if back < SEEN_WINDOW:
            if s.seen >> back & 1:
                s.duplicates += 1
                return DUPLICATE, 0
            s.seen |= 1 << back
        s.frames += 1
        s.late += 1
        return LATE, 0

    def state(self) -> dict[str, np.ndarray]:
        from ._ext.streamtab import STATE_COLUMNS, STATE_VERSION

        out = {
            name: np.array([getattr(s, name) for s in self._streams], dt)
            for name, dt in STATE_COLUMNS if name != "seen"
        }
        out["seen"] = np.array(
            [[s.seen >> (64 * w) & _U64 for w in range(SEEN_WORDS)] for s in self._streams],
            np.uint64).reshape(len(self._streams), SEEN_WORDS)
        out["version"] = np.array(STATE_VERSION, np.int64)
        return out

    def load(self, state: dict[str, np.ndarray]) -> None:
        from ._ext.streamtab import STATE_COLUMNS

        cols = [name for name, _ in STATE_COLUMNS]
        seen = np.asarray(state["seen"])
        if seen.ndim == 1:  # version 1: a 64-wide window
            seen = seen.reshape(-1, 1)
        values = {c: np.asarray(state[c]).tolist() for c in cols if c != "seen"}
        values["seen"] = [sum(int(x) << (64 * w) for w, x in enumerate(row)) for row in seen]
        rows = zip(*(values[c] for c in cols), strict=True)
        self._streams = [_Stream(**dict(zip(cols, r, strict=True))) for r in rows]
        self._index = {(s.device_id, s.stream_id): i for i, s in enumerate(self._streams)}
