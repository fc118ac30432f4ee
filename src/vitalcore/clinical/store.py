"""The clinical store: organisation, devices, patient stays, users and audit in one object.

:func:`open_store` opens SQLite (a file path) or PostgreSQL (a ``postgresql://`` URL or
libpq key=value string), applies the schema migrations and returns a
:class:`ClinicalStore`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import UsageError
from .care import CarePart
from .db import Database
from .devices import DevicePart
from .lookup import LookupPart
from .migrations import migrate
from .organisation import OrganisationPart
from .users import UserPart

__all__ = ["ClinicalStore", "open_store"]


class ClinicalStore(OrganisationPart, DevicePart, CarePart, LookupPart, UserPart):
    """Every clinical-organisation operation on one database.

    Changes take the acting user's name first (``actor``) and an optional event time
    ``at_us`` (µs since the epoch; default now); each runs in one transaction with its
    permission checks and audit record (:mod:`vitalcore.clinical.core`). Build it with
    :func:`open_store`, or from a migrated :class:`Database`.
    """


def open_store(target: str | os.PathLike[str], *, clock: Callable[[], int] | None = None,
               log2_n: int | None = None) -> ClinicalStore:
    """Open the clinical store at ``target`` and bring its schema up to date.

    Parameters
    ----------
    target : str or path
        A SQLite file path (created if missing; ``":memory:"`` for a private in-memory
        store), or a PostgreSQL connection string (``postgresql://...`` /
        ``postgres://...`` URL, or libpq ``key=value`` pairs containing ``dbname=`` or
        ``host=``).
    clock : callable, optional
        µs since the epoch, for calls that give no ``at_us``.
    log2_n : int, optional
        scrypt cost for new password hashes (default: the server's).

    Raises
    ------
    StorageError
        The database cannot be opened, or its schema is newer than this code.
    """
    text = os.fspath(target)
    if not text:
        raise UsageError("empty store location")
    is_pg = text.startswith(("postgresql://", "postgres://")) or (
        "=" in text and any(k in text for k in ("dbname=", "host=")))
    db = Database.postgres(text) if is_pg else Database.sqlite(text)
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return ClinicalStore(db, clock=clock, log2_n=log2_n)
