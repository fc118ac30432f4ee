"""Accounts, password hashes, failed-login rate limiting and the topic ACL.

Two kinds of account:

- **devices**: the MQTT user name is the device id as 16 lower-case hex digits
  (:func:`~vitalcore.server.topics.device_name`), the password is its secret. A device
  may publish only to its own uplink topics and subscribe only to its own command topic.
- **users** (dashboards, integrators, operators): a name, a password, a role and a scope.
  The scope is a set of device ids plus topic-filter grants; a user may subscribe to a
  filter only if a grant (or ``vc/v1/dev/<id>/#`` of a device in scope) covers it.
  Roles: ``viewer`` subscribes only; ``operator`` may also publish commands to the
  ``cmd`` topic of devices in its scope; ``admin`` has every device in scope and may
  publish commands to all. Nobody but the device itself publishes to its uplink topics.

Secrets are stored as scrypt hashes (:func:`hash_secret`), compared in constant time.
Accounts live in a JSON file (``accounts.json``, mode 0600, never in the repository)::

    {"version": 1,
     "devices": {"00000000000012ab": {"secret": "$scrypt$ln=14,r=8,p=1$<salt>$<hash>"}},
     "users": {"ward3": {"password": "$scrypt$...", "role": "viewer",
                         "devices": ["00000000000012ab"], "grants": ["vc/v1/dev/+/up"]}}}
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from ..errors import UsageError
from ..mqtt.topics import split_shared, topic_filter_error, topic_matches, topic_name_error
from ..storage.fsync import sync_fd
from .topics import PREFIX, cmd_topic, device_name, filter_covers, parse_device_name, uplink_kind

__all__ = [
    "SCRYPT_LOG2_N",
    "SCRYPT_R",
    "SCRYPT_P",
    "ROLES",
    "hash_secret",
    "verify_secret",
    "Principal",
    "DeviceScope",
    "Accounts",
    "LoginLimiter",
    "LoginAttempt",
    "may_publish",
    "may_subscribe",
]

log = logging.getLogger("vitalcore.server.auth")
T = TypeVar("T")

#: scrypt cost parameters for new hashes: N = 2**14, r = 8, p = 1 needs 16 MiB and takes
#: ~70 ms on one core of the CI machine (OWASP's minimum recommendation for scrypt is
#: N=2**17 with r=8, p=1; 2**14 is the interactive-login setting of the scrypt paper).
#: The parameters are stored in each hash, so they can be raised without invalidating
#: old hashes. The salt is 16 random bytes per account, the key 32 bytes.
SCRYPT_LOG2_N = 14
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 16
_KEY_BYTES = 32
_MAX_LOG2_N = 20

ROLES = ("viewer", "operator", "admin")
#: alarm events, ``vc/v1/alarms/<ward>/<device>/event`` (:mod:`vitalcore.alarms.mqtt`)
ALARM_PREFIX = "vc/v1/alarms/"


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)


def hash_secret(secret: str | bytes, log2_n: int = SCRYPT_LOG2_N) -> str:
    """Hash ``secret`` with scrypt and a fresh random salt.

    Returns ``$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt b64>$<key b64>`` (PHC string style).
    """
    if isinstance(secret, str):
        secret = secret.encode()
    if not secret:
        raise UsageError("an empty secret cannot be hashed (accounts need a password)")
    if not 10 <= log2_n <= _MAX_LOG2_N:
        raise UsageError(f"log2_n must be in 10..{_MAX_LOG2_N}, got {log2_n!r}")
    salt = os.urandom(_SALT_BYTES)
    key = _scrypt(secret, salt, log2_n, SCRYPT_R, SCRYPT_P)
    return f"$scrypt$ln={log2_n},r={SCRYPT_R},p={SCRYPT_P}${_b64(salt)}${_b64(key)}"


def _scrypt(secret: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=_KEY_BYTES,
                          maxmem=256 * n * r * p)


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    try:
        empty, scheme, params, salt, key = encoded.split("$")
        if empty or scheme != "scrypt":
            raise ValueError("not a $scrypt$ hash")
        kv = dict(item.split("=", 1) for item in params.split(","))
        log2_n, r, p = int(kv["ln"]), int(kv["r"]), int(kv["p"])
        if not (10 <= log2_n <= _MAX_LOG2_N and 1 <= r <= 32 and 1 <= p <= 16):
            raise ValueError("scrypt parameters out of range")
        return log2_n, r, p, _unb64(salt), _unb64(key)
    except (ValueError, KeyError) as exc:
        raise UsageError(f"malformed password hash: {exc}") from None


def verify_secret(secret: str | bytes, encoded: str) -> bool:
    """Whether ``secret`` matches ``encoded`` (from :func:`hash_secret`); constant time."""
    if isinstance(secret, str):
        secret = secret.encode()
    log2_n, r, p, salt, key = _parse_hash(encoded)
    return hmac.compare_digest(_scrypt(secret, salt, log2_n, r, p), key)


class DeviceScope(Protocol):
    """A user's device scope that changes over time (e.g. the devices of their wards now).

    Implemented outside the server (:class:`vitalcore.clinical.ClinicalScope`); asked at
    SUBSCRIBE and PUBLISH time, so it must answer quickly and never raise.
    """

    def may_read(self, device_id: int) -> bool:
        """Whether the user may receive ``device_id``'s data now."""

    def may_command(self, device_id: int) -> bool:
        """Whether the user may send ``device_id`` commands now."""

    def may_read_ward(self, ward_id: str) -> bool:
        """Whether the user may receive the alarms of ward ``ward_id`` now (optional: a
        scope without this method grants no ``vc/v1/alarms/<ward>/...`` filter)."""


