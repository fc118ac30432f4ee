"""Durable storage: write-ahead log, Parquet history, and the store that runs them.

:class:`Store` is the ingest pipeline a transport uses (see docs/architecture.md);
:class:`WriteAheadLog` and :class:`HistoryStore` are its parts, usable alone.
"""

from .history import HistoryStore
from .store import Store
from .wal import SyncPolicy, WriteAheadLog

__all__ = ["Store", "WriteAheadLog", "SyncPolicy", "HistoryStore"]
