"""Who is where now, and what a user may see: wards, beds, patients, devices, transport.

:class:`Roster` reads the clinical store (placements, bindings, beds) at most every
``refresh_s`` seconds. :func:`visible` asks :meth:`ClinicalStore.authorize` (audited,
``read_vitals``) per ward and per patient in transport, at most every ``cache_s`` per
session, so a revoked grant takes effect within that time on pages and WebSockets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from vitalcore.clinical import Permission, Resource
from vitalcore.errors import AccessDenied, UsageError

__all__ = ["Tile", "Roster", "Visible", "visible"]


@dataclass(frozen=True)
class Tile:
    """One patient and the device shown for them."""

    patient_id: str
    name: str
    device: str  #: 16 hex digits
    ward_id: str | None  #: None in transport
    bed: str  #: bed label ("" in transport)
    transport_from: str | None = None
    transport_to: str | None = None

    def as_json(self) -> dict:
        return {"pid": self.patient_id, "name": self.name, "dev": self.device,
                "ward": self.ward_id, "bed": self.bed, "from": self.transport_from,
                "to": self.transport_to}


@dataclass
class Roster:
    """Tiles per ward and in transport, from the clinical store (see module docstring)."""

    system: object
    refresh_s: float = 5.0
    wards: dict[str, list[Tile]] = field(default_factory=dict)
    transport: list[Tile] = field(default_factory=list)
    _at: float = -1e9

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._at < self.refresh_s:
            return
        sysm = self.system
        cs, hosp = sysm.clinical, sysm.hospital
        t = time.time_ns() // 1000
        beds = {}
        wards: dict[str, list[Tile]] = {w: [] for w in hosp.wards}
        for w in hosp.wards:
            beds.update(dict(cs.beds(w)))
        transport = []
        for pid in hosp.patients:
            places = cs.placements(pid)
            if not places or places[-1].end_us is not None:
                continue  # discharged
            p = places[-1]
            devs = [sp.device_id for sp in cs.device_spans(pid, t, t + 1)
                    if sp.end_us is None or sp.end_us > t]
            if not devs:
                continue
            name = f"Patient {pid[1:]}"
            tile = Tile(pid, name, f"{devs[0]:016x}", p.ward_id, beds.get(p.bed_id, ""),
                        p.from_ward_id, p.to_ward_id)
            if p.ward_id is None:
                transport.append(tile)
            else:
                wards.setdefault(p.ward_id, []).append(tile)
        self.wards, self.transport, self._at = wards, transport, now

    def patient(self, pid: str) -> Tile | None:
        for tiles in (*self.wards.values(), self.transport):
            for tile in tiles:
                if tile.patient_id == pid:
                    return tile
        return None


@dataclass(frozen=True)
class Visible:
    """What a user may see now."""

    wards: tuple[str, ...]
    transport: tuple[Tile, ...]

    @property
    def empty(self) -> bool:
        return not self.wards and not self.transport


def _may(cs, user: str, resource: Resource, action: str) -> bool:
    try:
        cs.authorize(user, Permission.READ_VITALS, resource, action=action)
    except (AccessDenied, UsageError):
        return False
    return True


def visible(system, roster: Roster, user: str, cache: dict, cache_s: float = 15.0) -> Visible:
    """The wards and transported patients ``user`` may read now (cached per session)."""
    hit = cache.get("visible")
    now = time.monotonic()
    if hit is not None and now - hit[0] < cache_s:
        return hit[1]
    roster.refresh()
    cs = system.clinical
    wards = tuple(w for w in system.hospital.wards if _may(cs, user, Resource.ward(w),
                                                          "dashboard_ward"))
    moving = tuple(t for t in roster.transport
                   if _may(cs, user, Resource.patient(t.patient_id), "dashboard_patient"))
    v = Visible(wards, moving)
    cache["visible"] = (now, v)
    return v