@dataclass(frozen=True, eq=False)
class Principal:
    """An authenticated identity: what a connection may do follows from it.

    Attributes
    ----------
    name : str
        The account name (a device's 16-hex id, or a user name).
    device_id : int
        Non-zero for a device, 0 for a user.
    role : str
        ``"device"`` or one of :data:`ROLES`.
    devices : frozenset of int
        Devices in a user's scope (empty for devices and admins).
    grants : tuple of str
        Topic filters a user may subscribe to (beyond its devices' subtrees).
    scope : DeviceScope or None
        A user's dynamic device scope, consulted besides ``devices`` and ``grants``:
        ``vc/v1/dev/<id>/...`` filters of a device it may read, ``cmd`` topics of a
        device it may command, ``vc/v1/alarms/<ward>/...`` filters of a ward whose
        alarms it may read.
    """

    name: str
    device_id: int = 0
    role: str = "device"
    devices: frozenset[int] = field(default_factory=frozenset)
    grants: tuple[str, ...] = ()
    scope: DeviceScope | None = None

    @property
    def is_device(self) -> bool:
        return self.device_id != 0

    def subscribe_grants(self) -> tuple[str, ...]:
        """Every filter this principal may subscribe within (users only)."""
        if self.role == "admin":
            return (PREFIX + "#",)
        own = tuple(f"{PREFIX}{device_name(d)}/#" for d in sorted(self.devices))
        return own + self.grants


def may_publish(principal: Principal, topic: str) -> bool:
    """ACL for PUBLISH (and Will topics).

    A device: only its own ``up`` and ``up/json``. A user: only ``cmd`` topics, if its
    role is ``operator`` (devices in scope, or covered by a grant) or ``admin``.
    """
    if topic_name_error(topic):
        return False
    if principal.is_device:
        up = uplink_kind(topic)
        return up is not None and up[0] == principal.device_id
    if not topic.startswith(PREFIX):
        return False
    name, _, tail = topic[len(PREFIX):].partition("/")
    device = parse_device_name(name)
    if tail != "cmd" or device is None:
        return False
    if principal.scope is not None and principal.scope.may_command(device):
        return True
    if principal.role not in ("operator", "admin"):
        return False
    if principal.role == "admin" or device in principal.devices:
        return True
    return any(topic_matches(g, topic) for g in principal.grants)


