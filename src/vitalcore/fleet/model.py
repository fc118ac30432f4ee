"""Value types of device and accessory lifecycle tracking.

Times are µs since the Unix epoch (UTC); hours are powered-on hours computed from the
device STATUS frames (protocol.md §6), kept in seconds and shown in hours.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import NamedTuple

from ..errors import UsageError
from ..protocol import AccessoryKind

__all__ = [
    "Kind",
    "AssetStatus",
    "Alert",
    "ModelSpec",
    "DEFAULT_MODELS",
    "Asset",
    "Install",
    "LifecycleEvent",
    "EventKind",
    "DueItem",
    "UsageRow",
    "AssetDetail",
    "FleetStats",
    "kind_of",
    "check_serial",
    "HOUR_S",
]

HOUR_S = 3600


class Kind(StrEnum):
    """What an asset is: the terminal itself or one of its accessories.

    Accessory kinds are the wire format's :class:`~vitalcore.protocol.AccessoryKind`
    names in lower case.
    """

    TERMINAL = "terminal"
    LEAD_WIRE = "lead_wire"
    BATTERY = "battery"
    COMMS_MODULE = "comms_module"
    STORAGE_CARD = "storage_card"
    SCREEN = "screen"
    SPO2_PROBE = "spo2_probe"
    NIBP_CUFF = "nibp_cuff"

    @classmethod
    def of_wire(cls, code: int) -> Kind | None:
        """The kind of an accessory kind byte, or None for a code this version lacks."""
        try:
            return cls(AccessoryKind(code).name.lower())
        except ValueError:
            return None


class AssetStatus(StrEnum):
    """Fleet status of an asset (the clinical reprocessing state of terminals is kept by
    :mod:`vitalcore.clinical.devices`; this adds what the service team needs).

    ``active`` in service; ``spare`` in the spare pool; ``lost`` reported missing (a
    lost asset seen again in telemetry becomes ``active`` with a ``found`` event);
    ``replaced`` taken out and replaced by another asset; ``retired`` scrapped. Records
    of replaced and retired assets are kept.
    """

    ACTIVE = "active"
    SPARE = "spare"
    LOST = "lost"
    REPLACED = "replaced"
    RETIRED = "retired"


class Alert(IntEnum):
    """How close an asset is to its replacement limit."""

    OK = 0
    WARNING = 1  #: within the warning margin of the limit
    OVER_LIMIT = 2  #: at or over the limit


class EventKind(StrEnum):
    """Kinds of :class:`LifecycleEvent`."""

    WARNING = "warning"  #: hours entered the warning margin
    OVER_LIMIT = "over_limit"  #: hours reached the replacement limit
    RESET = "reset"  #: a counter went backwards (device or accessory reset)
    SUSPECT = "suspect"  #: a lower counter from another terminal: held, not credited
    MOVED = "moved"  #: an accessory appeared on another terminal
    FIRST_SEEN = "first_seen"  #: an asset reported for the first time
    UNKNOWN_DEVICE = "unknown_device"  #: STATUS from a device id the registry lacks
    DUPLICATE_SERIAL = "duplicate_serial"  #: one serial on two terminals at once
    FOUND = "found"  #: a lost asset reported again
    STATUS = "status"  #: a user changed the asset's fleet status


def kind_of(value: object) -> Kind:
    """``value`` as a :class:`Kind` (a name such as ``"battery"`` is accepted)."""
    try:
        return Kind(value)
    except ValueError:
        raise UsageError(f"unknown asset kind {value!r}; one of "
                         f"{', '.join(k.value for k in Kind)}") from None


def check_serial(serial: object) -> str:
    """A serial: 1..16 printable ASCII characters (what the wire format carries)."""
    if (not isinstance(serial, str) or not 1 <= len(serial) <= 16 or not serial.isascii()
            or not serial.isprintable()):
        raise UsageError(f"serial must be 1..16 printable ASCII characters, got {serial!r}")
    return serial


class ModelSpec(NamedTuple):
    """A model of terminal or accessory and its replacement rules.

    Attributes
    ----------
    name : str
        The model name (for terminals, the model of the clinical device registry).
    kind : Kind
    limit_h : int or None
        Replacement limit in powered-on hours (None: no hour limit).
    warn_h : int or None
        Warn this many hours before the limit (None: the tracker's default fraction).
    life_days : int or None
        Calendar service life from commissioning, days (None: none).
    """

    name: str
    kind: Kind
    limit_h: int | None
    warn_h: int | None = None
    life_days: int | None = None


#: Contract defaults, used for an asset whose model is unknown or has no spec:
#: terminal 17,520 h, lead wire 4,380 h, battery 4,380 h; other kinds have no limit.
DEFAULT_MODELS: dict[Kind, ModelSpec] = {
    Kind.TERMINAL: ModelSpec("default-terminal", Kind.TERMINAL, 17_520),
    Kind.LEAD_WIRE: ModelSpec("default-lead_wire", Kind.LEAD_WIRE, 4_380),
    Kind.BATTERY: ModelSpec("default-battery", Kind.BATTERY, 4_380),
}


class Asset(NamedTuple):
    """A terminal or accessory and its hours now.

    ``hours`` is the powered-on time credited so far (h, from telemetry), ``limit_h`` and
    ``warn_h`` the rules in force (None: no limit), ``installed_on`` the device id of the
    terminal an accessory was last reported in (a terminal: its own device id),
    ``expiry_us`` the calendar end of life (commissioning + model life), and
    ``limit_at_us`` the projected time the hour limit is reached at the usage rate since
    first seen (None without a limit or usage).
    """

    asset_id: int
    kind: Kind
    serial: str | None
    device_id: int | None
    model: str | None
    hospital_id: str | None
    status: AssetStatus
    registered: bool
    hours: float
    limit_h: int | None
    warn_h: int | None
    alert: Alert
    resets: int
    first_seen_us: int | None
    last_seen_us: int | None
    installed_on: int | None
    commissioned_us: int | None
    expiry_us: int | None
    limit_at_us: int | None

    @property
    def remaining_h(self) -> float | None:
        """Hours left before the limit (negative when over it), or None."""
        return None if self.limit_h is None else self.limit_h - self.hours

    @property
    def label(self) -> str:
        """``kind serial`` (a terminal without serial: its device name)."""
        ident = self.serial if self.serial is not None else f"{self.device_id or 0:016x}"
        return f"{self.kind.value} {ident}"


class Install(NamedTuple):
    """An accessory installed in a terminal (device id) over ``[start_us, end_us)``."""

    asset_id: int
    terminal_device_id: int
    start_us: int
    end_us: int | None


class LifecycleEvent(NamedTuple):
    """Something the service team or a work-order system should know about.

    ``event_id`` increases; subscribers that missed events read them back with
    :meth:`vitalcore.fleet.FleetTracker.events` ``(since_id=...)``.
    """

    event_id: int
    at_us: int
    kind: EventKind
    asset_id: int | None
    asset_kind: Kind | None
    serial: str | None
    device_id: int | None
    hours: float | None
    detail: dict


class DueItem(NamedTuple):
    """One entry of the due list: an asset at or near its replacement limit or expiry."""

    asset: Asset
    alert: Alert
    reason: str  #: "hours" or "expiry"
    remaining_h: float | None
    due_us: int | None  #: projected or calendar due time


class UsageRow(NamedTuple):
    """Monitoring usage of one ward in one month (``"YYYY-MM"``, UTC).

    ``bound_h``: device-hours terminals were bound to patients placed in the ward
    (clinical bindings and placements); ``powered_h``: powered-on hours the terminals
    reported over those bindings (telemetry). ``ward_id`` None is transport.
    """

    ward_id: str | None
    month: str
    bound_h: float
    powered_h: float
    devices: int


class AssetDetail(NamedTuple):
    """Per-device drill-down: the asset, its installs, events, reprocessing history."""

    asset: Asset
    installs: list[Install]
    events: list[LifecycleEvent]
    contents: list[Asset]  #: accessories installed now (terminals)
    clinical_state: str | None  #: DeviceState of a terminal in the clinical registry
    clinical_events: list  #: DeviceEvent of the terminal (cleaning, checks, bindings)


class FleetStats(NamedTuple):
    """Fleet-wide figures: counts by kind, status, alert; hours by kind."""

    assets: int
    by_kind: dict[str, int]
    by_status: dict[str, int]
    by_alert: dict[str, int]
    hours_by_kind: dict[str, float]
    mean_hours_by_kind: dict[str, float]
    unregistered: int
    resets: int
    unknown_devices: int
    clinical_states: dict[str, int]
