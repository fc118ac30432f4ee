"""The base of :class:`~vitalcore.clinical.store.ClinicalStore`: audited operations.

Every change is an *operation*: one transaction in which the acting user's permissions
are checked (:meth:`Operation.require`), the rows are changed and an ``allowed`` audit
record is written. If a permission is missing the transaction is rolled back and a
``denied`` record is written in a transaction of its own; if the input is bad (unknown
id, conflicting state) it is rolled back and an ``error`` record is written. Nothing of
a failed operation remains but its audit record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import AccessDenied, UsageError, VitalcoreError
from .access import containing_scopes, denial_reason, raise_denied, write_audit
from .db import Database, Tx
from .model import Permission, Resource, as_resource, check_time

__all__ = ["StoreCore", "Operation"]


class Operation:
    """An open, audited change: the transaction plus the permission checks done in it."""

    def __init__(self, tx: Tx, actor: str, at_us: int) -> None:
        self.tx = tx
        self.actor = actor
        self.at_us = at_us
        self.checked: list[str] = []
        self.detail: dict[str, Any] = {}

    def require(self, permission: Permission, resource: Resource) -> None:
        """Raise :class:`AccessDenied` unless the actor has ``permission`` on ``resource``."""
        reason = denial_reason(self.tx, self.actor, permission, resource, self.at_us)
        if reason is not None:
            raise_denied(self.actor, permission, resource, reason)
        self.checked.append(f"{permission.value}@{resource}")


class StoreCore:
    """Database, clock and the audited-operation machinery shared by the store's parts.

    Parameters
    ----------
    db : Database
        An open, migrated database.
    clock : callable, optional
        Returns the current time in µs since the epoch (default: the system clock); used
        when a call gives no ``at_us``.
    log2_n : int, optional
        scrypt cost (log2 N) of new password and device-secret hashes; default
        :data:`vitalcore.server.auth.SCRYPT_LOG2_N` (tests may lower it).
    """

    def __init__(self, db: Database, *, clock: Callable[[], int] | None = None,
                 log2_n: int | None = None) -> None:
        self.db = db
        self._clock = clock or (lambda: time.time_ns() // 1000)
        self.log2_n = log2_n

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    def __enter__(self) -> StoreCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _time(self, at_us: int | None) -> int:
        return self._clock() if at_us is None else check_time(at_us)

    @contextmanager
    def _operation(self, actor: str, action: str, resource: Resource,
                   at_us: int | None) -> Iterator[Operation]:
        """Run one audited change (see the module docstring)."""
        if not isinstance(actor, str) or not actor:
            raise UsageError(f"actor must be a user name, got {actor!r}")
        t = self._time(at_us)
        try:
            with self.db.transaction() as tx:
                op = Operation(tx, actor, t)
                yield op
                write_audit(tx, t, actor, action, ",".join(op.checked) or None, resource,
                            "allowed", op.detail)
        except AccessDenied as exc:
            self._audit_failure(t, actor, action, exc.permission, resource, "denied", exc)
            raise
        except VitalcoreError as exc:
            self._audit_failure(t, actor, action, None, resource, "error", exc)
            raise

    def _audit_failure(self, t: int, actor: str, action: str, permission: str | None,
                       resource: Resource, outcome: str, exc: Exception) -> None:
        with self.db.transaction() as tx:
            write_audit(tx, t, actor, action, permission, resource, outcome, str(exc))

    def _require_time_order(self, last_us: int, t: int, what: str) -> None:
        if t < last_us:
            raise UsageError(f"{what}: time {t} is before its last recorded event ({last_us}); "
                             "events of one patient or device must be recorded in order")

    # -- access queries usable by every part ----------------------------------------------
    def authorize(self, user: str, permission: Permission | str, resource: Resource,
                  at_us: int | None = None, *, action: str = "access") -> None:
        """Raise :class:`~vitalcore.errors.AccessDenied` unless ``user`` may do it; audited.

        Parameters
        ----------
        user : str
            The user name.
        permission : Permission or str
        resource : Resource
            What is accessed (a patient, ward, device, ...).
        at_us : int, optional
            When the access happens, µs since the epoch (default: now). Scope is
            evaluated at that time: grant windows and the patient's ward then.
        action : str
            Free label recorded in the audit (e.g. ``"history_query"``).

        Every call writes an audit record, allowed or denied. An unknown resource is a
        :class:`~vitalcore.errors.UsageError` (audited as ``error``).
        """
        try:
            perm = Permission(permission)
        except ValueError:
            raise UsageError(f"unknown permission {permission!r}") from None
        resource = as_resource(resource)
        with self._operation(user, action, resource, at_us) as op:
            op.require(perm, resource)

    def scopes_of(self, resource: Resource, at_us: int | None = None) -> set[Resource]:
        """Every scope containing ``resource`` at ``at_us`` (not audited: no patient data)."""
        t = self._time(at_us)
        with self.db.transaction(write=False) as tx:
            return containing_scopes(tx, resource, t)