def may_subscribe(principal: Principal, flt: str) -> bool:
    """ACL for SUBSCRIBE: a device only its own ``cmd`` topic (no wildcard, not shared);
    a user any filter covered by its grants (a ``$share/group/`` prefix is allowed), or
    allowed by its dynamic scope (a device's subtree, or one named ward's alarms)."""
    if topic_filter_error(flt):
        return False
    if principal.is_device:
        return flt == cmd_topic(principal.device_id)
    _, inner = split_shared(flt)
    if any(filter_covers(g, inner) for g in principal.subscribe_grants()):
        return True
    if principal.scope is None:
        return False
    if inner.startswith(ALARM_PREFIX):  # one named ward (no wildcard, no _unassigned/_system)
        ward = inner[len(ALARM_PREFIX):].partition("/")[0]
        may_read_ward = getattr(principal.scope, "may_read_ward", None)
        return (may_read_ward is not None and ward not in ("", "+", "#")
                and not ward.startswith("_")
                and filter_covers(f"{ALARM_PREFIX}{ward}/#", inner) and may_read_ward(ward))
    if not inner.startswith(PREFIX):
        return False
    device = parse_device_name(inner[len(PREFIX):].partition("/")[0])
    return (device is not None and filter_covers(f"{PREFIX}{device_name(device)}/#", inner)
            and principal.scope.may_read(device))


@dataclass
class _Account:
    hash: str
    principal: Principal
    disabled: bool = False


