"""vitalcore's exception hierarchy.

One root, :class:`VitalcoreError`, split by cause so callers can tell apart what
they did wrong, what a device or peer sent wrong, and what went wrong inside us:

- :class:`UsageError` (also a :class:`ValueError`): the caller passed an impossible
  argument or called the API out of order.
- :class:`PeerDataError`: bytes from a device or peer are malformed. Transports
  count and drop such input; the connection and every other device go on.
- :class:`StorageError`: the durable store cannot accept or return data (disk full,
  read-only, corrupt segment). Ingest must push back instead of losing data.
- :class:`InternalError`: a bug or broken invariant inside vitalcore.
"""

from __future__ import annotations

__all__ = [
    "VitalcoreError",
    "UsageError",
    "PeerDataError",
    "FrameError",
    "StorageError",
    "BackPressureError",
    "InternalError",
    "ConfigError",
    "AlarmError",
    "PluginError",
    "AccessDenied",
]


class VitalcoreError(Exception):
    """Root of every exception vitalcore raises on purpose."""


class UsageError(VitalcoreError, ValueError):
    """The caller misused the API (impossible argument, wrong order of calls)."""


class PeerDataError(VitalcoreError):
    """A device or network peer sent malformed data."""


class FrameError(PeerDataError):
    """A wire frame was rejected.

    Attributes
    ----------
    reason : str
        One of the reject reason names in :data:`vitalcore.codec.REJECT_REASONS`.
    """

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}" if message else reason)


class StorageError(VitalcoreError):
    """The durable store cannot accept or return data."""


class BackPressureError(StorageError):
    """Ingest must wait: unflushed data reached its memory bound.

    Nothing was dropped; the caller should retry after the store has flushed.
    """


class InternalError(VitalcoreError):
    """A broken invariant inside vitalcore (a bug: please report it)."""


class ConfigError(UsageError):
    """A configuration is impossible (e.g. an alarm limit with low > high, or NaN)."""


class AlarmError(VitalcoreError):
    """The alarm engine cannot do what was asked (unknown alarm id, engine closed)."""


class PluginError(AlarmError):
    """An alarm plugin could not be loaded, or returned something that is not a finding."""


class AccessDenied(VitalcoreError):
    """A user may not do this, to this resource, at this time (the denial is audited).

    Attributes
    ----------
    user : str
        The user name as given (may name no existing user).
    permission : str
        The permission that was required.
    resource : str
        The resource, as ``"<kind>:<id>"``.
    """

    def __init__(self, user: str, permission: str, resource: str, reason: str = "") -> None:
        self.user = user
        self.permission = permission
        self.resource = resource
        msg = f"{user!r} may not {permission} on {resource}"
        super().__init__(f"{msg}: {reason}" if reason else msg)
