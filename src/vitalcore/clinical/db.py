"""The metadata database: SQLite (embedded default) or PostgreSQL, behind one small shim.

Repository code writes SQL once, with ``?`` placeholders and portable types (``TEXT``,
``BIGINT``, ``INTEGER``); :class:`Tx` rewrites placeholders for psycopg. Every change
runs inside :meth:`Database.transaction`: it commits as a whole or not at all.

- **SQLite** (stdlib ``sqlite3``): one file, WAL journal, ``synchronous=FULL``, foreign
  keys on; a write transaction starts with ``BEGIN IMMEDIATE`` so it holds the write
  lock from its first statement (no upgrade deadlock between readers turned writers).
- **PostgreSQL** (psycopg 3, imported only when used): for several vitalcore nodes
  sharing one organisation. Rows read before a change are locked with
  ``SELECT ... FOR UPDATE`` (:attr:`Tx.for_update`); partial unique indexes back every
  "at most one open ..." rule, so two nodes racing cannot both win.

One connection per :class:`Database`, used by one thread at a time (a lock serialises
transactions); open one ``Database`` per process or thread pool as needed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from ..errors import StorageError, UsageError

__all__ = ["Database", "Tx"]

Row = tuple[Any, ...]


@lru_cache(maxsize=1024)
def _portable(sql: str, dialect: str) -> str:
    """``sql`` for ``dialect``; '%' is refused on both, so SQL tested on SQLite runs on
    PostgreSQL too (psycopg reads '%' as placeholder syntax)."""
    if "%" in sql:
        raise UsageError("portable SQL must not contain '%' (psycopg placeholder syntax)")
    return sql.replace("?", "%s") if dialect == "postgres" else sql


class Tx:
    """One open transaction: run statements, read rows.

    Attributes
    ----------
    dialect : str
        ``"sqlite"`` or ``"postgres"``.
    for_update : str
        Suffix locking the rows a ``SELECT`` reads until the transaction ends
        (``" FOR UPDATE"`` on PostgreSQL; empty on SQLite, whose write transaction
        already holds the database's write lock).
    """

    def __init__(self, cursor: Any, dialect: str) -> None:
        self._cur = cursor
        self.dialect = dialect
        self.for_update = " FOR UPDATE" if dialect == "postgres" else ""

    def _sql(self, sql: str) -> str:
        return _portable(sql, self.dialect)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        self._cur.execute(self._sql(sql), tuple(params))
        return self._cur.rowcount

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a query, or None."""
        self._cur.execute(self._sql(sql), tuple(params))
        row = self._cur.fetchone()
        return None if row is None else tuple(row)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of a query."""
        self._cur.execute(self._sql(sql), tuple(params))
        return [tuple(r) for r in self._cur.fetchall()]

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None."""
        row = self.one(sql, params)
        return None if row is None else row[0]


class Database:
    """A connection to the metadata database.

    Use :meth:`sqlite` or :meth:`postgres` to open one; :func:`vitalcore.clinical.open_store`
    also applies the schema migrations.

    Parameters
    ----------
    conn : sqlite3.Connection or psycopg.Connection
        An open connection in autocommit mode (transactions are explicit).
    dialect : str
        ``"sqlite"`` or ``"postgres"``.
    """

    def __init__(self, conn: Any, dialect: str) -> None:
        if dialect not in ("sqlite", "postgres"):
            raise UsageError(f"unknown dialect {dialect!r}")
        self._conn = conn
        self.dialect = dialect
        self._lock = threading.RLock()
        self._depth = 0
        if dialect == "sqlite":
            self._integrity: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)
            self._db_error: tuple[type[BaseException], ...] = (sqlite3.Error,)
        else:
            import psycopg

            self._integrity = (psycopg.errors.IntegrityError,)
            self._db_error = (psycopg.Error,)

    @classmethod
    def sqlite(cls, path: str | os.PathLike[str]) -> Database:
        """Open (or create) the SQLite database file ``path`` in WAL mode.

        ``":memory:"`` gives a private in-memory database (tests).
        """
        try:
            conn = sqlite3.connect(os.fspath(path), isolation_level=None,
                                   check_same_thread=False, timeout=30.0)
            if os.fspath(path) != ":memory:":
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StorageError(f"{path}: cannot switch to WAL journal (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open SQLite database {path}: {exc}") from None
        return cls(conn, "sqlite")

    @classmethod
    def postgres(cls, conninfo: str) -> Database:
        """Connect to PostgreSQL with a libpq connection string (psycopg 3)."""
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise UsageError("PostgreSQL needs psycopg 3: pip install 'vitalcore[postgres]'"
                             ) from exc
        try:
            conn = psycopg.connect(conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from None
        return cls(conn, "postgres")

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Tx]:
        """A transaction: committed when the block ends, rolled back if it raises.

        Not re-entrant: opening a transaction inside another is a :class:`UsageError`.
        Constraint violations (two writers racing for the same device, bed or patient)
        become :class:`UsageError`; other database failures :class:`StorageError`.
        """
        with self._lock:
            if self._depth:
                raise UsageError("nested transaction (internal misuse of Database)")
            self._depth = 1
            try:
                if self.dialect == "sqlite":
                    yield from self._sqlite_tx(write)
                else:
                    yield from self._pg_tx()
            except self._integrity as exc:
                raise UsageError(f"conflicting change rejected by the database: {exc}"
                                 ) from None
            except self._db_error as exc:
                raise StorageError(f"metadata database error: {exc}") from None
            finally:
                self._depth = 0

    def _sqlite_tx(self, write: bool) -> Iterator[Tx]:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield Tx(cur, "sqlite")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        try:
            cur.execute("COMMIT")
        except sqlite3.Error:
            if self._conn.in_transaction:
                cur.execute("ROLLBACK")
            raise

    def _pg_tx(self) -> Iterator[Tx]:
        with self._conn.transaction(), self._conn.cursor() as cur:
            yield Tx(cur, "postgres")
