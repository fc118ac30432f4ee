"""Users, their role grants, logins and the audit log (a store part).

Passwords are hashed with the server's scrypt functions
(:func:`vitalcore.server.auth.hash_secret`), so one identity logs in on MQTT, CoAP and
the application APIs (:class:`vitalcore.clinical.identity.ClinicalAccounts`). User names
follow :func:`~vitalcore.clinical.model.check_id` and must not look like a device
id (16 hex digits), which is a device's MQTT user name.

Managing users needs ``manage_users``: creating one, changing a password or disabling
on the global scope; granting or revoking a role on the grant's scope. The very first
user is created with :meth:`UserPart.bootstrap_administrator` on an empty store.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import UsageError
from ._secrets import hash_secret, is_device_name, verify_secret
from .access import read_audit
from .core import StoreCore
from .model import (
    ROLE_PERMISSIONS,
    AuditEntry,
    Grant,
    Permission,
    Resource,
    Role,
    ScopeKind,
    as_resource,
    check_id,
    check_name,
    check_time,
)

__all__ = ["UserPart"]

_USERS = Permission.MANAGE_USERS


def _check_user_name(name: object) -> str:
    check_id(name, "user")
    if is_device_name(str(name)):
        raise UsageError(f"user name {name!r} looks like a device id (16 hex digits)")
    return str(name)


class UserPart(StoreCore):
    """Users, role grants, password checks and reading the audit log."""

    def bootstrap_administrator(self, name: str, password: str,
                                at_us: int | None = None) -> None:
        """Create the first user, an administrator on the global scope.

        Only on a store without users (:class:`UsageError` otherwise); audited.
        """
        _check_user_name(name)
        hashed = hash_secret(password, self.log2_n)
        with self._operation(name, "bootstrap_administrator", Resource.everything(),
                             at_us) as op:
            if op.tx.scalar("SELECT COUNT(*) FROM users"):
                raise UsageError("the store has users already: bootstrap is for an empty store")
            self._insert_user(op.tx, name, hashed, name, op.at_us)
            op.tx.execute(
                "INSERT INTO role_grants (user_name, role, scope_kind, scope_id, granted_by, "
                "granted_us) VALUES (?, ?, ?, NULL, ?, ?)",
                (name, Role.ADMINISTRATOR.value, ScopeKind.GLOBAL.value, name, op.at_us))

    @staticmethod
    def _insert_user(tx, name: str, hashed: str, display: str, t: int) -> None:
        if tx.one("SELECT 1 FROM users WHERE name = ?", (name,)):
            raise UsageError(f"user {name!r} exists already")
        tx.execute("INSERT INTO users (name, password_hash, display_name, disabled, "
                   "created_us) VALUES (?, ?, ?, 0, ?)", (name, hashed, display, t))

    def create_user(self, actor: str, name: str, password: str, display_name: str = "",
                    at_us: int | None = None) -> None:
        """Create a user with no role (``manage_users`` on the global scope)."""
        _check_user_name(name)
        display = check_name(display_name or name, "display name")
        hashed = hash_secret(password, self.log2_n)
        with self._operation(actor, "create_user", Resource.everything(), at_us) as op:
            op.require(_USERS, Resource.everything())
            self._insert_user(op.tx, name, hashed, display, op.at_us)
            op.detail = {"user": name}

    def set_password(self, actor: str, name: str, password: str,
                     at_us: int | None = None) -> None:
        """Replace a user's password (``manage_users`` globally, or the user themself)."""
        _check_user_name(name)
        hashed = hash_secret(password, self.log2_n)
        with self._operation(actor, "set_password", Resource.everything(), at_us) as op:
            if actor != name:
                op.require(_USERS, Resource.everything())
            if not op.tx.execute("UPDATE users SET password_hash = ? WHERE name = ?",
                                 (hashed, name)):
                raise UsageError(f"unknown user {name!r}")
            op.detail = {"user": name}

    def set_user_disabled(self, actor: str, name: str, disabled: bool = True,
                          at_us: int | None = None) -> None:
        """Disable (or re-enable) a user: no login, no permission while disabled."""
        _check_user_name(name)
        with self._operation(actor, "set_user_disabled", Resource.everything(), at_us) as op:
            op.require(_USERS, Resource.everything())
            if not op.tx.execute("UPDATE users SET disabled = ? WHERE name = ?",
                                 (int(bool(disabled)), name)):
                raise UsageError(f"unknown user {name!r}")
            op.detail = {"user": name, "disabled": bool(disabled)}

    def grant_role(self, actor: str, user: str, role: Role | str, scope: Resource,
                   valid_from_us: int | None = None, valid_until_us: int | None = None,
                   at_us: int | None = None,
                   permissions: Iterable[Permission | str] | None = None) -> int:
        """Give ``user`` a role within ``scope``, optionally for a time window; the grant id.

        Needs ``manage_users`` on ``scope``. The window is ``[valid_from_us,
        valid_until_us)``; either end may be open (None). ``permissions`` narrows the
        grant to a non-empty subset of the role's permissions (e.g. a service vendor who
        may view a device's archive but not record repairs); None grants them all.
        """
        try:
            role = Role(role)
        except ValueError:
            raise UsageError(f"unknown role {role!r}; roles: {[r.value for r in Role]}"
                             ) from None
        limit = None
        if permissions is not None:
            try:
                chosen = frozenset(Permission(p) for p in permissions)
            except ValueError:
                raise UsageError(f"unknown permission in {permissions!r}") from None
            if not chosen or not chosen <= ROLE_PERMISSIONS[role]:
                raise UsageError(f"permissions must be a non-empty subset of {role.value}'s: "
                                 f"{sorted(p.value for p in ROLE_PERMISSIONS[role])}")
            limit = ",".join(sorted(p.value for p in chosen))
        scope = as_resource(scope)
        check_id(user, "user")
        for t, label in ((valid_from_us, "valid_from_us"), (valid_until_us, "valid_until_us")):
            if t is not None:
                check_time(t, label)
        if valid_from_us is not None and valid_until_us is not None \
                and valid_until_us <= valid_from_us:
            raise UsageError("valid_until_us must be after valid_from_us")
        with self._operation(actor, "grant_role", scope, at_us) as op:
            op.require(_USERS, scope)
            if not op.tx.one("SELECT 1 FROM users WHERE name = ?", (user,)):
                raise UsageError(f"unknown user {user!r}")
            grant_id = op.tx.scalar(
                "INSERT INTO role_grants (user_name, role, scope_kind, scope_id, valid_from_us, "
                "valid_until_us, granted_by, granted_us, permissions) VALUES (?, ?, ?, ?, ?, ?, "
                "?, ?, ?) RETURNING id", (user, role.value, scope.kind.value, scope.id,
                                          valid_from_us, valid_until_us, actor, op.at_us, limit))
            op.detail = {"user": user, "role": role.value, "grant": grant_id,
                         "valid_from_us": valid_from_us, "valid_until_us": valid_until_us,
                         "permissions": limit}
        return int(grant_id)

    def revoke_grant(self, actor: str, grant_id: int, at_us: int | None = None) -> None:
        """Revoke a role grant (``manage_users`` on its scope); it never applies again."""
        if isinstance(grant_id, bool) or not isinstance(grant_id, int):
            raise UsageError(f"grant id must be an int, got {grant_id!r}")
        with self._operation(actor, "revoke_grant", Resource.everything(), at_us) as op:
            row = op.tx.one("SELECT scope_kind, scope_id FROM role_grants WHERE id = ? "
                            "AND revoked_us IS NULL" + op.tx.for_update, (grant_id,))
            if row is None:
                raise UsageError(f"no active grant {grant_id!r}")
            op.require(_USERS, Resource(ScopeKind(row[0]), row[1]))
            op.tx.execute("UPDATE role_grants SET revoked_us = ? WHERE id = ?",
                          (op.at_us, grant_id))
            op.detail = {"grant": grant_id}

    def grants_of(self, user: str) -> list[Grant]:
        """The active (not revoked) grants of ``user``, by id."""
        with self.db.transaction(write=False) as tx:
            rows = tx.all("SELECT id, user_name, role, scope_kind, scope_id, valid_from_us, "
                          "valid_until_us FROM role_grants WHERE user_name = ? "
                          "AND revoked_us IS NULL ORDER BY id", (user,))
        return [Grant(i, u, Role(r), Resource(ScopeKind(k), s), f, t)
                for i, u, r, k, s, f, t in rows]

    def login_hash(self, name: str) -> tuple[str, bool] | None:
        """``(scrypt hash, disabled)`` of user ``name``, or None (for login bridges)."""
        if not isinstance(name, str):
            return None
        with self.db.transaction(write=False) as tx:
            row = tx.one("SELECT password_hash, disabled FROM users WHERE name = ?", (name,))
        return None if row is None else (row[0], bool(row[1]))

    def verify_login(self, name: str, password: str | bytes) -> bool:
        """Whether (name, password) is an enabled user's login (one scrypt; not audited).

        CPU-bound: call it from an executor thread in async code.
        """
        found = self.login_hash(name) if isinstance(name, str) else None
        if not password:
            return False
        if found is None:  # the same scrypt as for a real user: timing hides who exists
            verify_secret(password, self._dummy_hash())
            return False
        return verify_secret(password, found[0]) and not found[1]

    def _dummy_hash(self) -> str:
        if getattr(self, "_dummy", None) is None:
            self._dummy = hash_secret(b"no such user", self.log2_n)
        return self._dummy

    def audit_log(self, actor: str, t0_us: int, t1_us: int,
                  user: str | None = None) -> list[AuditEntry]:
        """Audit records of ``[t0_us, t1_us)`` (``view_audit`` on the global scope).

        Reading the audit is itself audited.
        """
        check_time(t0_us, "t0_us")
        check_time(t1_us, "t1_us")
        if user is not None:
            check_id(user, "user")
        with self._operation(actor, "read_audit", Resource.everything(), None) as op:
            op.require(Permission.VIEW_AUDIT, Resource.everything())
            return read_audit(op.tx, t0_us, t1_us, user)
