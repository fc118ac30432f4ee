"""Typed stubs of the per-stream sequence tracker (see streamtab.pyx)."""

from enum import IntEnum

import numpy as np
import numpy.typing as npt

from vitalcore.batch import DecodedBatch

class Verdict(IntEnum):
    NEW = 0
    GAP = 1
    DUPLICATE = 2
    LATE = 3
    RESTART = 4

STATE_COLUMNS: tuple[tuple[str, np.dtype], ...]
COUNTERS: tuple[str, ...]
STATE_VERSION: int

def stream_ids(
    frame_type: npt.NDArray[np.uint8], channel: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint16]: ...

class StreamTable:
    def __init__(self, capacity_hint: int = 1024) -> None: ...
    def __len__(self) -> int: ...
    def classify(
        self,
        device_id: npt.NDArray[np.uint64],
        stream_id: npt.NDArray[np.uint16],
        seq: npt.NDArray[np.uint32],
        ts_us: npt.NDArray[np.int64],
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.uint8], npt.NDArray[np.uint32]]: ...
    def classify_batch(
        self, batch: DecodedBatch
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.uint8], npt.NDArray[np.uint32]]: ...
    def lookup(self, device_id: int, stream_id: int) -> int: ...
    def state(self) -> dict[str, npt.NDArray[np.generic]]: ...
    def load(self, state: dict[str, npt.NDArray[np.generic]]) -> None: ...
    def totals(self) -> dict[str, int]: ...
