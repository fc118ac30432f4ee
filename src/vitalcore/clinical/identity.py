"""One identity everywhere: the MQTT/CoAP server's accounts backed by the clinical store.

:class:`ClinicalAccounts` is a :class:`vitalcore.server.auth.Accounts` whose lookups fall
through to a :class:`~vitalcore.clinical.store.ClinicalStore`: users log in with their
clinical name and password (the same scrypt hashes), devices with the secret set by
:meth:`~vitalcore.clinical.devices.DevicePart.register_device`. Accounts added to the
object itself (``add_user``, ``add_device``, ``accounts.json``) come first, so
integrator accounts keep working.

A clinical user's :class:`~vitalcore.server.auth.Principal` has role ``viewer`` and a
:class:`ClinicalScope`: a SUBSCRIBE to ``vc/v1/dev/<id>/...`` is allowed when the user may
``read_vitals`` on that device *now* (for a ward nurse: the device is bound to a patient
of their ward), a PUBLISH on ``vc/v1/dev/<id>/cmd`` when they may ``command_devices``, a
SUBSCRIBE to ``vc/v1/alarms/<ward>/...`` (one named ward) when they may ``read_vitals`` on
the ward.
Each decision is an audited :meth:`~ClinicalStore.authorize`.

A verified login stays cached (``cache_ttl_s``) but every cache hit re-reads the
account, so a disabled user or a changed password takes effect at once.
"""

from __future__ import annotations

import logging
import weakref

from ..errors import AccessDenied, UsageError, VitalcoreError
from ..server.auth import SCRYPT_LOG2_N, Accounts, Principal, _Account
from ..server.topics import parse_device_name
from .model import Permission, Resource
from .store import ClinicalStore

__all__ = ["ClinicalAccounts", "ClinicalScope"]

log = logging.getLogger(__name__)


class ClinicalScope:
    """A clinical user's device scope, evaluated at the time of each question."""

    def __init__(self, store: ClinicalStore, user: str) -> None:
        self.store = store
        self.user = user

    def _allowed(self, permission: Permission, resource: Resource, action: str) -> bool:
        try:
            self.store.authorize(self.user, permission, resource, action=action)
        except (AccessDenied, UsageError) as exc:  # denied or unknown resource: audited
            log.debug("%s: %s", action, exc)
            return False
        except VitalcoreError as exc:  # the store failed: refuse, and say so
            log.warning("%s of %r on %s refused, clinical store failed: %s",
                        action, self.user, resource, exc)
            return False
        return True

    def may_read(self, device_id: int) -> bool:
        """``read_vitals`` on the device now (audited)."""
        return self._allowed(Permission.READ_VITALS, Resource.device(device_id),
                             "mqtt_subscribe")

    def may_command(self, device_id: int) -> bool:
        """``command_devices`` on the device now (audited)."""
        return self._allowed(Permission.COMMAND_DEVICES, Resource.device(device_id),
                             "mqtt_command")

    def may_read_ward(self, ward_id: str) -> bool:
        """``read_vitals`` on the ward now (audited): its alarm topics."""
        return self._allowed(Permission.READ_VITALS, Resource.ward(ward_id), "mqtt_alarms")


class ClinicalAccounts(Accounts):
    """:class:`~vitalcore.server.auth.Accounts` that also know the clinical store's
    users and devices (see the module docstring).

    Parameters
    ----------
    store : ClinicalStore
    log2_n : int, optional
        scrypt cost of hashes made here (default: the store's).
    cache_ttl_s : float
        As for :class:`~vitalcore.server.auth.Accounts`.
    """

    def __init__(self, store: ClinicalStore, log2_n: int | None = None,
                 cache_ttl_s: float = 600.0) -> None:
        if log2_n is None:
            log2_n = SCRYPT_LOG2_N if store.log2_n is None else store.log2_n
        super().__init__(log2_n=log2_n, cache_ttl_s=cache_ttl_s)
        self.store = store
        self._hash_of: weakref.WeakKeyDictionary[Principal, str] = weakref.WeakKeyDictionary()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._lookup(name) is not None

    def _lookup(self, name: str) -> _Account | None:
        local = super()._lookup(name)
        if local is not None:
            return local
        try:
            device = parse_device_name(name)
            if device is not None:
                secret = self.store.device_secret_hash(device)
                if secret is None:
                    return None
                account = _Account(secret, Principal(name, device_id=device))
            else:
                found = self.store.login_hash(name)
                if found is None:
                    return None
                account = _Account(found[0], Principal(name, role="viewer",
                                                       scope=ClinicalScope(self.store, name)),
                                   found[1])
        except VitalcoreError as exc:  # the database is unreachable: nobody logs in
            log.warning("clinical account lookup of %r failed: %s", name, exc)
            return None
        self._hash_of[account.principal] = account.hash
        return account

    def cached(self, username: str, password: bytes | None) -> Principal | None:
        """As :meth:`Accounts.cached`, re-checking a clinical account against the store."""
        principal = super().cached(username, password)
        if principal is None or super()._lookup(username) is not None:
            return principal
        verified = self._hash_of.get(principal)
        now = self._lookup(username)
        if now is None or now.disabled or verified is None or now.hash != verified:
            return None
        return principal
