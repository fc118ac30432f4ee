"""HistoryStore's footer cache: reused while a file is unchanged, never stale."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from vitalcore import protocol as P
from vitalcore._refcodec import RefFrameDecoder, encode_numerics
from vitalcore.errors import UsageError
from vitalcore.storage import HistoryStore
from vitalcore.storage.history import DAY_US

T0 = 19_676 * DAY_US + 3_600_000_000
HR = int(P.NumericCode.HR)


def batch(dev: int, value: float, n: int = 10):
    frames = [encode_numerics(dev, k, T0 + k * 1_000_000, [(HR, value)]) for k in range(n)]
    return RefFrameDecoder().decode(b"".join(frames))


def values(store: HistoryStore, dev: int = 5) -> list[float]:
    return store.read_numerics(dev, T0, T0 + 60_000_000).column("value").to_pylist()


def test_footers_are_cached_and_reused(tmp_path):
    store = HistoryStore(tmp_path, sync="none")
    store.write(batch(5, 60.0), 1, 1)
    assert values(store) == [60.0] * 10
    stats = store.footer_stats
    assert (stats["hits"], stats["misses"], stats["files"]) == (0, 1, 1) and stats["bytes"] > 0
    assert values(store) == [60.0] * 10
    assert (stats["hits"], stats["misses"]) == (1, 1)


def test_a_file_rewritten_under_the_same_name_is_read_again(tmp_path):
    store = HistoryStore(tmp_path, sync="none")
    store.write(batch(5, 60.0), 1, 1)
    assert values(store) == [60.0] * 10
    store.remove_after(0)  # restart cleanup, then the WAL replay writes the range again
    store.write(batch(5, 61.0, n=12), 1, 1)
    assert values(store) == [61.0] * 12
    assert store.footer_stats["misses"] == 2 and store.footer_stats["files"] == 1


def test_compaction_replaces_cached_files(tmp_path):
    store = HistoryStore(tmp_path, sync="none")
    store.write(batch(5, 60.0, n=5), 1, 1)
    assert values(store) == [60.0] * 5
    more = [encode_numerics(5, 100 + k, T0 + (30 + k) * 1_000_000, [(HR, 70.0)]) for k in range(3)]
    store.write(RefFrameDecoder().decode(b"".join(more)), 2, 2)
    assert values(store) == [60.0] * 5 + [70.0] * 3
    assert store.compact("2023-11-15") and values(store) == [60.0] * 5 + [70.0] * 3


def test_the_cache_is_bounded_in_footer_bytes_and_can_be_off(tmp_path):
    files = []
    for lsn, dev in enumerate((1, 2, 3, 4), start=1):
        files += HistoryStore(tmp_path, sync="none", buckets=4).write(batch(dev, float(dev)), lsn, lsn)
    size = max(pq.read_metadata(f).serialized_size for f in files)
    store = HistoryStore(tmp_path, sync="none", footer_cache_bytes=2 * size + size // 2, buckets=4)
    for dev in (1, 2, 3, 4):
        assert values(store, dev) == [float(dev)] * 10
    stats = store.footer_stats
    assert stats["files"] == 2 == len(store._footers) and stats["bytes"] <= 2 * size + size // 2
    assert stats["bytes"] == sum(entry[2] for entry in store._footers.values())
    assert values(store, 4) == [4.0] * 10 and stats["hits"] == 1  # the newest stayed
    tiny = HistoryStore(tmp_path, sync="none", footer_cache_bytes=1, buckets=4)
    assert values(tiny, 2) == [2.0] * 10 and tiny.footer_stats["files"] == 0  # too big to keep
    off = HistoryStore(tmp_path, sync="none", footer_cache_bytes=0, buckets=4)
    assert values(off, 3) == [3.0] * 10 and off.footer_stats["misses"] == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "8"])
def test_bad_cache_sizes_are_usage_errors(tmp_path, bad):
    with pytest.raises(UsageError, match="footer_cache_bytes"):
        HistoryStore(tmp_path, footer_cache_bytes=bad)