class Accounts:
    """Device and user accounts with scrypt password hashes.

    :meth:`check` is CPU-bound (one scrypt, ~70 ms at the default cost): call it from
    an executor thread. Successful checks are remembered for ``cache_ttl_s`` under an
    HMAC of (name, password) with a per-process random key, so a device that
    reconnects does not pay scrypt again; the cache never holds passwords or anything
    an attacker could test guesses against without that key, and any change to the
    accounts empties it.

    Parameters
    ----------
    log2_n : int
        scrypt cost of new hashes (:data:`SCRYPT_LOG2_N`); tests may lower it.
    cache_ttl_s : float
        Seconds a verified (name, password) pair is remembered; 0 turns the cache off.
    """

    def __init__(self, log2_n: int = SCRYPT_LOG2_N, cache_ttl_s: float = 600.0) -> None:
        self.log2_n = log2_n
        self.cache_ttl_s = cache_ttl_s
        self._accounts: dict[str, _Account] = {}
        self._cache: dict[bytes, tuple[float, Principal]] = {}
        self._cache_key = secrets.token_bytes(32)
        self._clock: Callable[[], float] = time.monotonic

    def __len__(self) -> int:
        return len(self._accounts)

    def __contains__(self, name: object) -> bool:
        return name in self._accounts

    # -- editing ----------------------------------------------------------------------
    def add_device(self, device_id: int, secret: str | bytes) -> Principal:
        """Create or replace the account of ``device_id``."""
        name = device_name(device_id)
        principal = Principal(name, device_id=device_id)
        self._put(name, _Account(hash_secret(secret, self.log2_n), principal))
        return principal

    def add_user(self, name: str, password: str | bytes, role: str = "viewer",
                 devices: Iterable[int] = (), grants: Iterable[str] = ()) -> Principal:
        """Create or replace a user account (see the module docstring for roles)."""
        principal = self._user_principal(name, role, devices, grants)
        self._put(name, _Account(hash_secret(password, self.log2_n), principal))
        return principal

    def remove(self, name: str) -> bool:
        """Delete an account; False if there was none."""
        self._cache.clear()
        return self._accounts.pop(name, None) is not None

    def set_disabled(self, name: str, disabled: bool = True) -> None:
        """Disable (or re-enable) an account without deleting its hash."""
        try:
            self._accounts[name].disabled = disabled
        except KeyError:
            raise UsageError(f"no account {name!r}") from None
        self._cache.clear()

    def principal(self, name: str) -> Principal | None:
        """The principal of account ``name`` (no password check), or None."""
        acc = self._lookup(name)
        return None if acc is None else acc.principal

    def _lookup(self, name: str) -> _Account | None:
        """The account called ``name``: the extension point of accounts kept elsewhere
        (:class:`vitalcore.clinical.ClinicalAccounts` reads a database)."""
        return self._accounts.get(name)

    @staticmethod
    def _user_principal(name: str, role: str, devices: Iterable[int],
                        grants: Iterable[str]) -> Principal:
        if not name or parse_device_name(name) is not None or len(name) > 256:
            raise UsageError(f"user name must be 1..256 characters and not a device id: {name!r}")
        if role not in ROLES:
            raise UsageError(f"role must be one of {ROLES}, got {role!r}")
        devs = frozenset(int(d) for d in devices)
        for d in devs:
            device_name(d)  # validates the range
        grants = tuple(grants)
        for g in grants:
            if err := topic_filter_error(g, shared=False):
                raise UsageError(f"grant {g!r}: {err}")
        return Principal(name, role=role, devices=devs, grants=grants)

    def _put(self, name: str, account: _Account) -> None:
        self._cache.clear()
        self._accounts[name] = account

    # -- checking ---------------------------------------------------------------------
    def _cache_id(self, username: str, password: bytes) -> bytes:
        msg = username.encode() + b"\0" + password
        return hmac.digest(self._cache_key, msg, "sha256")

    def cached(self, username: str, password: bytes | None) -> Principal | None:
        """The principal if (username, password) was verified within the cache TTL."""
        if password is None or not self.cache_ttl_s:
            return None
        hit = self._cache.get(self._cache_id(username, password))
        if hit is None or hit[0] < self._clock():
            return None
        return hit[1]

    def check(self, username: str | None, password: bytes | str | None) -> Principal | None:
        """Verify a login; the principal, or None for an unknown, disabled or wrong one.

        An unknown user name costs the same scrypt as a known one, so the time taken
        does not reveal which names exist.
        """
        if isinstance(password, str):
            password = password.encode()
        if not username or not password:
            return None
        principal = self.cached(username, password)
        if principal is not None:
            return principal
        acc = self._lookup(username)
        if acc is None:
            verify_secret(password, _DUMMY_HASH[self.log2_n])
            return None
        ok = verify_secret(password, acc.hash)
        now = self._lookup(username)  # changed or removed during the check?
        if not ok or acc.disabled or now is None or now.disabled or now.hash != acc.hash:
            return None
        if self.cache_ttl_s:
            if len(self._cache) >= 100_000:
                self._cache.clear()
            key = self._cache_id(username, password)
            self._cache[key] = (self._clock() + self.cache_ttl_s, acc.principal)
        return acc.principal

    # -- file -------------------------------------------------------------------------
    def to_json(self) -> dict:
        devices, users = {}, {}
        for name, acc in sorted(self._accounts.items()):
            p = acc.principal
            entry: dict = {"secret" if p.is_device else "password": acc.hash}
            if acc.disabled:
                entry["disabled"] = True
            if p.is_device:
                devices[name] = entry
            else:
                entry.update(role=p.role, devices=[device_name(d) for d in sorted(p.devices)],
                             grants=list(p.grants))
                users[name] = entry
        return {"version": 1, "devices": devices, "users": users}

    @classmethod
    def from_json(cls, doc: dict, **kw) -> Accounts:
        """Accounts from the parsed ``accounts.json`` document (UsageError if malformed)."""
        self = cls(**kw)
        try:
            if doc.get("version") != 1:
                raise UsageError(f"unsupported accounts file version {doc.get('version')!r}")
            for name, entry in doc.get("devices", {}).items():
                device = parse_device_name(name)
                if device is None:
                    raise UsageError(f"device account name {name!r} is not 16 lower-case hex")
                _parse_hash(entry["secret"])
                self._accounts[name] = _Account(
                    entry["secret"], Principal(name, device_id=device),
                    bool(entry.get("disabled", False)),
                )
            for name, entry in doc.get("users", {}).items():
                devs = []
                for d in entry.get("devices", []):
                    if (dev := parse_device_name(d)) is None:
                        raise UsageError(f"user {name!r}: bad device {d!r}")
                    devs.append(dev)
                principal = cls._user_principal(name, entry.get("role", "viewer"), devs,
                                                entry.get("grants", []))
                _parse_hash(entry["password"])
                self._accounts[name] = _Account(entry["password"], principal,
                                                bool(entry.get("disabled", False)))
        except (KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"malformed accounts document: {exc!r}") from None
        return self

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kw) -> Accounts:
        """Read ``accounts.json`` (a warning is logged if others may read or write it)."""
        try:
            doc = json.loads(Path(path).read_text())
            mode = os.stat(path).st_mode
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read accounts file {path}: {exc}") from None
        if mode & 0o077:
            log.warning("accounts file %s has mode %o: its password hashes can be read or "
                        "replaced by other users; chmod 600 it", path, mode & 0o777)
        return cls.from_json(doc, **kw)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``accounts.json`` atomically, readable by its owner only (0600)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_json(), f, indent=1)
            f.flush()
            sync_fd(f.fileno())
        os.replace(tmp, path)


class _DummyHashes(dict):
    def __missing__(self, log2_n: int) -> str:
        value = self[log2_n] = hash_secret(b"no such account", log2_n)
        return value


_DUMMY_HASH = _DummyHashes()


class LoginLimiter:
    """Failed-login rate limit per source address, with bounded concurrent checks.

    Two rules per address:

    1. **Failures drain a token bucket** of ``burst`` tokens refilled at ``rate_per_s``.
       Only a completed check that failed takes a token; a success takes nothing, so
       any number of devices with the right credentials may log in from one address
       (a hospital NAT, a gateway). While the bucket holds less than one token the
       address is *limited*: its logins are refused without a check.
    2. **Checks in flight are charged in advance.** A check starts only if the bucket
       would still hold a token for it were every check in flight from that address
       to fail (``in flight + 1 <= tokens``), and at most ``max_inflight`` run at once.
       A login that may not start yet *waits* (first come, first served) for a check
       of its address to finish; it is refused only if failures then limit the
       address. So concurrent guesses cannot overdraw the bucket: over any interval of
       ``t`` seconds, at most ``burst + t * rate_per_s`` failed checks are run per
       address, however many run in parallel.

    One address never affects another: each has its own bucket and its own in-flight
    bound, which callers apply *before* queueing for the server-wide check slots, so
    one address holds at most ``max_inflight`` places in that queue.

    Usage (in a coroutine; ``check`` returns None or False for a wrong password)::

        async with limiter.attempt(address) as attempt:
            if not attempt.admitted:
                ...  # refuse: too many failed logins from this address
            principal = await attempt.check(loop.run_in_executor(None, check, user, pw))

    Logins already verified (:meth:`Accounts.cached`) need no check and should bypass
    the limiter, so a device behind the same NAT as a guessing neighbour that merely
    reconnects is never refused.

    Parameters
    ----------
    burst : float
        Failed logins an address may make at once (bucket size, >= 1).
    rate_per_s : float
        Failed logins per second an address may make in the long run (refill, > 0).
    max_inflight : int
        Password checks of one address running (or queued for a check slot) at once.
    max_addresses : int
        Addresses remembered: only those with recent failures or checks in flight are
        kept, and beyond this bound the least recently used idle one is forgotten.
    clock : callable
        Monotonic seconds (tests inject a fake one).

    Notes
    -----
    Not thread-safe: use it from the one event loop that serves the logins.
    """

    def __init__(self, burst: float = 20.0, rate_per_s: float = 1.0, max_inflight: int = 4,
                 max_addresses: int = 65536, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        if burst < 1 or rate_per_s <= 0 or max_inflight < 1 or max_addresses < 1:
            raise UsageError("burst must be >= 1, rate_per_s > 0, max_inflight >= 1 and "
                             "max_addresses >= 1")
        self.burst = float(burst)
        self.rate = float(rate_per_s)
        self.max_inflight = int(max_inflight)
        self.max_addresses = max_addresses
        self._clock = clock
        self._states: OrderedDict[str, _AddressState] = OrderedDict()

    def attempt(self, address: str) -> LoginAttempt:
        """One login from ``address``: an async context manager (see the class docstring).

        Entering waits until the check may start (:attr:`LoginAttempt.admitted` True),
        or the address is limited (False, returned at once).
        """
        return LoginAttempt(self, address)

    def remembered(self) -> int:
        """Addresses remembered: those with recent failures or checks in flight."""
        return len(self._states)

    def limited(self, address: str) -> bool:
        """Whether logins from ``address`` are refused now (failures drained its bucket)."""
        st = self._states.get(address)
        return st is not None and self._tokens(st) < 1.0

    def inflight(self, address: str) -> int:
        """Checks of ``address`` admitted and not finished yet."""
        st = self._states.get(address)
        return 0 if st is None else st.inflight

    # -- state --------------------------------------------------------------------------
    def _tokens(self, st: _AddressState) -> float:
        return min(self.burst, st.tokens + (self._clock() - st.stamp) * self.rate)

    def _state(self, address: str) -> _AddressState:
        st = self._states.get(address)
        if st is not None:
            self._states.move_to_end(address)
            return st
        st = self._states[address] = _AddressState(self.burst, self._clock())
        excess = len(self._states) - self.max_addresses
        if excess > 0:
            # forget the least recently used idle addresses; those with checks in flight
            # or logins waiting are kept (their number is bounded by logins in progress)
            idle = []
            for a, other in self._states.items():
                if len(idle) == excess or a == address:
                    break
                if other.idle:
                    idle.append(a)
            for a in idle:
                del self._states[a]
        return st

    def _may_start(self, st: _AddressState) -> bool:
        return st.inflight < self.max_inflight and st.inflight + 1 <= self._tokens(st)

    def _admit(self, address: str) -> asyncio.Future[bool] | bool:
        """True (start now), False (refused) or a future of either (wait in line)."""
        st = self._state(address)
        if self._tokens(st) < 1.0:
            return False
        self._settle(st)  # the bucket may have refilled for those waiting since
        if not st.waiters and self._may_start(st):
            st.inflight += 1
            return True
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        st.waiters.append(fut)
        return fut

    def _finish(self, address: str, failed: bool) -> None:
        """A check of ``address`` admitted by :meth:`_admit` is over."""
        st = self._states[address]
        st.inflight -= 1
        if failed:
            st.tokens, st.stamp = self._tokens(st) - 1.0, self._clock()
        self._settle(st)
        if st.idle and self._tokens(st) >= self.burst:
            del self._states[address]  # nothing to remember: as if never seen

    def _settle(self, st: _AddressState) -> None:
        """Decide waiting logins in order: start those that may, refuse all if limited."""
        while st.waiters:
            fut = st.waiters[0]
            if fut.done():  # the waiting login was cancelled
                st.waiters.popleft()
                continue
            if self._tokens(st) < 1.0:
                fut.set_result(False)
            elif self._may_start(st):
                st.inflight += 1
                fut.set_result(True)
            else:
                break
            st.waiters.popleft()


@dataclass(eq=False)
class _AddressState:
    tokens: float  #: bucket level at ``stamp`` (it refills from there)
    stamp: float
    inflight: int = 0
    waiters: deque[asyncio.Future[bool]] = field(default_factory=deque)

    @property
    def idle(self) -> bool:
        return not self.inflight and not self.waiters


class LoginAttempt:
    """One login under a :class:`LoginLimiter` (made by :meth:`LoginLimiter.attempt`).

    Attributes
    ----------
    address : str
        The source address.
    admitted : bool
        Set on entering: True if the password check may run, False if the address is
        limited (refuse the login unchecked).
    """

    __slots__ = ("_limiter", "address", "admitted", "_checking")

    def __init__(self, limiter: LoginLimiter, address: str) -> None:
        self._limiter = limiter
        self.address = address
        self.admitted = False
        self._checking = False

    async def __aenter__(self) -> LoginAttempt:
        got = self._limiter._admit(self.address)
        if isinstance(got, asyncio.Future):
            try:
                got = await got
            except asyncio.CancelledError:
                if got.done() and not got.cancelled() and got.result():
                    self._limiter._finish(self.address, failed=False)  # admitted, unused
                raise
        self.admitted = got
        return self

    async def check(self, verdict: Awaitable[T]) -> T:
        """Await ``verdict``, the password check, record its outcome and return it.

        ``verdict`` resolves to a true value (a :class:`Principal`, True) for a right
        password and a false one (None, False) for a wrong one, which takes a token.
        The check's slot is held until ``verdict`` completes even if the caller is
        cancelled meanwhile (the check goes on in its thread), and its outcome counts
        then. An exception or cancellation of ``verdict`` itself takes no token (it is
        no answer to a guess).
        """
        if not self.admitted or self._checking:
            raise UsageError("LoginAttempt.check: not admitted, or checked already")
        self._checking = True
        fut = asyncio.ensure_future(verdict)
        limiter, address = self._limiter, self.address

        def done(f: asyncio.Future[T]) -> None:
            failed = not f.cancelled() and f.exception() is None and not f.result()
            limiter._finish(address, failed)

        fut.add_done_callback(done)
        return await asyncio.shield(fut)

    async def __aexit__(self, *exc: object) -> None:
        if self.admitted and not self._checking:
            self._limiter._finish(self.address, failed=False)  # no check ran
